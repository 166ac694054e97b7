"""`automl experiment ...`: submit, inspect, cancel and continue experiments."""

from __future__ import annotations

import argparse
import os

from automl.cli import data, render, watch
from automl.cli.client import Context, resource_id, resource_name
from automl.v1 import experiment_pb2, featurization_pb2, pipeline_pb2

TASKS = {"classification": pipeline_pb2.TASK_CLASSIFICATION, "regression": pipeline_pb2.TASK_REGRESSION}


def name_list(text: str) -> list[str]:
    """Parse `A,B,C` into names, dropping blanks."""
    return [item.strip() for item in text.split(",") if item.strip()]


def register(subparsers, common: argparse.ArgumentParser) -> None:
    """Add the `experiment` command and its subcommands."""
    experiment = subparsers.add_parser("experiment", help="submit and follow AutoML experiments")
    commands = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")

    submit = commands.add_parser("submit", parents=[common], help="create and start an experiment, then watch it")
    submit.add_argument("--name", default="", metavar="ID", help="experiment ID (generated when omitted)")
    submit.add_argument("--data", required=True, metavar="URI",
                        help="s3:// URI of a CSV, Parquet or NPZ data set, or a local file to upload first")
    submit.add_argument("--label", default="", metavar="COLUMN", help="label column (not needed for NPZ files)")
    submit.add_argument("--compute", required=True, metavar="NAME", help="compute target that runs the iterations")
    submit.add_argument("--task", required=True, choices=sorted(TASKS), help="machine learning task")
    submit.add_argument("--metric", default="", metavar="METRIC",
                        help="primary metric, e.g. AUC_weighted (default accuracy or spearman_correlation)")
    submit.add_argument("--iterations", type=int, required=True, metavar="N", help="pipelines to try, 1 to 1000")
    validation = submit.add_mutually_exclusive_group()
    validation.add_argument("--cv", type=int, metavar="K", help="cross-validation folds")
    validation.add_argument("--validation-size", type=float, metavar="F", help="fraction of rows held out, e.g. 0.2")
    submit.add_argument("--iteration-timeout-minutes", type=float, metavar="M",
                        help="limit on one iteration in minutes (service default 30)")
    submit.add_argument("--experiment-timeout-minutes", type=float, metavar="M",
                        help="limit on the whole experiment in minutes (default: none)")
    submit.add_argument("--concurrency", type=int, metavar="N",
                        help="iterations that run at once, each on its own node (service default 1)")
    submit.add_argument("--exit-score", type=float, metavar="S", help="stop once the primary metric reaches this score")
    submit.add_argument("--allowed-models", type=name_list, default=[], metavar="A,B", help="estimators to use, comma-separated")
    submit.add_argument("--blocked-models", type=name_list, default=[], metavar="A,B", help="estimators to skip, comma-separated")
    submit.add_argument("--preprocess", action="store_true",
                        help="featurize raw columns: detect types, drop junk columns, impute, encode")
    submit.add_argument("--early-stopping", action="store_true",
                        help="stop once 20 iterations ended and the best score gained at most 0.0001 in the last 10")
    submit.add_argument("--no-voting-ensemble", action="store_true", help="skip the final VotingEnsemble iteration")
    submit.add_argument("--no-stack-ensemble", action="store_true", help="skip the final StackEnsemble iteration")
    submit.add_argument("--explain", action="store_true", help="explain the best model with SHAP at the end")
    submit.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the search and of each iteration")
    submit.add_argument("--no-watch", action="store_true", help="return once the experiment is created")
    submit.set_defaults(func=submit_experiment)

    follow = commands.add_parser("watch", parents=[common], help="print the live table until the experiment ends")
    follow.add_argument("name", metavar="NAME")
    follow.add_argument("--from", dest="start_index", type=int, default=0, metavar="INDEX",
                        help="first event to show (default 0: from the start)")
    follow.set_defaults(func=watch_experiment)

    show = commands.add_parser("show", parents=[common], help="show an experiment's settings and progress")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=show_experiment)

    listing = commands.add_parser("list", parents=[common], help="list experiments, newest first")
    listing.set_defaults(func=list_experiments)

    cancel = commands.add_parser("cancel", parents=[common], help="stop an experiment")
    cancel.add_argument("name", metavar="NAME")
    cancel.set_defaults(func=cancel_experiment)

    extend = commands.add_parser("continue", parents=[common], help="add iterations to an experiment and run them")
    extend.add_argument("name", metavar="NAME")
    extend.add_argument("--iterations", type=int, required=True, metavar="N", help="iterations to add")
    extend.add_argument("--no-watch", action="store_true", help="return once the iterations are added")
    extend.set_defaults(func=continue_experiment)

    best = commands.add_parser("best", parents=[common], help="show the best succeeded iteration")
    best.add_argument("name", metavar="NAME")
    best.add_argument("--metric", default="", metavar="METRIC", help="metric to rank by (default: the primary metric)")
    best.set_defaults(func=best_iteration)

    featurization = commands.add_parser("featurization", parents=[common],
                                        help="show what featurization did with each column and the data guardrails")
    featurization.add_argument("name", metavar="NAME")
    featurization.set_defaults(func=show_featurization)

    delete = commands.add_parser("delete", parents=[common], help="delete a finished experiment's records")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=delete_experiment)


