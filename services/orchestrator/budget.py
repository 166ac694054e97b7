"""Time budget and early stopping rules of an experiment's search."""

from __future__ import annotations

from automl.common import catalog
from automl.v1 import experiment_pb2

# No iteration starts with less time left than this: it could not finish a fit.
MIN_START_SECONDS = 3.0
# A trainer may run this long past the experiment's remaining time before it is timed out.
OVERRUN_MARGIN_SECONDS = 5.0
# Share of a time budget kept at its end for the ensembles, and the bounds of that reserve in seconds.
ENSEMBLE_RESERVE_SHARE = 0.1
ENSEMBLE_RESERVE_MIN_SECONDS = 5.0
ENSEMBLE_RESERVE_MAX_SECONDS = 60.0

# Early stopping, as the `enable_early_stopping` field of Experiment defines it.
EARLY_STOPPING_MIN_ENDED = 20
EARLY_STOPPING_WINDOW = 10
EARLY_STOPPING_TOLERANCE = 1e-4


def remaining_seconds(experiment, elapsed_seconds: float) -> float | None:
    """Return the time left of `experiment_timeout_minutes`, or None when it is unset."""
    if not experiment.HasField("experiment_timeout_minutes"):
        return None
    return experiment.experiment_timeout_minutes * 60 - elapsed_seconds


def ensemble_reserve_seconds(experiment, ensembles: int) -> float:
    """Return the seconds at the end of the time budget that only ensembles may use.

    The search stops early by this much, so that the ensembles, which run
    after it, fit inside the budget instead of being timed out at once.
    It is `ENSEMBLE_RESERVE_SHARE` of the budget within
    `ENSEMBLE_RESERVE_MIN_SECONDS` and `ENSEMBLE_RESERVE_MAX_SECONDS`, and
    never more than half of it; 0 without a time budget or ensembles.
    """
    if not experiment.HasField("experiment_timeout_minutes") or ensembles == 0:
        return 0.0
    total = experiment.experiment_timeout_minutes * 60
    reserve = min(max(ENSEMBLE_RESERVE_SHARE * total, ENSEMBLE_RESERVE_MIN_SECONDS), ENSEMBLE_RESERVE_MAX_SECONDS)
    return min(reserve, total / 2)


def exit_score_reached(metric: str, score: float, target: float) -> bool:
    """Return whether `score` reaches the exit score `target` in the direction of `metric`."""
    return score >= target if catalog.higher_is_better(metric) else score <= target


def iteration_timeout_seconds(experiment, remaining: float | None,
                              margin: float = OVERRUN_MARGIN_SECONDS) -> float:
    """Return the trainer timeout of a new iteration: its own timeout, cut to the experiment's time left.

    An iteration therefore ends at most `margin` seconds after `remaining`
    runs out. A searched iteration gets no margin when the ensembles have a
    reserve: the reserve is theirs.
    """
    timeout = experiment.iteration_timeout_minutes * 60
    if remaining is None:
        return timeout
    return max(1.0, min(timeout, remaining + margin))


def is_full_fidelity(iteration) -> bool:
    """Return whether an iteration used every training row (`subsample` 0 or 1)."""
    return iteration.subsample <= 0 or iteration.subsample >= 1


def should_stop_early(metric: str, ended: list) -> bool:
    """Return whether the best score stalled over the last `EARLY_STOPPING_WINDOW` ended iterations.

    Parameters
    ----------
    metric : str
        Primary metric, for its direction.
    ended : list of Iteration
        Ended iterations in the order they ended. Only succeeded
        full-fidelity ones have a score that counts.
    """
    if len(ended) < EARLY_STOPPING_MIN_ENDED:
        return False
    sign = 1.0 if catalog.higher_is_better(metric) else -1.0

    def best(iterations) -> float | None:
        scores = [sign * it.score for it in iterations
                  if it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED and is_full_fidelity(it)]
        return max(scores) if scores else None

    before = best(ended[:-EARLY_STOPPING_WINDOW])
    after = best(ended)
    if after is None:
        return True
    return before is not None and after - before <= EARLY_STOPPING_TOLERANCE
