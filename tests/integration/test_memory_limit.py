"""A trainer node stops an iteration that outgrows the node's memory limit and keeps serving."""

import subprocess
import sys

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.common.server import wait_until_serving
from automl.stack import free_port
from automl.v1 import pipeline_pb2, trainer_pb2, trainer_pb2_grpc
from tests.integration.helpers import iris_frame, upload_frame

pytestmark = pytest.mark.integration

LIMIT_MIB = 1024


@pytest.fixture(scope="module")
def small_node(stack, tmp_path_factory):
    """A trainer node started as the compute service starts one, with a 1 GiB memory limit."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("small-node")
    with open(workdir / "trainer.log", "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.trainer", "--port", str(port), "--cores", "1",
             "--memory-mb", str(LIMIT_MIB), "--node-name", "computeTargets/small/nodes/node-1",
             "--cache-dir", str(workdir / "cache")],
            env=stack.env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        wait_until_serving(address, timeout=60)
        with grpc.insecure_channel(address) as channel:
            yield trainer_pb2_grpc.TrainerServiceStub(channel), process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _request(index: int, uri: str, label: str, task, estimator: str, hyperparameters: dict, store):
    request = trainer_pb2.RunIterationRequest(
        iteration=f"experiments/memory/iterations/{index}", task=task,
        dataset=pipeline_pb2.Dataset(uri=uri, label_column=label),
        pipeline=pipeline_pb2.Pipeline(scaler="None", estimator=estimator, description=estimator),
        validation=pipeline_pb2.Validation(validation_size=0.1), output_uri=store.uri(f"memory/{index}"),
        timeout=duration_pb2.Duration(seconds=180))
    request.pipeline.hyperparameters.update(hyperparameters)
    return request


def test_memory_limit_fails_iteration_only(small_node, store):
    stub, process = small_node
    # Fully grown trees on noise keep about one leaf per row, so 300 of them on 100,000 rows need (by estimate) GiBs.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100_000, 3)), columns=[f"x{i}" for i in range(3)])
    frame["y"] = rng.normal(size=len(frame))
    uri = upload_frame(store, "datasets/memory-noise.csv", frame)
    heavy = _request(0, uri, "y", pipeline_pb2.TASK_REGRESSION, "ExtremeRandomTrees",
                     {"n_estimators": 300, "min_samples_leaf": 1}, store)

    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(heavy, timeout=240)

    error = raised.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"memory limit of {LIMIT_MIB} MiB" in error.details()
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in rpc_status.from_call(error).details)
    assert info.reason == "ITERATION_MEMORY_LIMIT"
    assert float(info.metadata["memory_used_mib"]) > LIMIT_MIB

    # The node survives: the same process runs the next iteration.
    assert process.poll() is None
    light = _request(1, upload_frame(store, "datasets/memory-iris.csv", iris_frame()), "species",
                     pipeline_pb2.TASK_CLASSIFICATION, "LogisticRegression", {}, store)
    response = stub.RunIteration(light, timeout=120)
    assert response.metrics["accuracy"] > 0.8