def build_experiment(args, data_uri: str) -> experiment_pb2.Experiment:
    """Build the Experiment message of `experiment submit` from its arguments."""
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=data_uri, label_column=args.label),
        compute_target=resource_name(args.compute, "computeTargets"),
        task=TASKS[args.task],
        primary_metric=args.metric,
        iterations=args.iterations,
        allowed_models=args.allowed_models,
        blocked_models=args.blocked_models,
        preprocess=args.preprocess,
        model_explainability=args.explain,
        seed=args.seed,
        enable_early_stopping=args.early_stopping,
    )
    if args.no_voting_ensemble:
        experiment.enable_voting_ensemble = False
    if args.no_stack_ensemble:
        experiment.enable_stack_ensemble = False

    # Optional fields are set only when given, so the service applies its
    # defaults and validates exactly what the user typed.
    optional = {
        "iteration_timeout_minutes": args.iteration_timeout_minutes,
        "experiment_timeout_minutes": args.experiment_timeout_minutes,
        "max_concurrent_iterations": args.concurrency,
        "experiment_exit_score": args.exit_score,
    }
    for field, value in optional.items():
        if value is not None:
            setattr(experiment, field, value)
    if args.cv is not None:
        experiment.validation.n_cross_validations = args.cv
    if args.validation_size is not None:
        experiment.validation.validation_size = args.validation_size
    return experiment


def submit_experiment(args, ctx: Context) -> int:
    """Create an experiment, then watch it unless `--no-watch` is given."""
    data_uri = args.data
    if not data_uri.startswith("s3://") and os.path.isfile(data_uri):
        data_uri = data.upload(ctx, data_uri, data.default_key(data_uri))
        print(f"Uploaded {args.data} to {data_uri}")

    request = experiment_pb2.CreateExperimentRequest(experiment_id=args.name,
                                                     experiment=build_experiment(args, data_uri))
    created = ctx.experiments.CreateExperiment(request)
    experiment_id = resource_id(created.name)
    metric = created.primary_metric or "default metric"
    print(f"Submitted {created.name}: {created.iterations} iterations on {created.compute_target}, "
          f"ranked by {metric}.")
    if args.no_watch:
        print(f"Follow it with: automl experiment watch {experiment_id}")
        return 0
    print()
    return watch.watch(ctx, created.name)


def watch_experiment(args, ctx: Context) -> int:
    """Print the live table of an experiment until it ends."""
    return watch.watch(ctx, resource_name(args.name, "experiments"), args.start_index)


def show_experiment(args, ctx: Context) -> int:
    """Print an experiment's settings, state and best iteration."""
    name = resource_name(args.name, "experiments")
    experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
    print(experiment_details(experiment))
    return 0


def list_experiments(args, ctx: Context) -> int:
    """Print every experiment as a table, newest first."""
    experiments = []
    page_token = ""
    while True:
        response = ctx.experiments.ListExperiments(
            experiment_pb2.ListExperimentsRequest(page_size=1000, page_token=page_token))
        experiments.extend(response.experiments)
        page_token = response.next_page_token
        if not page_token:
            break
    if not experiments:
        print("No experiments. Submit one with: automl experiment submit --help")
        return 0
    rows = []
    for experiment in experiments:
        ended = sum(experiment.iteration_counts.values())
        best = render.format_score(experiment.best_score) if experiment.best_iteration >= 0 else "-"
        rows.append((
            resource_id(experiment.name),
            render.experiment_state(experiment.state),
            render.enum_name(pipeline_pb2.Task, experiment.task).lower(),
            experiment.primary_metric,
            f"{ended}/{experiment.iterations}",
            best,
            render.format_time(experiment.create_time),
        ))
    print(render.format_table(("NAME", "STATE", "TASK", "METRIC", "ITERATIONS", "BEST", "CREATED"), rows,
                              right=(4, 5)))
    return 0


def cancel_experiment(args, ctx: Context) -> int:
    """Cancel an experiment."""
    name = resource_name(args.name, "experiments")
    experiment = ctx.experiments.CancelExperiment(experiment_pb2.CancelExperimentRequest(name=name))
    print(f"{experiment.name} is {render.experiment_state(experiment.state)}.")
    return 0


def continue_experiment(args, ctx: Context) -> int:
    """Add iterations to an experiment, then watch it unless `--no-watch` is given."""
    name = resource_name(args.name, "experiments")
    request = experiment_pb2.ContinueExperimentRequest(name=name, additional_iterations=args.iterations)
    experiment = ctx.experiments.ContinueExperiment(request)
    print(f"{experiment.name} now runs {experiment.iterations} iterations "
          f"({render.experiment_state(experiment.state)}).")
    if args.no_watch:
        return 0
    print()
    return watch.watch(ctx, name)


