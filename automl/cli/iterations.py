"""`automl iteration ...` and `automl model download`: one iteration, its log and its model."""

from __future__ import annotations

import argparse

from automl.cli import render
from automl.cli.client import Context, resource_name
from automl.cli.errors import CliError
from automl.v1 import experiment_pb2


def register(subparsers, common: argparse.ArgumentParser) -> None:
    """Add the `iteration` and `model` commands and their subcommands."""
    iteration = subparsers.add_parser("iteration", help="inspect the iterations of an experiment")
    commands = iteration.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = commands.add_parser("list", parents=[common], help="list an experiment's iterations")
    listing.add_argument("experiment", metavar="EXPERIMENT")
    listing.set_defaults(func=list_iterations)

    show = commands.add_parser("show", parents=[common], help="show an iteration's metrics, URIs and error")
    show.add_argument("experiment", metavar="EXPERIMENT")
    show.add_argument("index", metavar="N", type=int)
    show.set_defaults(func=show_iteration)

    cancel = commands.add_parser("cancel", parents=[common], help="stop one iteration; the experiment goes on")
    cancel.add_argument("experiment", metavar="EXPERIMENT")
    cancel.add_argument("index", metavar="N", type=int)
    cancel.set_defaults(func=cancel_iteration)

    logs = commands.add_parser("logs", parents=[common], help="print an iteration's log")
    logs.add_argument("experiment", metavar="EXPERIMENT")
    logs.add_argument("index", metavar="N", type=int)
    logs.set_defaults(func=print_log)

    model = subparsers.add_parser("model", help="download fitted models")
    model_commands = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = model_commands.add_parser("download", parents=[common], help="download a fitted model file")
    download.add_argument("experiment", metavar="EXPERIMENT")
    download.add_argument("--iteration", type=int, help="iteration whose model to fetch (default: the best)")
    download.add_argument("--output", default="model.skops", help="file to write (default model.skops)")
    download.set_defaults(func=download_model)


def iteration_name(experiment: str, index: int) -> str:
    """Return `experiments/{id}/iterations/{index}`."""
    return f"{resource_name(experiment, 'experiments')}/iterations/{index}"


def get_iteration(ctx: Context, experiment: str, index: int) -> experiment_pb2.Iteration:
    """Fetch one iteration."""
    return ctx.experiments.GetIteration(experiment_pb2.GetIterationRequest(name=iteration_name(experiment, index)))


def list_all(ctx: Context, experiment: str) -> list[experiment_pb2.Iteration]:
    """Fetch every iteration of an experiment, following page tokens."""
    parent = resource_name(experiment, "experiments")
    iterations = []
    page_token = ""
    while True:
        response = ctx.experiments.ListIterations(
            experiment_pb2.ListIterationsRequest(parent=parent, page_size=1000, page_token=page_token))
        iterations.extend(response.iterations)
        page_token = response.next_page_token
        if not page_token:
            return iterations


def list_iterations(args, ctx: Context) -> int:
    """Print an experiment's iterations as a table."""
    iterations = list_all(ctx, args.experiment)
    if not iterations:
        print(f"{resource_name(args.experiment, 'experiments')} has no iterations yet.")
        return 0
    print(render.iteration_table(iterations))
    return 0


def show_iteration(args, ctx: Context) -> int:
    """Print one iteration in full."""
    print(render.iteration_details(get_iteration(ctx, args.experiment, args.index)))
    return 0


def cancel_iteration(args, ctx: Context) -> int:
    """Cancel one iteration."""
    request = experiment_pb2.CancelIterationRequest(name=iteration_name(args.experiment, args.index))
    iteration = ctx.experiments.CancelIteration(request)
    # The iteration stops in the background; it reads CANCELED once its node has stopped it.
    print(f"Canceling {iteration.name} (state now {render.iteration_state(iteration.state)}).")
    return 0


def print_log(args, ctx: Context) -> int:
    """Print the log object of an iteration."""
    iteration = get_iteration(ctx, args.experiment, args.index)
    if not iteration.log_uri:
        raise CliError(f"{iteration.name} has no log yet (state {render.iteration_state(iteration.state)}); "
                       "try again once it has run")
    text = ctx.store.get_bytes(iteration.log_uri).decode("utf-8", errors="replace")
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def download_model(args, ctx: Context) -> int:
    """Download the model of the best or a given iteration and print how to use it."""
    if args.iteration is None:
        parent = resource_name(args.experiment, "experiments")
        iteration = ctx.experiments.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=parent))
    else:
        iteration = get_iteration(ctx, args.experiment, args.iteration)
    if not iteration.model_uri:
        raise CliError(f"{iteration.name} has no model (state {render.iteration_state(iteration.state)}); "
                       "only succeeded iterations store one")

    ctx.store.download(iteration.model_uri, args.output)
    print(f"Saved the model of iteration {iteration.index} ({render.pipeline_text(iteration.pipeline)}) "
          f"to {args.output}.")
    print(loading_hint(args.output))
    return 0


def loading_hint(path: str) -> str:
    """Return Python lines that load a downloaded model and predict on raw rows."""
    return (
        "Load it and predict on raw rows (a pandas DataFrame with the training columns, without the label):\n"
        "    from automl.common.models import load_model_file\n"
        f"    model = load_model_file({path!r})\n"
        "    predictions = model.pipeline.predict(rows[model.feature_names])"
    )
