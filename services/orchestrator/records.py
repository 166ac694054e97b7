"""Read-modify-write of experiment records and the event log, under one lock.

Every state change of an experiment or iteration goes through `Records`, which
stores it and appends the matching event in one critical section, and wakes
the watchers. A watcher that reads a terminal state therefore already finds the
terminal event in the log.
"""

from __future__ import annotations

import threading
from typing import Callable

from google.protobuf import duration_pb2, timestamp_pb2

from automl.common import catalog
from automl.common.errors import NotFound
from automl.v1 import experiment_pb2
from services.orchestrator.store import ExperimentStore

ExperimentState = experiment_pb2.ExperimentState
IterationState = experiment_pb2.IterationState

TERMINAL_STATES = frozenset({
    experiment_pb2.EXPERIMENT_STATE_SUCCEEDED,
    experiment_pb2.EXPERIMENT_STATE_FAILED,
    experiment_pb2.EXPERIMENT_STATE_CANCELED,
})

ENDED_ITERATION_STATES = frozenset({
    experiment_pb2.ITERATION_STATE_SUCCEEDED,
    experiment_pb2.ITERATION_STATE_FAILED,
    experiment_pb2.ITERATION_STATE_CANCELED,
    experiment_pb2.ITERATION_STATE_TIMED_OUT,
})

EVENT_BY_ITERATION_STATE = {
    experiment_pb2.ITERATION_STATE_RUNNING: experiment_pb2.EVENT_TYPE_ITERATION_STARTED,
    experiment_pb2.ITERATION_STATE_SUCCEEDED: experiment_pb2.EVENT_TYPE_ITERATION_SUCCEEDED,
    experiment_pb2.ITERATION_STATE_FAILED: experiment_pb2.EVENT_TYPE_ITERATION_FAILED,
    experiment_pb2.ITERATION_STATE_TIMED_OUT: experiment_pb2.EVENT_TYPE_ITERATION_FAILED,
    experiment_pb2.ITERATION_STATE_CANCELED: experiment_pb2.EVENT_TYPE_ITERATION_CANCELED,
}


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def duration(seconds: float) -> duration_pb2.Duration:
    """Return `seconds` as a Duration message."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def iteration_state_name(state: int) -> str:
    return experiment_pb2.IterationState.Name(state).removeprefix("ITERATION_STATE_")


class Records:
    """Experiment, iteration and event records of one orchestrator."""

    def __init__(self, store: ExperimentStore):
        self.store = store
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)

    def experiment(self, experiment_id: str) -> experiment_pb2.Experiment:
        """Return an experiment or raise NotFound."""
        experiment = self.store.get_experiment(experiment_id)
        if experiment is None:
            raise NotFound(f"experiment 'experiments/{experiment_id}' does not exist; "
                           "list experiments to see their names", "EXPERIMENT_NOT_FOUND",
                           {"experiment": f"experiments/{experiment_id}"})
        return experiment

    def iteration(self, experiment_id: str, index: int) -> experiment_pb2.Iteration:
        """Return an iteration or raise NotFound."""
        self.experiment(experiment_id)
        iteration = self.store.get_iteration(experiment_id, index)
        if iteration is None:
            count = self.store.count_iterations(experiment_id)
            raise NotFound(f"iteration 'experiments/{experiment_id}/iterations/{index}' does not exist; "
                           f"the experiment has iterations 0 to {count - 1}" if count else
                           f"iteration 'experiments/{experiment_id}/iterations/{index}' does not exist; "
                           "the experiment has no iterations yet", "ITERATION_NOT_FOUND")
        return iteration

    def update_experiment(self, experiment_id: str, change: Callable[[experiment_pb2.Experiment], None],
                          event_type: int = 0, message: str = "") -> experiment_pb2.Experiment:
        """Apply `change` to the stored experiment; emit an event of `event_type` when given."""
        with self.lock:
            experiment = self.experiment(experiment_id)
            change(experiment)
            self.store.put_experiment(experiment_id, experiment)
            if event_type:
                self._emit(experiment_id, experiment, event_type, message=message)
            return experiment

    def set_state(self, experiment_id: str, state: int, error: str = "") -> experiment_pb2.Experiment:
        """Move an experiment to `state` and emit a state-change event."""
        def change(experiment):
            experiment.state = state
            if error:
                experiment.error = error
            if state in TERMINAL_STATES:
                experiment.end_time.CopyFrom(now())
        return self.update_experiment(experiment_id, change, experiment_pb2.EVENT_TYPE_EXPERIMENT_STATE_CHANGED, error)

    def put_iteration(self, experiment_id: str, iteration: experiment_pb2.Iteration, message: str = "") -> None:
        """Store an iteration; on start or end, emit its event and update counts and the best iteration."""
        with self.lock:
            self.store.put_iteration(experiment_id, iteration)
            event_type = EVENT_BY_ITERATION_STATE.get(iteration.state)
            if event_type is None:
                return
            experiment = self.experiment(experiment_id)
            if iteration.state in ENDED_ITERATION_STATES:
                name = iteration_state_name(iteration.state)
                experiment.iteration_counts[name] = experiment.iteration_counts.get(name, 0) + 1
            # A low-fidelity iteration (subsample below 1) saw only part of the rows, so it never becomes best.
            full_fidelity = iteration.subsample <= 0 or iteration.subsample >= 1
            if iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED and full_fidelity and catalog.is_better(
                    experiment.primary_metric, iteration.score,
                    experiment.best_score if experiment.best_iteration >= 0 else None):
                experiment.best_iteration = iteration.index
                experiment.best_score = iteration.score
            self.store.put_experiment(experiment_id, experiment)
            self._emit(experiment_id, experiment, event_type, iteration, message or iteration.error)

    def _emit(self, experiment_id, experiment, event_type, iteration=None, message=""):
        event = experiment_pb2.ExperimentEvent(
            type=event_type, time=now(), state=experiment.state, best_iteration=experiment.best_iteration,
            best_score=experiment.best_score, message=message,
        )
        if iteration is not None:
            event.iteration.CopyFrom(iteration)
        self.store.append_event(experiment_id, event)
        self.changed.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Block until any record changes or `timeout` seconds pass."""
        with self.changed:
            self.changed.wait(timeout)