def best_iteration(args, ctx: Context) -> int:
    """Print the best succeeded iteration by the primary or another metric."""
    name = resource_name(args.name, "experiments")
    iteration = ctx.experiments.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=name,
                                                                                        metric=args.metric))
    print(render.iteration_details(iteration))
    return 0


def show_featurization(args, ctx: Context) -> int:
    """Print the featurization summary and the data guardrails of an experiment."""
    name = resource_name(args.name, "experiments")
    experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
    print(featurization_text(experiment))
    return 0


def featurization_text(experiment: experiment_pb2.Experiment) -> str:
    """Format the featurization table and the guardrails table of an experiment."""
    if not experiment.guardrails:
        return f"{experiment.name} has no data report yet. It appears once an iteration succeeds."
    parts = []
    summary = experiment.featurization
    if summary.columns:
        rows = [(column.column, column.detected_type, f"yes: {column.drop_reason}" if column.dropped else "no",
                 column.engineered_feature_count, ", ".join(column.transformations) or "-")
                for column in summary.columns]
        parts.append(render.format_table(("COLUMN", "TYPE", "DROPPED", "FEATURES", "TRANSFORMATIONS"), rows,
                                         right=(3,)))
        parts.append(f"{len(summary.columns)} columns became {summary.engineered_feature_count} features.")
    else:
        parts.append("No featurization: the experiment runs without preprocess.")
    rows = [(guardrail.name, featurization_pb2.GuardrailStatus.Name(guardrail.status).removeprefix("GUARDRAIL_STATUS_"),
             guardrail.description) for guardrail in experiment.guardrails]
    parts.append(render.format_table(("NAME", "STATUS", "DESCRIPTION"), rows))
    return "\n\n".join(parts)


def delete_experiment(args, ctx: Context) -> int:
    """Delete a finished experiment's records; its stored objects stay."""
    name = resource_name(args.name, "experiments")
    ctx.experiments.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(name=name))
    print(f"Deleted {name}.")
    return 0


def experiment_details(experiment: experiment_pb2.Experiment) -> str:
    """Format an experiment's settings, state, counts, best iteration and explanation."""
    validation = experiment.validation
    if validation.HasField("n_cross_validations"):
        scheme = f"{validation.n_cross_validations}-fold cross-validation"
    elif validation.HasField("validation_size"):
        scheme = f"{validation.validation_size:g} holdout"
    else:
        scheme = "chosen by row count"
    counts = ", ".join(f"{count} {state.removeprefix('ITERATION_STATE_').lower()}"
                       for state, count in sorted(experiment.iteration_counts.items()))
    best = (f"iteration {experiment.best_iteration}, {render.format_score(experiment.best_score)}"
            if experiment.best_iteration >= 0 else "-")
    exit_score = (f"{experiment.experiment_exit_score:g}" if experiment.HasField("experiment_exit_score") else "-")
    pairs = [
        ("Name", experiment.name),
        ("State", render.experiment_state(experiment.state)),
        ("Task", render.enum_name(pipeline_pb2.Task, experiment.task).lower()),
        ("Data", f"{experiment.dataset.uri} (label: {experiment.dataset.label_column or '-'})"),
        ("Compute target", experiment.compute_target),
        ("Primary metric", experiment.primary_metric),
        ("Iterations", f"{experiment.iterations} ({counts or 'none ended yet'})"),
        ("Concurrency", experiment.max_concurrent_iterations if experiment.HasField("max_concurrent_iterations")
         else "service default"),
        ("Validation", scheme),
        ("Iteration timeout", f"{experiment.iteration_timeout_minutes:g} min"
         if experiment.HasField("iteration_timeout_minutes") else "service default"),
        ("Experiment timeout", f"{experiment.experiment_timeout_minutes:g} min"
         if experiment.HasField("experiment_timeout_minutes") else "none"),
        ("Exit score", exit_score),
        ("Allowed models", ", ".join(experiment.allowed_models) or "all"),
        ("Blocked models", ", ".join(experiment.blocked_models) or "none"),
        ("Preprocess", "yes" if experiment.preprocess else "no"),
        ("Seed", experiment.seed),
        ("Best", best),
        ("Explanation", _explanation_text(experiment)),
        ("Created", render.format_time(experiment.create_time)),
        ("Ended", render.format_time(experiment.end_time)),
    ]
    if experiment.error:
        pairs.append(("Error", experiment.error))
    return render.format_fields(pairs)


def _explanation_text(experiment: experiment_pb2.Experiment) -> str:
    if not experiment.model_explainability:
        return "off"
    state = render.enum_name(experiment_pb2.ExplanationState, experiment.explanation_state)
    if experiment.explanation_error:
        return f"{state}: {experiment.explanation_error}"
    return state

