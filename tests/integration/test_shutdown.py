"""SIGTERM to each service while it works: graceful stop, calls finished or handed back, no orphans."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sklearn.neighbors import KNeighborsClassifier

from automl.common.models import StoredModel, dumps_model
from automl.common.server import ServiceServer
from automl.v1 import experiment_pb2, explainer_pb2, explainer_pb2_grpc, pipeline_pb2
from tests.integration.helpers import (alive, create_slow_experiment, descendants, ensure_target, experiment_stub,
                                       node_pids, resume_watch, slow_frame, upload_frame, wait_for, wait_terminal)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds node processes through /proc"),
]

# Every service stops with ServiceServer's default grace period; the margin covers interpreter exit.
GRACE_SECONDS = ServiceServer("probe", 0).grace_seconds
EXIT_MARGIN_SECONDS = 5.0


class HealthProbe:
    """Poll a service's health in a thread and record each result, a status name or an error code."""

    def __init__(self, address: str):
        self.results: list[str] = []
        self._channel = grpc.insecure_channel(address)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._channel.close()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                self.results.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
            except grpc.RpcError as error:
                self.results.append(error.code().name)
            self._stop.wait(0.05)


def terminate(stack, part: str) -> tuple[int, float]:
    """SIGTERM one part of `stack`; return its exit code and the seconds it took to exit."""
    process = stack.processes.pop(part)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(GRACE_SECONDS + EXIT_MARGIN_SECONDS)
    except Exception:
        process.kill()
        process.wait()
        raise AssertionError(f"{part} did not exit within {GRACE_SECONDS + EXIT_MARGIN_SECONDS} s of SIGTERM")
    return process.returncode, time.monotonic() - started


def after_serving(results: list[str]) -> list[str]:
    """Return the results after the last SERVING, that is, those recorded while stopping."""
    last = max((i for i, result in enumerate(results) if result == "SERVING"), default=-1)
    return results[last + 1:]


def test_orchestrator_sigterm_resumes_experiment(stack, store):
    stub = experiment_stub(stack)
    name = create_slow_experiment(stub, store, ensure_target(stack, "shutdown-cluster"), "shutdown-resume")
    watcher = stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name=name), timeout=180)
    seen = []
    for response in watcher:
        seen.append(response.event)
        if response.event.type == experiment_pb2.EVENT_TYPE_ITERATION_STARTED and response.event.iteration.index == 1:
            break

    with HealthProbe(stack.address("experiment")) as probe:
        wait_for(lambda: probe.results, 5, what="a first health check")
        code, seconds = terminate(stack, "experiment")
    # The watch stream is handed back: it ends with UNAVAILABLE and the client reconnects after the last event.
    with pytest.raises(grpc.RpcError) as ended_stream:
        for response in watcher:
            seen.append(response.event)
    stack.start_part("experiment")
    resumed, ended, iterations = resume_watch(stack, name, seen)

    assert code == 0
    assert seconds < GRACE_SECONDS + EXIT_MARGIN_SECONDS
    assert ended_stream.value.code() == grpc.StatusCode.UNAVAILABLE, ended_stream.value.details()
    assert "SERVING" not in after_serving(probe.results)
    assert after_serving(probe.results), "health was not checked during the stop"
    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert [it.state for it in iterations] == [experiment_pb2.ITERATION_STATE_SUCCEEDED] * 2, \
        [(it.index, it.error) for it in iterations]
    # The iteration in flight at the SIGTERM was left to run again, not recorded as canceled.
    assert iterations[1].attempts == 2
    assert resumed[-1].state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED


def test_explainer_sigterm_during_explain(stack, store):
    frame = slow_frame(rows=3000, features=30)
    features = [column for column in frame.columns if column != "label"]
    pipeline = KNeighborsClassifier().fit(frame[features], frame["label"])
    model = StoredModel(pipeline=pipeline, task="classification", feature_names=features,
                        class_labels=list(pipeline.classes_), label_column="label")
    model_uri = store.put_bytes("experiments/shutdown-explain/model.skops", dumps_model(model))
    dataset_uri = upload_frame(store, "datasets/shutdown-explain.csv", frame)
    request = explainer_pb2.ExplainModelRequest(
        model_uri=model_uri, dataset=pipeline_pb2.Dataset(uri=dataset_uri, label_column="label"),
        task=pipeline_pb2.TASK_CLASSIFICATION, output_uri=store.uri("explanations/shutdown-explain/"), max_rows=3000)
    outcome = {}

    def call():
        with grpc.insecure_channel(stack.address("explainer")) as channel:
            try:
                outcome["explanation"] = explainer_pb2_grpc.ExplainerServiceStub(channel).ExplainModel(
                    request, timeout=120)
            except grpc.RpcError as error:
                outcome["error"] = error

    caller = threading.Thread(target=call)
    caller.start()
    try:
        # KNN gets the permutation explainer, which works for up to its time budget: the call is in flight.
        time.sleep(3)
        assert caller.is_alive(), outcome
        with HealthProbe(stack.address("explainer")) as probe:
            wait_for(lambda: probe.results, 5, what="a first health check")
            code, seconds = terminate(stack, "explainer")
        caller.join(30)
    finally:
        stack.start_part("explainer")

    assert not caller.is_alive()
    assert code == 0
    assert seconds < GRACE_SECONDS + EXIT_MARGIN_SECONDS
    assert "SERVING" not in after_serving(probe.results)
    if "error" in outcome:
        assert outcome["error"].code() == grpc.StatusCode.UNAVAILABLE, outcome["error"].details()
    else:
        assert outcome["explanation"].row_count > 0


def test_trainer_sigterm_leaves_no_orphans(stack, store):
    stub = experiment_stub(stack)
    target = ensure_target(stack, "shutdown-nodes")
    name = create_slow_experiment(stub, store, target, "shutdown-node")

    def running_iteration():
        for iteration in stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=name)).iterations:
            if iteration.state == experiment_pb2.ITERATION_STATE_RUNNING:
                return iteration
        return None

    first = wait_for(running_iteration, 60, what="a running iteration")
    node_pid = node_pids(first.node)[first.node]
    # The forkserver and the iteration's worker are descendants of the node process.
    processes = wait_for(lambda: (found := descendants(node_pid)) and len(found) >= 2 and found, 30,
                         what="the node's forkserver and worker")
    started = time.monotonic()
    os.kill(node_pid, signal.SIGTERM)
    wait_for(lambda: not alive(node_pid), GRACE_SECONDS + EXIT_MARGIN_SECONDS, what="the node to exit")
    seconds = time.monotonic() - started
    wait_for(lambda: not any(alive(pid) for pid in processes), 5, what="the node's processes to exit")

    ended = wait_terminal(stub, name, timeout=240)
    retried = stub.GetIteration(experiment_pb2.GetIterationRequest(name=first.name))

    assert seconds < GRACE_SECONDS + EXIT_MARGIN_SECONDS
    # The node handed the iteration back, so it ran again on another node.
    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert retried.state == experiment_pb2.ITERATION_STATE_SUCCEEDED, retried.error
    assert retried.attempts == 2
    assert retried.node != first.node
