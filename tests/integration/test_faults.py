"""Faults caused on purpose in the real processes, and what the experiment makes of them."""

import os
import signal
from pathlib import Path

import grpc
import pytest

from automl.v1 import experiment_pb2, pipeline_pb2
from tests.integration.helpers import (alive, create_slow_experiment, ensure_target, experiment_stub, iris_frame,
                                       node_pids, resume_watch, upload_frame, wait_for, wait_terminal, worker_pids)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds node processes through /proc"),
]


def test_killed_trainer_iteration_retried(stack, store):
    stub = experiment_stub(stack)
    target = ensure_target(stack, "fault-cluster")
    create_slow_experiment(stub, store, target, "fault-kill")

    def running_iteration():
        iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent="experiments/fault-kill"))
        return next((it for it in iterations.iterations if it.state == experiment_pb2.ITERATION_STATE_RUNNING), None)

    first = wait_for(running_iteration, 60, what="a running iteration")
    workers = wait_for(worker_pids, 30, what="the iteration's worker process")
    pid = node_pids(first.node)[first.node]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, what="the trainer node to die")
    # The dead node's worker does not run on as an orphan.
    wait_for(lambda: not any(alive(worker) for worker in workers), 10, what="the dead node's worker to exit")

    ended = wait_terminal(stub, "experiments/fault-kill", timeout=240)
    iterations = {it.index: it for it in stub.ListIterations(
        experiment_pb2.ListIterationsRequest(parent="experiments/fault-kill")).iterations}

    # The lost attempt is recorded, the iteration ran again elsewhere, and both iterations are accounted for.
    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, [(it.attempts, it.error) for it in iterations.values()]
    assert sorted(iterations) == [0, 1]
    retried = iterations[first.index]
    assert retried.state == experiment_pb2.ITERATION_STATE_SUCCEEDED, retried.error
    assert retried.attempts == 2
    assert retried.node != first.node
    assert all(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations.values())
    assert first.node not in node_pids(f"{target}/nodes/")


def test_orchestrator_killed_and_restarted_resumes(stack, store):
    stub = experiment_stub(stack)
    target = ensure_target(stack, "fault-cluster")
    name = create_slow_experiment(stub, store, target, "fault-resume")

    # A watcher reads events until the first iteration has succeeded and the second has started.
    seen = []
    for response in stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name=name), timeout=180):
        seen.append(response.event)
        if response.event.type == experiment_pb2.EVENT_TYPE_ITERATION_STARTED and response.event.iteration.index == 1:
            break
    finished = stub.GetIteration(experiment_pb2.GetIterationRequest(name=f"{name}/iterations/0"))
    assert finished.state == experiment_pb2.ITERATION_STATE_SUCCEEDED

    stack.stop_part("experiment", signal.SIGKILL)
    stack.start_part("experiment")

    # The watcher reconnects after the last event it received and receives the rest of the experiment.
    resumed, ended, iterations = resume_watch(stack, name, seen)

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert [it.index for it in iterations] == [0, 1]
    assert all(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations)
    # The iteration that had ended keeps its result; the one in flight ran again.
    assert iterations[0].score == finished.score
    assert iterations[0].end_time == finished.end_time
    assert [event.index for event in resumed] == list(range(seen[-1].index + 1, seen[-1].index + 1 + len(resumed)))
    assert resumed[-1].state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED


def test_explainer_down_fails_only_the_explanation(stack, store):
    stub = experiment_stub(stack)
    uri = upload_frame(store, "datasets/fault-explainer.csv", iris_frame())
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="species"), compute_target=ensure_target(
            stack, "fault-cluster"), task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="accuracy", seed=3,
        iterations=2, max_concurrent_iterations=2, model_explainability=True, allowed_models=["LogisticRegression"],
        enable_voting_ensemble=False, enable_stack_ensemble=False)
    name = "experiments/fault-explainer"

    stack.stop_part("explainer")
    try:
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="fault-explainer",
                                                                     experiment=experiment))
        ended = wait_terminal(stub, name, timeout=120)
    finally:
        stack.start_part("explainer")

    # The experiment's results stay: it succeeds, its best model is there, and explanation_error gives the reason.
    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert ended.explanation_state == experiment_pb2.EXPLANATION_STATE_FAILED
    assert ended.explanation_error.startswith("UNAVAILABLE")
    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=name))
    assert best.state == experiment_pb2.ITERATION_STATE_SUCCEEDED
    assert store.get_bytes(best.model_uri)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetExplanation(experiment_pb2.GetExplanationRequest(parent=name))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "FAILED" in raised.value.details()
