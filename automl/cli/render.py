"""Text formatting of tables, durations, timestamps, states and metrics."""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from google.protobuf import duration_pb2, timestamp_pb2

from automl.v1 import compute_pb2, experiment_pb2, pipeline_pb2

# Widths of the live iteration table; the header reads like Azure AutoML's.
WATCH_HEADER = (
    " ITERATION   PIPELINE                              DURATION   METRIC   BEST"
)
_PIPELINE_WIDTH = 38
_DURATION_WIDTH = 11
_METRIC_WIDTH = 9

_ENUM_PREFIXES = (
    (experiment_pb2.ExperimentState, "EXPERIMENT_STATE_"),
    (experiment_pb2.IterationState, "ITERATION_STATE_"),
    (experiment_pb2.ExplanationState, "EXPLANATION_STATE_"),
    (experiment_pb2.EventType, "EVENT_TYPE_"),
    (compute_pb2.ProvisioningState, "PROVISIONING_STATE_"),
    (compute_pb2.NodeState, "NODE_STATE_"),
    (compute_pb2.VmPriority, "VM_PRIORITY_"),
    (pipeline_pb2.Task, "TASK_"),
)


def enum_name(enum_type, value: int) -> str:
    """Return an enum value's name without its type prefix, e.g. `SUCCEEDED`."""
    for known_type, prefix in _ENUM_PREFIXES:
        if known_type is enum_type:
            try:
                return enum_type.Name(value).removeprefix(prefix)
            except ValueError:
                return str(value)
    return enum_type.Name(value)


def experiment_state(value: int) -> str:
    """Return the short name of an ExperimentState."""
    return enum_name(experiment_pb2.ExperimentState, value)


def iteration_state(value: int) -> str:
    """Return the short name of an IterationState."""
    return enum_name(experiment_pb2.IterationState, value)


def format_duration(duration: duration_pb2.Duration | float | None) -> str:
    """Format a duration as `H:MM:SS`, rounded to whole seconds; `-` when unset."""
    if duration is None:
        return "-"
    if isinstance(duration, duration_pb2.Duration):
        if duration.seconds == 0 and duration.nanos == 0:
            return "-"
        seconds = duration.seconds + duration.nanos / 1e9
    else:
        seconds = float(duration)
    return str(dt.timedelta(seconds=round(seconds)))


def format_time(timestamp: timestamp_pb2.Timestamp) -> str:
    """Format a timestamp in local time to the second; `-` when unset."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return "-"
    moment = timestamp.ToDatetime(tzinfo=dt.timezone.utc).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_score(value: float | None) -> str:
    """Format a metric value with four decimals; empty when there is none."""
    if value is None:
        return ""
    return f"{value:.4f}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Lay out rows under headers in columns separated by three spaces.

    Parameters
    ----------
    headers : sequence of str
        Column titles.
    rows : iterable of sequences
        Cell values; each is shown with `str`.
    right : sequence of int
        Indexes of columns to align right, such as numbers.
    """
    cells = [[str(value) for value in row] for row in rows]
    widths = [len(title) for title in headers]
    for row in cells:
        for column, value in enumerate(row):
            widths[column] = max(widths[column], len(value))

    def line(values: Sequence[str]) -> str:
        parts = []
        for column, value in enumerate(values):
            if column in right:
                parts.append(value.rjust(widths[column]))
            else:
                parts.append(value.ljust(widths[column]))
        return "   ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def format_fields(pairs: Iterable[tuple[str, object]]) -> str:
    """Lay out `name: value` lines with the values aligned."""
    pairs = list(pairs)
    width = max((len(name) for name, _ in pairs), default=0) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {value}" for name, value in pairs)


def pipeline_text(pipeline: pipeline_pb2.Pipeline) -> str:
    """Return a pipeline's description, or `scaler estimator` when it has none."""
    if pipeline.description:
        return pipeline.description
    return " ".join(part for part in (pipeline.scaler, pipeline.estimator) if part) or "-"


def watch_row(iteration: experiment_pb2.Iteration, best_score: float | None) -> str:
    """Format one finished iteration as a row of the live table.

    The METRIC column shows the primary metric of a succeeded iteration and
    the state (FAILED, CANCELED, TIMED_OUT) of any other.
    """
    if iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED:
        metric = format_score(iteration.score)
    else:
        metric = iteration_state(iteration.state)
    return (
        f"{iteration.index:>10}   "
        f"{pipeline_text(iteration.pipeline).ljust(_PIPELINE_WIDTH)}"
        f"{format_duration(iteration.duration).ljust(_DURATION_WIDTH)}"
        f"{metric.ljust(_METRIC_WIDTH)}"
        f"{format_score(best_score)}"
    ).rstrip()


def iteration_table(iterations: Iterable[experiment_pb2.Iteration]) -> str:
    """Format iterations as a table of index, state, pipeline, duration and primary metric."""
    rows = []
    for iteration in iterations:
        succeeded = iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED
        rows.append((
            iteration.index,
            iteration_state(iteration.state),
            pipeline_text(iteration.pipeline),
            format_duration(iteration.duration),
            format_score(iteration.score) if succeeded else "-",
        ))
    return format_table(("ITERATION", "STATE", "PIPELINE", "DURATION", "METRIC"), rows, right=(0, 4))


def iteration_details(iteration: experiment_pb2.Iteration) -> str:
    """Format every field of an iteration: state, pipeline, metrics, URIs and error."""
    pipeline = iteration.pipeline
    hyperparameters = ", ".join(f"{key}={_plain(value)}" for key, value in sorted(pipeline.hyperparameters.items()))
    pairs = [
        ("Iteration", iteration.name),
        ("State", iteration_state(iteration.state)),
        ("Pipeline", pipeline_text(pipeline)),
        ("Scaler", pipeline.scaler or "-"),
        ("Estimator", pipeline.estimator or "-"),
        ("Hyperparameters", hyperparameters or "-"),
        ("Score", format_score(iteration.score) if iteration.metrics else "-"),
        ("Validation", iteration.validation_strategy or "-"),
        ("Node", iteration.node or "-"),
        ("Attempts", iteration.attempts),
        ("Started", format_time(iteration.start_time)),
        ("Ended", format_time(iteration.end_time)),
        ("Duration", format_duration(iteration.duration)),
        ("Model", iteration.model_uri or "-"),
        ("Metrics file", iteration.metrics_uri or "-"),
        ("Log", iteration.log_uri or "-"),
    ]
    if iteration.error:
        pairs.append(("Error", iteration.error))
    text = format_fields(pairs)
    if iteration.metrics:
        metric_rows = [(name, format_score(value)) for name, value in sorted(iteration.metrics.items())]
        text += "\n\n" + format_table(("METRIC", "VALUE"), metric_rows, right=(1,))
    return text


def _plain(value) -> str:
    # Struct numbers are doubles; show whole ones without a trailing `.0`.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
