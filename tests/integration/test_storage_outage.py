"""Object storage taken away for a while behind a TCP proxy, with every service as a real process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from automl.common.server import wait_until_serving
from automl.stack import Stack
from automl.v1 import experiment_pb2, pipeline_pb2
from tests.integration.helpers import (create_slow_experiment, ensure_target, experiment_stub, iris_frame, node_pids,
                                       upload_frame, wait_for, wait_terminal)
from tests.integration.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds node processes through /proc"),
]

# Short, so that an outage longer than the window fits in a test.
RETRY_SECONDS = 5


@pytest.fixture(scope="module")
def proxy(s3_stack):
    host, port = s3_stack.env["S3_ENDPOINT"].rsplit(":", 1)
    with TcpProxy(host, int(port)) as running:
        yield running


@pytest.fixture(scope="module")
def proxied_stack(tmp_path_factory, proxy):
    """The services, reaching object storage only through `proxy`."""
    running = Stack(tmp_path_factory.mktemp("outage"), free_ports=True, s3_endpoint=proxy.endpoint)
    running.env["AUTOML_S3_RETRY_SECONDS"] = str(RETRY_SECONDS)
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def proxy_up(proxy):
    """Bring storage back even when a test fails during an outage."""
    yield
    proxy.up()


def log_events(stack: Stack, event: str) -> list[dict]:
    """Return the JSON log records named `event` from the trainer nodes' logs."""
    records = []
    for path in (Path(stack.env["AUTOML_NODE_CACHE"]) / "logs").glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                records.append(record)
    return records


def iterations_of(stub, name: str) -> list:
    return list(stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=name)).iterations)


def test_short_outage_experiment_succeeds(proxied_stack, proxy, store):
    stub = experiment_stub(proxied_stack)
    uri = upload_frame(store, "datasets/outage-short.csv", iris_frame())
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="species"),
        compute_target=ensure_target(proxied_stack, "outage-cluster"), task=pipeline_pb2.TASK_CLASSIFICATION,
        primary_metric="accuracy", seed=5, iterations=8, max_concurrent_iterations=2,
        allowed_models=["LogisticRegression", "DecisionTree", "KNN"])
    name = "experiments/outage-short"
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="outage-short", experiment=experiment))
    wait_for(lambda: any(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations_of(stub, name)),
             120, what="a first succeeded iteration")

    # Two outages shorter than the retry window, while iterations start, store results and build ensembles.
    # They are a whole window apart, because a request that fails in the first outage counts its window from
    # then, and retries that reach into the second outage would exhaust it.
    for _ in range(2):
        proxy.down()
        time.sleep(RETRY_SECONDS / 2)
        proxy.up()
        time.sleep(RETRY_SECONDS)
    ended = wait_terminal(stub, name, timeout=180)
    iterations = iterations_of(stub, name)

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert [it.index for it in iterations] == list(range(8))
    assert all(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations), \
        [(it.index, it.error) for it in iterations]
    # The object store's retries absorbed the outages: no iteration had to run again.
    assert [it.attempts for it in iterations] == [1] * 8
    assert all(store.get_bytes(it.model_uri) for it in iterations)
    assert log_events(proxied_stack, "object_store_request_retrying"), "no request met an outage"


def test_long_outage_fails_iteration_then_recovers(proxied_stack, proxy, store):
    stub = experiment_stub(proxied_stack)
    target = ensure_target(proxied_stack, "outage-cluster")
    name = create_slow_experiment(stub, store, target, "outage-long")
    first = f"{name}/iterations/0"
    wait_for(lambda: any(record.get("iteration") == first for record in log_events(proxied_stack, "worker_started")),
             120, what="the worker of the first iteration")

    # Storage goes away while the worker fits, so the results cannot be stored within the retry window.
    proxy.down()
    try:
        failed = wait_for(lambda: (it := stub.GetIteration(experiment_pb2.GetIterationRequest(name=first)))
                          .state != experiment_pb2.ITERATION_STATE_RUNNING and it, 150, 0.5,
                          "the end of the first iteration")
        nodes = node_pids(f"{target}/nodes/")
        for part in ("experiment", "compute", "explainer"):
            wait_until_serving(proxied_stack.address(part), timeout=5)
    finally:
        proxy.up()
    ended = wait_terminal(stub, name, timeout=180)
    iterations = iterations_of(stub, name)

    assert failed.state == experiment_pb2.ITERATION_STATE_FAILED, failed.error
    assert failed.attempts == 1
    assert failed.error.startswith("UNAVAILABLE: "), failed.error
    assert f"object storage at {proxy.endpoint} is unavailable" in failed.error
    assert "model.skops" in failed.error
    assert not failed.model_uri
    assert not store.exists(store.uri("experiments/outage-long/iterations/0/model.skops"))
    # The node that could not store its results kept running.
    assert failed.node in nodes
    # With storage back, the next iteration succeeds and so does the experiment.
    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert [it.state for it in iterations] == [experiment_pb2.ITERATION_STATE_FAILED,
                                              experiment_pb2.ITERATION_STATE_SUCCEEDED]
    assert ended.best_iteration == 1
    assert store.get_bytes(iterations[1].model_uri)
