"""TrainerService through gRPC: an in-process server, real worker processes, real S3."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sklearn import datasets

from automl.common import catalog
from automl.common.config import S3Settings
from automl.common.models import loads_model
from automl.common.server import ServiceServer
from automl.v1 import pipeline_pb2, trainer_pb2, trainer_pb2_grpc
from services.trainer.runner import IterationRunner, NodeSettings
from services.trainer.servicer import TrainerServicer

NODE = "computeTargets/unit/nodes/n1"


def _frame(bunch, label: str) -> pd.DataFrame:
    frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    frame[label] = bunch.target
    return frame


def _upload_csv(store, key: str, frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return store.put_bytes(key, buffer.getvalue().encode(), "text/csv")


@pytest.fixture(scope="module")
def trainer(store, tmp_path_factory):
    """A TrainerService on a free port of this process, with its runner."""
    node = NodeSettings(name=NODE, cores=1, memory_mb=2048, cache_dir=tmp_path_factory.mktemp("node"))
    runner = IterationRunner(node, S3Settings.from_env())
    runner.warm_up()
    server = ServiceServer("trainer-test", 0, grace_seconds=1.0)
    server.add_service(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, TrainerServicer(runner),
                       "automl.v1.TrainerService")
    server.on_stop(runner.shutdown)
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield trainer_pb2_grpc.TrainerServiceStub(channel), runner
    channel.close()
    server.stop()


@pytest.fixture(scope="module")
def iris_uri(store):
    frame = _frame(datasets.load_iris(), "species")
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[frame["species"]]
    return _upload_csv(store, "datasets/unit-trainer/iris.csv", frame)


@pytest.fixture(scope="module")
def diabetes_uri(store):
    return _upload_csv(store, "datasets/unit-trainer/diabetes.csv", _frame(datasets.load_diabetes(), "target"))


@pytest.fixture(scope="module")
def digits_uri(store):
    return _upload_csv(store, "datasets/unit-trainer/digits.csv", _frame(datasets.load_digits(), "digit"))


def _request(store, iteration: str, uri: str, label: str, task=catalog.CLASSIFICATION, scaler="StandardScaler",
             estimator="LogisticRegression", hyperparameters=None, folds=0, size=0.0, timeout=0.0,
             preprocess=False) -> trainer_pb2.RunIterationRequest:
    struct = struct_pb2.Struct()
    struct.update(hyperparameters or {})
    request = trainer_pb2.RunIterationRequest(
        iteration=iteration,
        dataset=pipeline_pb2.Dataset(uri=uri, label_column=label),
        task=task,
        pipeline=pipeline_pb2.Pipeline(scaler=scaler, estimator=estimator, hyperparameters=struct),
        validation=pipeline_pb2.Validation(n_cross_validations=folds, validation_size=size),
        output_uri=store.uri(f"{iteration}/"),
        seed=7,
        preprocess=preprocess,
    )
    if timeout:
        request.timeout.CopyFrom(duration_pb2.Duration(seconds=int(timeout), nanos=int(timeout % 1 * 1e9)))
    return request


def _violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


def test_iris_model_predicts_raw_rows(trainer, store, iris_uri):
    stub, runner = trainer
    request = _request(store, "experiments/iris/iterations/0", iris_uri, "species", folds=5)

    response = stub.RunIteration(request, timeout=60)

    assert set(response.metrics) == set(catalog.METRICS[catalog.CLASSIFICATION])
    assert response.metrics["accuracy"] > 0.9
    assert 0.9 < response.metrics["AUC_weighted"] <= 1.0
    assert response.validation_strategy == "5-fold stratified cross-validation"
    assert response.node == NODE
    assert response.duration.ToTimedelta().total_seconds() > 0

    model = loads_model(store.get_bytes(response.model_uri))
    raw = pd.read_csv(io.BytesIO(store.get_bytes(iris_uri)))
    predictions = model.pipeline.predict(raw[model.feature_names].head(20))
    assert set(predictions) <= {"setosa", "versicolor", "virginica"}
    assert model.class_labels == ["setosa", "versicolor", "virginica"]
    assert model.label_column == "species"
    assert model.task == "classification"

    stored_metrics = json.loads(store.get_bytes(response.metrics_uri))
    assert stored_metrics["metrics"]["accuracy"] == pytest.approx(response.metrics["accuracy"])
    assert len(stored_metrics["fold_metrics"]) == 5
    assert b"fold 5/5" in store.get_bytes(response.log_uri)


def test_diabetes_default_validation_and_cache(trainer, store, diabetes_uri):
    stub, runner = trainer
    before = runner.cache.downloads
    responses = [
        stub.RunIteration(_request(store, f"experiments/diabetes/iterations/{index}", diabetes_uri, "target",
                                   task=catalog.REGRESSION, estimator="ElasticNet",
                                   hyperparameters={"alpha": 0.01}), timeout=60)
        for index in range(2)
    ]

    assert runner.cache.downloads - before == 1
    metrics = responses[0].metrics
    assert set(metrics) == set(catalog.METRICS[catalog.REGRESSION])
    assert 0.3 < metrics["r2_score"] < 0.7
    assert metrics["normalized_root_mean_squared_error"] == pytest.approx(
        metrics["root_mean_squared_error"] / (346 - 25))
    # 442 rows: Azure's rule picks 10 folds.
    assert responses[0].validation_strategy == "10-fold cross-validation (chosen for 442 rows)"
    model = loads_model(store.get_bytes(responses[0].model_uri))
    assert model.pipeline.predict(pd.DataFrame(datasets.load_diabetes().data[:3], columns=model.feature_names)).shape == (3,)


def test_iteration_timeout_deadline_exceeded(trainer, store, digits_uri):
    stub, runner = trainer
    request = _request(store, "experiments/slow/iterations/0", digits_uri, "digit", estimator="SVM", folds=10,
                       timeout=1.0)

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(request, timeout=30)

    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timed out after 1 s" in raised.value.details()
    assert time.monotonic() - started < 3.0
    assert b"timed out" in store.get_bytes(store.uri("experiments/slow/iterations/0/log.txt"))


def test_cancel_run_stops_worker(trainer, store, digits_uri):
    stub, runner = trainer
    iteration = "experiments/cancel/iterations/0"
    call = stub.RunIteration.future(_request(store, iteration, digits_uri, "digit", estimator="SVM", folds=10),
                                    timeout=60)
    pid = _wait_for_worker(runner, iteration)

    started = time.monotonic()
    stub.CancelRun(trainer_pb2.CancelRunRequest(iteration=iteration), timeout=5)
    with pytest.raises(grpc.RpcError) as raised:
        call.result(timeout=5)

    assert raised.value.code() == grpc.StatusCode.CANCELLED
    assert time.monotonic() - started < 1.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_run_iteration_client_deadline_stops_worker(trainer, store, digits_uri):
    stub, runner = trainer
    iteration = "experiments/impatient/iterations/0"
    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(_request(store, iteration, digits_uri, "digit", estimator="SVM", folds=10), timeout=1.5)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    deadline = time.monotonic() + 2
    while iteration in runner._runs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert iteration not in runner._runs


def test_cancel_run_unknown_iteration(trainer):
    stub, _ = trainer
    with pytest.raises(grpc.RpcError) as raised:
        stub.CancelRun(trainer_pb2.CancelRunRequest(iteration="experiments/none/iterations/9"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def _wait_for_worker(runner: IterationRunner, iteration: str) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run = runner._runs.get(iteration)
        if run is not None and run.process is not None and run.process.pid:
            return run.process.pid
        time.sleep(0.02)
    raise AssertionError(f"no worker started for {iteration}")


@pytest.mark.parametrize("case, field, words", [
    ("missing_label", "dataset.label_column", ["'nope'", "sepal length (cm)"]),
    ("text_without_preprocess", "preprocess", ["colour", "preprocess=true"]),
    ("class_smaller_than_folds", "validation.n_cross_validations", ["'rare'", "2 rows", "5 folds"]),
    ("unknown_hyperparameter", "pipeline.hyperparameters", ["'depth'", "max_depth"]),
])
def test_unusable_request_invalid_argument(trainer, store, iris_uri, case, field, words):
    stub, _ = trainer
    frame = _frame(datasets.load_iris(), "species")
    label, uri, kwargs = "species", iris_uri, {"folds": 5}
    if case == "missing_label":
        label = "nope"
    elif case == "text_without_preprocess":
        frame["colour"] = np.where(frame["species"] == 0, "red", "blue")
        uri = _upload_csv(store, "datasets/unit-trainer/colours.csv", frame)
    elif case == "class_smaller_than_folds":
        frame["species"] = frame["species"].astype(str)
        frame.loc[:1, "species"] = "rare"
        uri = _upload_csv(store, "datasets/unit-trainer/rare.csv", frame)
    else:
        kwargs.update(estimator="DecisionTree", hyperparameters={"depth": 3})

    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(_request(store, f"experiments/bad/iterations/{len(case)}", uri, label, **kwargs),
                          timeout=60)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = _violations(raised.value)
    assert field in violations, violations
    for word in words:
        assert word in violations[field]


def test_missing_dataset_and_bucket(trainer, store, iris_uri):
    stub, _ = trainer
    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(_request(store, "experiments/gone/iterations/0", store.uri("datasets/absent.csv"), "y"),
                          timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "datasets/absent.csv" in raised.value.details()

    request = _request(store, "experiments/gone/iterations/1", iris_uri, "species", estimator="GaussianNaiveBayes")
    request.output_uri = "s3://no-such-bucket/out/"
    with pytest.raises(grpc.RpcError) as raised:
        stub.RunIteration(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_uri" in _violations(raised.value)


def test_preprocess_imputes_and_encodes(trainer, store):
    stub, _ = trainer
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(size=200), "colour": rng.choice(["red", "blue", "green"], 200)})
    frame["label"] = np.where((frame["colour"] == "red") | (frame["size"] > 1), "yes", "no")
    frame.loc[::10, "size"] = np.nan
    frame.loc[5::10, "colour"] = None
    uri = _upload_csv(store, "datasets/unit-trainer/mixed.csv", frame)

    response = stub.RunIteration(_request(store, "experiments/mixed/iterations/0", uri, "label",
                                          estimator="RandomForest", hyperparameters={"n_estimators": 20},
                                          size=0.25, preprocess=True), timeout=60)

    assert response.metrics["accuracy"] > 0.7
    assert response.validation_strategy == "25% stratified holdout validation (50 rows)"
    model = loads_model(store.get_bytes(response.model_uri))
    unseen = pd.DataFrame({"size": [np.nan, 2.0], "colour": ["purple", None]})
    assert len(model.pipeline.predict_proba(unseen)) == 2


def test_command_line_process_runs_iteration(store, iris_uri, tmp_path):
    import subprocess
    import sys

    from automl.common.server import wait_until_serving
    from automl.stack import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.trainer", "--port", str(port), "--node-name", "computeTargets/cli/nodes/n2",
         "--cores", "2", "--memory-mb", "1024", "--cache-dir", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=20, service="automl.v1.TrainerService")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            response = stub.RunIteration(_request(store, "experiments/cli/iterations/0", iris_uri, "species",
                                                  estimator="KNN", folds=3), timeout=60)
        assert response.node == "computeTargets/cli/nodes/n2"
        assert response.metrics["accuracy"] > 0.9
        assert any((tmp_path / "cache" / "datasets").iterdir())
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert '"event": "iteration_finished"' in output
