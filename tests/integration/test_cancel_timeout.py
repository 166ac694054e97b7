"""CancelExperiment after a success, and iteration timeouts, on the real stack."""

import time
from pathlib import Path

import numpy as np
import pytest

from automl.common import catalog
from automl.common.models import loads_model
from automl.v1 import experiment_pb2
from services.orchestrator.search_space import PORTFOLIOS
from tests.integration.helpers import (create_slow_experiment, ensure_target, experiment_stub, slow_frame, wait_for,
                                       wait_terminal, worker_pids)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds worker processes through /proc"),
]

# The portfolio tries a LogisticRegression, then an RBF SVM with probabilities, so on the slow data set
# iteration 0 is quick and iteration 1 is slow.
QUICK_THEN_SLOW = ["LogisticRegression", "SVM"]


def test_portfolio_tries_quick_family_first():
    estimators = [estimator for _, estimator, _ in PORTFOLIOS[catalog.CLASSIFICATION] if estimator in QUICK_THEN_SLOW]

    assert estimators[:2] == QUICK_THEN_SLOW, "the tests below need this order of the portfolio"


def _iterations(stub, name: str) -> list:
    return list(stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=name)).iterations)


def _running(stub, name: str, index: int):
    """Return iteration `index` once it runs, else None."""
    return next((it for it in _iterations(stub, name)
                 if it.index == index and it.state == experiment_pb2.ITERATION_STATE_RUNNING), None)


def test_cancel_experiment_keeps_results(stack, store):
    stub = experiment_stub(stack)
    name = create_slow_experiment(stub, store, ensure_target(stack, "cancel-cluster"), "cancel-after-success",
                                  iterations=6, allowed_models=QUICK_THEN_SLOW)
    wait_for(lambda: _running(stub, name, 1), 120, what="iteration 1 running after iteration 0")
    workers = wait_for(worker_pids, 30, what="the worker of iteration 1")
    before = stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))

    stub.CancelExperiment(experiment_pb2.CancelExperimentRequest(name=name))
    ended = wait_terminal(stub, name, timeout=30)
    # Running iterations are stopped: the worker exits, and no iteration starts after the cancel.
    wait_for(lambda: not (workers & worker_pids()), 5, what="the worker gone")
    time.sleep(2)
    iterations = _iterations(stub, name)

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_CANCELED
    assert [it.index for it in iterations] == [0, 1]
    assert iterations[0].state == experiment_pb2.ITERATION_STATE_SUCCEEDED
    assert iterations[1].state == experiment_pb2.ITERATION_STATE_CANCELED
    # The result that ended before the cancel stays readable, and the best model downloadable.
    assert before.best_iteration == 0
    assert ended.best_iteration == 0
    assert ended.best_score == iterations[0].score
    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=name))
    model = loads_model(store.get_bytes(best.model_uri))
    rows = slow_frame().drop(columns="label").iloc[:20]
    assert set(np.unique(model.pipeline.predict(rows))) <= {0, 1}


def test_iteration_timeout_is_hard_limit(stack, store):
    stub = experiment_stub(stack)
    timeout_minutes = 0.1
    name = create_slow_experiment(stub, store, ensure_target(stack, "cancel-cluster"), "timeout-limit",
                                  iterations=3, allowed_models=QUICK_THEN_SLOW,
                                  iteration_timeout_minutes=timeout_minutes)
    ended = wait_terminal(stub, name, timeout=120)
    iterations = _iterations(stub, name)
    timed_out = [it for it in iterations if it.state == experiment_pb2.ITERATION_STATE_TIMED_OUT]

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert len(iterations) == 3
    assert iterations[0].state == experiment_pb2.ITERATION_STATE_SUCCEEDED
    # The slow SVM iteration is stopped at its timeout, and the node runs the next iteration.
    assert iterations[1].state == experiment_pb2.ITERATION_STATE_TIMED_OUT
    assert iterations[1].error.startswith("DEADLINE_EXCEEDED")
    assert "timed out after 6 s" in iterations[1].error
    for iteration in timed_out:
        # The limit covers the whole iteration; the rest is the worker's stop and the call's return.
        assert iteration.duration.ToNanoseconds() / 1e9 < timeout_minutes * 60 + 3
    wait_for(lambda: not worker_pids(), 5, what="every worker gone")
