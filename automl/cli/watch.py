"""`automl experiment watch`: the live table of finished iterations.

The WatchExperiment stream sends every event of an experiment from a start
index until the experiment ends. When the stream breaks with UNAVAILABLE (the
orchestrator restarted, the network dropped) the watcher reconnects from the
event after the last one it received, a bounded number of times.
"""

from __future__ import annotations

import sys
import time

import grpc

from automl.cli import render
from automl.cli.client import Context, resource_id
from automl.cli.errors import ServiceCallError
from automl.common import catalog
from automl.v1 import experiment_pb2

MAX_RECONNECTS = 8
MAX_BACKOFF_SECONDS = 5.0

TERMINAL_STATES = (
    experiment_pb2.EXPERIMENT_STATE_SUCCEEDED,
    experiment_pb2.EXPERIMENT_STATE_FAILED,
    experiment_pb2.EXPERIMENT_STATE_CANCELED,
)
FINISHED_ITERATION_EVENTS = (
    experiment_pb2.EVENT_TYPE_ITERATION_SUCCEEDED,
    experiment_pb2.EVENT_TYPE_ITERATION_FAILED,
    experiment_pb2.EVENT_TYPE_ITERATION_CANCELED,
)


class LiveTable:
    """Prints a row per finished iteration and tracks the best score so far.

    Parameters
    ----------
    primary_metric : str
        Metric that ranks iterations; decides whether higher or lower is better
        when an event does not carry the best score.
    out : file
        Where rows go.
    """

    def __init__(self, primary_metric: str, out=None):
        self.primary_metric = primary_metric
        self.out = out or sys.stdout
        self.best_score: float | None = None
        self.pipelines: dict[int, str] = {}
        self.rows = 0

    def header(self) -> None:
        """Print the column titles."""
        print(render.WATCH_HEADER, file=self.out, flush=True)

    def handle(self, event: experiment_pb2.ExperimentEvent) -> None:
        """Print the row of a finished-iteration event; other events print nothing or a note."""
        if event.type in FINISHED_ITERATION_EVENTS:
            iteration = event.iteration
            self.pipelines[iteration.index] = render.pipeline_text(iteration.pipeline)
            self._update_best(event)
            print(render.watch_row(iteration, self.best_score), file=self.out, flush=True)
            self.rows += 1
        elif (event.type == experiment_pb2.EVENT_TYPE_EXPERIMENT_STATE_CHANGED
              and event.state == experiment_pb2.EXPERIMENT_STATE_EXPLAINING):
            print(f"Explaining the best model (iteration {event.best_iteration})...", file=self.out, flush=True)

    def _update_best(self, event: experiment_pb2.ExperimentEvent) -> None:
        if event.best_iteration >= 0:
            self.best_score = event.best_score
            return
        # Events before the first success carry no best; also covers a
        # service that leaves the field unset.
        iteration = event.iteration
        if iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED and catalog.is_better(
                self.primary_metric, iteration.score, self.best_score):
            self.best_score = iteration.score


def watch(ctx: Context, name: str, start_index: int = 0, out=None) -> int:
    """Print the live table of an experiment until it ends, then a summary.

    Parameters
    ----------
    ctx : Context
        Connections of the command.
    name : str
        Resource name, `experiments/{id}`.
    start_index : int
        First event to show.
    out : file, optional
        Where the table goes; stdout by default.

    Returns
    -------
    int
        0 when the experiment succeeded, else 1.
    """
    out = out or sys.stdout
    experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
    metric = experiment.primary_metric or catalog.DEFAULT_PRIMARY_METRIC.get(experiment.task, "accuracy")
    table = LiveTable(metric, out)
    table.header()

    next_index = start_index
    reconnects = 0
    while True:
        stream = ctx.experiments.stream("WatchExperiment",
                                        experiment_pb2.WatchExperimentRequest(name=name, start_index=next_index))
        try:
            for response in stream:
                table.handle(response.event)
                next_index = response.event.index + 1
                reconnects = 0
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or reconnects >= MAX_RECONNECTS:
                raise ServiceCallError(error, ctx.experiments.service, ctx.experiments.address) from None
            reconnects += 1
            print(f"The event stream broke ({error.details()}); reconnecting from event {next_index} "
                  f"(attempt {reconnects} of {MAX_RECONNECTS}).", file=sys.stderr, flush=True)
            time.sleep(min(0.5 * 2 ** (reconnects - 1), MAX_BACKOFF_SECONDS))
            continue
        except KeyboardInterrupt:
            stream.cancel()
            print(f"\nStopped watching; {name} keeps running. Resume with: "
                  f"automl experiment watch {resource_id(name)} --from {next_index}", file=sys.stderr, flush=True)
            raise

        experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
        if experiment.state in TERMINAL_STATES:
            break
        # The stream closed cleanly although the experiment goes on, e.g. when
        # the orchestrator shut down gracefully; pick it up again.
        if reconnects >= MAX_RECONNECTS:
            print(f"error: the event stream of {name} closed {reconnects} times while the experiment is "
                  f"{render.experiment_state(experiment.state)}", file=sys.stderr)
            return 1
        reconnects += 1
        time.sleep(min(0.5 * 2 ** (reconnects - 1), MAX_BACKOFF_SECONDS))

    print(file=out)
    print(summary(experiment, metric, table.pipelines), file=out, flush=True)
    return 0 if experiment.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED else 1


def summary(experiment: experiment_pb2.Experiment, metric: str, pipelines: dict[int, str] | None = None) -> str:
    """Format the end of a watch: state, best iteration and score, counts, errors and explanation."""
    pipelines = pipelines or {}
    state = render.experiment_state(experiment.state)
    lines = []
    if experiment.best_iteration >= 0:
        pipeline = pipelines.get(experiment.best_iteration)
        described = f" ({pipeline})" if pipeline else ""
        lines.append(f"Experiment {resource_id(experiment.name)} {state}: best iteration "
                     f"{experiment.best_iteration}{described}, {metric} {render.format_score(experiment.best_score)}")
    else:
        lines.append(f"Experiment {resource_id(experiment.name)} {state}: no iteration succeeded")
    if experiment.iteration_counts:
        counts = ", ".join(f"{count} {state_name.removeprefix('ITERATION_STATE_').lower()}"
                           for state_name, count in sorted(experiment.iteration_counts.items()))
        lines.append(f"Iterations: {counts}")
    if experiment.error:
        lines.append(f"Error: {experiment.error}")
    explanation = render.enum_name(experiment_pb2.ExplanationState, experiment.explanation_state)
    if experiment.explanation_state == experiment_pb2.EXPLANATION_STATE_SUCCEEDED:
        lines.append(f"Explanation: {explanation}; show it with: automl explanation show {resource_id(experiment.name)}")
    elif experiment.explanation_state == experiment_pb2.EXPLANATION_STATE_FAILED:
        lines.append(f"Explanation: {explanation}: {experiment.explanation_error}")
    elif experiment.explanation_state != experiment_pb2.EXPLANATION_STATE_UNSPECIFIED:
        lines.append(f"Explanation: {explanation}")
    return "\n".join(lines)
