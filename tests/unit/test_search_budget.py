"""Experiment time budget, per-iteration timeouts, early stopping and full-fidelity best tracking."""

import pytest
from google.protobuf import timestamp_pb2

from automl.v1 import experiment_pb2
from services.orchestrator import budget
from services.orchestrator.records import Records
from services.orchestrator.store import ExperimentStore

SUCCEEDED = experiment_pb2.ITERATION_STATE_SUCCEEDED
FAILED = experiment_pb2.ITERATION_STATE_FAILED


def ended(scores, subsample=1.0):
    return [experiment_pb2.Iteration(index=i, state=SUCCEEDED if score is not None else FAILED,
                                     score=score or 0.0, subsample=subsample)
            for i, score in enumerate(scores)]


def test_remaining_seconds_of_fractional_timeout():
    experiment = experiment_pb2.Experiment(experiment_timeout_minutes=0.5)

    assert budget.remaining_seconds(experiment, 10.0) == 20.0
    assert budget.remaining_seconds(experiment_pb2.Experiment(), 10.0) is None


def test_iteration_timeout_cut_to_remaining_budget():
    experiment = experiment_pb2.Experiment(iteration_timeout_minutes=10)

    assert budget.iteration_timeout_seconds(experiment, None) == 600
    assert budget.iteration_timeout_seconds(experiment, 20.0) == 20.0 + budget.OVERRUN_MARGIN_SECONDS
    assert budget.iteration_timeout_seconds(experiment, 5000.0) == 600
    assert budget.iteration_timeout_seconds(experiment, -50.0) == 1.0


def test_ensemble_reserve_bounded_share():
    def reserve(minutes, ensembles=2):
        return budget.ensemble_reserve_seconds(experiment_pb2.Experiment(experiment_timeout_minutes=minutes), ensembles)

    assert reserve(0.5) == budget.ENSEMBLE_RESERVE_MIN_SECONDS
    assert reserve(1) == pytest.approx(6.0)
    assert reserve(5) == pytest.approx(30.0)
    assert reserve(60) == budget.ENSEMBLE_RESERVE_MAX_SECONDS
    # A tiny budget keeps at least half of itself for the search.
    assert reserve(0.1) == pytest.approx(3.0)
    assert reserve(5, ensembles=0) == 0.0
    assert budget.ensemble_reserve_seconds(experiment_pb2.Experiment(), 2) == 0.0


def test_early_stopping_needs_twenty_ended():
    assert not budget.should_stop_early("accuracy", ended([0.9] * 19))
    assert budget.should_stop_early("accuracy", ended([0.9] * 20))


def test_early_stopping_waits_while_improving():
    scores = [0.80] * 10 + [0.80 + 0.001 * i for i in range(1, 11)]

    assert not budget.should_stop_early("accuracy", ended(scores))
    # An improvement of at most 0.0001 over the last 10 counts as none.
    assert budget.should_stop_early("accuracy", ended([0.8] * 19 + [0.80005]))


def test_early_stopping_follows_metric_direction():
    falling_error = [0.5] * 10 + [0.5 - 0.01 * i for i in range(1, 11)]

    assert not budget.should_stop_early("normalized_root_mean_squared_error", ended(falling_error))
    assert budget.should_stop_early("accuracy", ended(falling_error))


def test_early_stopping_ignores_low_fidelity():
    scores = ended([0.8] * 10) + ended([0.95] * 10, subsample=0.25)

    assert budget.should_stop_early("accuracy", scores)


def test_low_fidelity_iteration_never_best():
    records = Records(ExperimentStore(":memory:"))
    experiment = experiment_pb2.Experiment(name="experiments/e", primary_metric="accuracy", best_iteration=-1)
    records.store.put_experiment("e", experiment)

    for index, (score, subsample) in enumerate([(0.7, 1.0), (0.9, 0.25), (0.8, 0.0)]):
        iteration = experiment_pb2.Iteration(name=f"experiments/e/iterations/{index}", index=index, state=SUCCEEDED,
                                             score=score, subsample=subsample, end_time=timestamp_pb2.Timestamp())
        records.put_iteration("e", iteration)
    stored = records.experiment("e")

    assert stored.best_iteration == 2
    assert stored.best_score == 0.8
