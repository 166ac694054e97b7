"""Bad data sets and configurations sent to the real stack, each rejected or handled at CreateExperiment.

A bad experiment must fail at CreateExperiment with INVALID_ARGUMENT (and a
field violation naming the field, the value and the fix), NOT_FOUND or
FAILED_PRECONDITION. Inputs the platform can handle must give a correct
result, with a guardrail when rows or columns were left out.
"""

from __future__ import annotations

import io
import time

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2

from automl.common import catalog
from automl.stack import Stack
from automl.v1 import compute_pb2, experiment_pb2, featurization_pb2, pipeline_pb2
from tests.integration.helpers import (compute_stub, ensure_target, experiment_stub, field_violations, iris_frame,
                                       upload_frame, wait_terminal)

pytestmark = pytest.mark.integration

TARGET = "it-cluster"
# A rejected request must not wait for an iteration. The bound leaves room for a loaded 2-core machine.
CREATE_SECONDS = 5.0
# Column names with characters that CSV quoting, JSON and the boosting libraries treat specially.
ODD_NAMES = ["sepal length (cm)", "sepal: width", 'petal "length"', "petal [width]", "{ratio}", "a, b"]

URI = "experiment.dataset.uri"
LABEL = "experiment.dataset.label_column"
FOLDS = "experiment.validation.n_cross_validations"
SIZE = "experiment.validation.validation_size"
PREPROCESS = "experiment.preprocess"
TASK = "experiment.task"


def make_experiment(uri: str, label: str = "species", task=pipeline_pb2.TASK_CLASSIFICATION, folds: int | None = 3,
                    **fields) -> experiment_pb2.Experiment:
    fields = {"iterations": 1, "seed": 3, "compute_target": f"computeTargets/{TARGET}",
              "enable_voting_ensemble": False, "enable_stack_ensemble": False, **fields}
    experiment = experiment_pb2.Experiment(dataset=pipeline_pb2.Dataset(uri=uri, label_column=label), task=task,
                                           **fields)
    if folds is not None:
        experiment.validation.n_cross_validations = folds
    return experiment


def put_parquet(store, key: str, table: pa.Table) -> str:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return store.put_bytes(key, buffer.getvalue())


def put_npz(store, key: str, **arrays) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return store.put_bytes(key, buffer.getvalue())


def iris_with(**columns) -> pd.DataFrame:
    frame = iris_frame()
    for name, values in columns.items():
        frame[name] = values
    return frame


def rare_class(store):
    frame = iris_frame()
    frame.loc[:1, "species"] = "rare"
    return upload_frame(store, "datasets/bad/rare-class.csv", frame)


def one_class(store):
    return upload_frame(store, "datasets/bad/one-class.csv", iris_with(species="setosa"))


def infinite_labels(store):
    frame = iris_frame().drop(columns="species")
    frame["width"] = frame.pop("petal width (cm)")
    frame.loc[[3, 40, 90], "width"] = np.inf
    return upload_frame(store, "datasets/bad/infinite-labels.csv", frame)


def pickled_labels(store):
    # Strings and numbers in one label array can only be stored as an object array, which needs pickle.
    labels = np.array(["0", "1", 3, 4] * 25, dtype=object)
    return put_npz(store, "datasets/bad/mixed-labels.npz", X=np.random.default_rng(0).normal(size=(100, 3)),
                   y=labels)


def wide_labels(store):
    return put_npz(store, "datasets/bad/wide-labels.npz", X=np.zeros((20, 2)), y=np.zeros((20, 2)))


def numeric_text(store):
    prices = [f"{1000 + i:,}" for i in range(150)]  # "1,000" stays text in pandas without thousands=","
    return upload_frame(store, "datasets/bad/numeric-text.csv", iris_with(price=prices))


def categorical(store):
    return upload_frame(store, "datasets/bad/categorical.csv", iris_with(colour=["red", "blue", "green"] * 50))


def all_missing(store):
    return upload_frame(store, "datasets/bad/all-missing.csv", iris_with(empty=np.nan))


def nothing_usable(store):
    frame = pd.DataFrame({"empty": [np.nan] * 30, "same": [7] * 30, "species": ["a", "b", "c"] * 10})
    return upload_frame(store, "datasets/bad/nothing-usable.csv", frame)


def duplicate_csv(store):
    frame = iris_frame()
    text = frame.to_csv(index=False).replace("petal width (cm)", "sepal length (cm)", 1)
    return store.put_bytes("datasets/bad/duplicate-columns.csv", text.encode(), "text/csv")


def duplicate_parquet(store):
    table = pa.table([pa.array([1.0, 2.0, 3.0]), pa.array([4.0, 5.0, 6.0]), pa.array(["a", "b", "a"])],
                     names=["x", "x", "species"])
    return put_parquet(store, "datasets/bad/duplicate-columns.parquet", table)


def single_row(store):
    return upload_frame(store, "datasets/bad/single-row.csv", iris_frame().iloc[:1])


def empty_csv(store):
    return store.put_bytes("datasets/bad/empty.csv", b"", "text/csv")


def empty_parquet(store):
    return store.put_bytes("datasets/bad/empty.parquet", b"")


def corrupt_csv(store):
    return store.put_bytes("datasets/bad/corrupt.csv", bytes(range(256)) * 8, "text/csv")


def ragged_csv(store):
    text = iris_frame().to_csv(index=False) + "1.0,2.0,3.0,4.0,setosa,5.0,6.0\n"
    return store.put_bytes("datasets/bad/ragged.csv", text.encode(), "text/csv")


def truncated_parquet(store):
    buffer = io.BytesIO()
    iris_frame().to_parquet(buffer)
    data = buffer.getvalue()
    return store.put_bytes("datasets/bad/truncated.parquet", data[:len(data) // 2])


def parquet_without_label(store):
    buffer = io.BytesIO()
    iris_frame().drop(columns="species").to_parquet(buffer)
    return store.put_bytes("datasets/bad/no-label.parquet", buffer.getvalue())


def iris_csv(store):
    return upload_frame(store, "datasets/bad/iris.csv", iris_frame())


# id, data set maker, label, experiment fields, field of the violation, words the violation must contain.
INVALID_DATA = [
    ("class-fewer-rows-than-folds", rare_class, "species", {"folds": 5}, FOLDS, ["'rare'", "2 rows", "5 folds"]),
    ("single-class", one_class, "species", {}, LABEL, ["'species'", "single class", "'setosa'"]),
    ("infinite-regression-labels", infinite_labels, "width", {"task": pipeline_pb2.TASK_REGRESSION}, LABEL,
     ["'width'", "3 infinite values"]),
    ("labels-mixing-strings-and-numbers", pickled_labels, "", {}, URI, ["Python objects", "one type"]),
    ("labels-n-by-2", wide_labels, "", {}, URI, ["n x 1", "(20, 2)"]),
    ("numeric-text-without-preprocess", numeric_text, "species", {}, PREPROCESS,
     ["'price'", "numbers stored as text", "'1,000'", "preprocess=true"]),
    ("categorical-without-preprocess", categorical, "species", {}, PREPROCESS,
     ["'colour'", "non-numeric", "preprocess=true"]),
    ("all-missing-without-preprocess", all_missing, "species", {}, PREPROCESS,
     ["'empty'", "every value missing", "preprocess=true"]),
    ("no-usable-feature", nothing_usable, "species", {"preprocess": True}, URI,
     ["no usable feature", "'empty' (every value missing)", "'same' (constant)"]),
    ("duplicate-columns-csv", duplicate_csv, "species", {}, URI, ["duplicate", "'sepal length (cm)' (2 times)"]),
    ("duplicate-columns-parquet", duplicate_parquet, "species", {}, URI, ["duplicate", "'x' (2 times)"]),
    ("single-row", single_row, "species", {}, URI, ["1 row", "add rows"]),
    ("empty-csv", empty_csv, "species", {}, URI, ["empty.csv", "is empty"]),
    ("empty-parquet", empty_parquet, "species", {}, URI, ["empty.parquet", "is empty"]),
    ("corrupt-csv", corrupt_csv, "species", {}, URI, ["could not be read as CSV"]),
    ("ragged-csv", ragged_csv, "species", {}, URI, ["could not be read as CSV", "Expected 5 fields"]),
    ("truncated-parquet", truncated_parquet, "species", {}, URI, ["could not be read as PARQUET"]),
    ("missing-label-column", parquet_without_label, "species", {}, LABEL, ["'species'", "petal width (cm)"]),
    ("holdout-smaller-than-classes", iris_csv, "species", {"folds": None, "validation": 0.01}, SIZE,
     ["2 validation", "3 classes"]),
    ("regression-target-as-classes", iris_csv, "sepal length (cm)", {}, TASK,
     ["'sepal length (cm)'", "35 distinct numbers", "regression"]),
]


def create(stack, experiment, experiment_id: str):
    stub = experiment_stub(stack)
    return stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id=experiment_id,
                                                                        experiment=experiment))


def assert_rejected(stack, experiment, experiment_id: str, code: grpc.StatusCode) -> grpc.RpcError:
    """Create the experiment, expect `code` within CREATE_SECONDS, and check nothing was stored."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        create(stack, experiment, experiment_id)
    elapsed = time.monotonic() - started

    assert raised.value.code() == code, raised.value.details()
    assert elapsed < CREATE_SECONDS
    with pytest.raises(grpc.RpcError) as lookup:
        experiment_stub(stack).GetExperiment(experiment_pb2.GetExperimentRequest(name=f"experiments/{experiment_id}"))
    assert lookup.value.code() == grpc.StatusCode.NOT_FOUND
    return raised.value


@pytest.fixture(scope="module")
def target(stack):
    return ensure_target(stack, TARGET)


@pytest.mark.parametrize("case,make,label,fields,field,words", INVALID_DATA, ids=[row[0] for row in INVALID_DATA])
def test_bad_data_rejected_at_create(stack, store, target, case, make, label, fields, field, words):
    fields = dict(fields)
    folds = fields.pop("folds", 3)
    holdout = fields.pop("validation", None)
    experiment = make_experiment(make(store), label, folds=folds, **fields)
    if holdout is not None:
        experiment.validation.validation_size = holdout

    error = assert_rejected(stack, experiment, f"bad-{case}", grpc.StatusCode.INVALID_ARGUMENT)
    violations = field_violations(error)

    assert field in violations, violations
    for word in words:
        assert word in violations[field]


BAD_CONFIGS = [
    ("iterations-0", {"iterations": 0}, "experiment.iterations", "1 to 1000"),
    ("iterations-1001", {"iterations": 1001}, "experiment.iterations", "1 to 1000"),
    ("folds-1", {"folds": 1}, FOLDS, "2 to 50"),
    ("validation-size-0", {"folds": None, "validation": 0.0}, SIZE, "between 0 and 1"),
    ("validation-size-1", {"folds": None, "validation": 1.0}, SIZE, "between 0 and 1"),
    ("folds-and-validation-size", {"folds": 3, "validation": 0.2}, FOLDS, "not both"),
    ("metric-of-other-task", {"primary_metric": "r2_score"}, "experiment.primary_metric", "regression metric"),
    ("every-model-blocked", {"blocked_models": list(catalog.ESTIMATORS[catalog.CLASSIFICATION])},
     "experiment.blocked_models", "blocks every allowed model"),
    ("iteration-timeout-0", {"iteration_timeout_minutes": 0}, "experiment.iteration_timeout_minutes", "above 0"),
    ("experiment-timeout-0", {"experiment_timeout_minutes": 0}, "experiment.experiment_timeout_minutes", "above 0"),
    ("concurrency-0", {"max_concurrent_iterations": 0}, "experiment.max_concurrent_iterations", "1 to 100"),
]


@pytest.fixture(scope="module")
def iris_uri(store):
    return iris_csv(store)


@pytest.mark.parametrize("case,fields,field,words", BAD_CONFIGS, ids=[row[0] for row in BAD_CONFIGS])
def test_bad_config_rejected_at_create(stack, target, iris_uri, case, fields, field, words):
    fields = dict(fields)
    folds = fields.pop("folds", 3)
    holdout = fields.pop("validation", None)
    experiment = make_experiment(iris_uri, folds=folds, **fields)
    if holdout is not None:
        experiment.validation.validation_size = holdout

    error = assert_rejected(stack, experiment, f"bad-{case}", grpc.StatusCode.INVALID_ARGUMENT)
    violations = field_violations(error)

    assert field in violations, violations
    assert words in violations[field]


def test_missing_dataset_not_found(stack, target):
    experiment = make_experiment("s3://automl/datasets/bad/no-such-file.csv")

    error = assert_rejected(stack, experiment, "bad-missing-dataset", grpc.StatusCode.NOT_FOUND)

    assert "no-such-file.csv" in error.details()


def test_unknown_target_not_found(stack, iris_uri):
    experiment = make_experiment(iris_uri, compute_target="computeTargets/no-such-target")

    error = assert_rejected(stack, experiment, "bad-unknown-target", grpc.StatusCode.NOT_FOUND)

    assert "no-such-target" in error.details()


def test_deleting_target_failed_precondition(stack, iris_uri):
    compute = compute_stub(stack)
    name = ensure_target(stack, "bad-deleting", max_nodes=1)
    # A leased node keeps the target in DELETING until it is released.
    lease = compute.AcquireNode(compute_pb2.AcquireNodeRequest(compute_target=name, holder="experiments/holder",
                                                               wait_timeout=duration_pb2.Duration(seconds=30)))
    compute.DeleteComputeTarget(compute_pb2.DeleteComputeTargetRequest(name=name))
    try:
        experiment = make_experiment(iris_uri, compute_target=name)
        error = assert_rejected(stack, experiment, "bad-deleting-target", grpc.StatusCode.FAILED_PRECONDITION)
    finally:
        compute.ReleaseNode(compute_pb2.ReleaseNodeRequest(name=lease.name))

    assert "DELETING" in error.details()
    assert name in error.details()


def test_dataset_over_size_limit(stack, target, iris_uri, tmp_path):
    # A second ExperimentService with a 1 KiB limit, on the same S3 server and compute service.
    limited = Stack(tmp_path, free_ports=True, s3_endpoint=stack.env["S3_ENDPOINT"])
    limited.env.update({"AUTOML_MAX_DATASET_MB": str(1 / 1024), "AUTOML_COMPUTE_ADDRESS": stack.address("compute"),
                        "AUTOML_EXPLAINER_ADDRESS": stack.address("explainer")})
    limited.start(("experiment",))
    try:
        error = assert_rejected(limited, make_experiment(iris_uri), "bad-too-large",
                                grpc.StatusCode.INVALID_ARGUMENT)
    finally:
        limited.stop()
    violations = field_violations(error)

    assert "above the limit of 0.000977 MB" in violations[URI]
    assert "AUTOML_MAX_DATASET_MB" in violations[URI]


# Experiments that must succeed. Each runs on iris-size data with one or two iterations.

def odd_names_frame() -> pd.DataFrame:
    frame = iris_frame()
    frame.columns = ODD_NAMES[:4] + ["species"]
    return frame


def accepted_inputs(store) -> dict[str, experiment_pb2.Experiment]:
    """Return {experiment id: experiment} of every input that must give a result."""
    odd = upload_frame(store, "datasets/ok/odd names.csv", odd_names_frame())
    featurized = odd_names_frame()
    featurized[ODD_NAMES[4]] = np.nan
    featurized[ODD_NAMES[5]] = "same"
    featurized_uri = upload_frame(store, "datasets/ok/odd names featurized.csv", featurized)

    labels_missing = iris_with(constant=1.0)
    labels_missing.loc[[0, 60, 120, 121, 122], "species"] = np.nan
    labels_missing_uri = upload_frame(store, "datasets/ok/missing-labels.csv", labels_missing)

    iris = iris_frame()
    column_labels = put_npz(store, "datasets/ok/column-labels.npz", X=iris.drop(columns="species").to_numpy(),
                            y=pd.factorize(iris["species"])[0].reshape(-1, 1))
    non_ascii = upload_frame(store, "datasets/ok/données fleurs 数据.csv", iris)

    return {
        "ok-odd-names-raw": make_experiment(odd, iterations=2, allowed_models=["LightGBM", "XGBoostClassifier"],
                                            model_explainability=True, max_concurrent_iterations=2),
        "ok-odd-names-featurized": make_experiment(featurized_uri, preprocess=True, allowed_models=["LightGBM"]),
        "ok-missing-labels": make_experiment(labels_missing_uri, allowed_models=["DecisionTree"]),
        "ok-column-labels": make_experiment(column_labels, "", allowed_models=["DecisionTree"]),
        "ok-non-ascii-name": make_experiment(non_ascii, allowed_models=["DecisionTree"]),
        # proto3 cannot tell an empty list from an unset one: empty means every model of the task.
        "ok-empty-allowed-models": make_experiment(iris_csv(store), allowed_models=[]),
    }


@pytest.fixture(scope="module")
def finished(stack, store, target):
    """Run every accepted input to its end; return {experiment id: ended experiment}."""
    stub = experiment_stub(stack)
    experiments = accepted_inputs(store)
    for experiment_id, experiment in experiments.items():
        create(stack, experiment, experiment_id)
    return {experiment_id: wait_terminal(stub, f"experiments/{experiment_id}", timeout=180)
            for experiment_id in experiments}


def iterations_of(stack, experiment_id: str) -> list[experiment_pb2.Iteration]:
    return list(experiment_stub(stack).ListIterations(
        experiment_pb2.ListIterationsRequest(parent=f"experiments/{experiment_id}")).iterations)


@pytest.mark.parametrize("experiment_id", ["ok-odd-names-raw", "ok-odd-names-featurized", "ok-missing-labels",
                                           "ok-column-labels", "ok-non-ascii-name", "ok-empty-allowed-models"])
def test_accepted_input_succeeds(stack, finished, experiment_id):
    experiment = finished[experiment_id]
    states = [iteration.state for iteration in iterations_of(stack, experiment_id)]

    assert experiment.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, experiment.error
    assert states == [experiment_pb2.ITERATION_STATE_SUCCEEDED] * experiment.iterations
    assert experiment.best_score > 0.9


def test_odd_names_kept_in_explanation(stack, finished):
    stub = experiment_stub(stack)
    explanation = stub.GetExplanation(experiment_pb2.GetExplanationRequest(parent="experiments/ok-odd-names-raw"))
    estimators = {it.pipeline.estimator for it in iterations_of(stack, "ok-odd-names-raw")}

    assert estimators == {"LightGBM", "XGBoostClassifier"}
    assert sorted(explanation.feature_names) == sorted(ODD_NAMES[:4])


def test_odd_names_kept_in_featurization(finished):
    columns = {column.column: column for column in finished["ok-odd-names-featurized"].featurization.columns}

    assert set(columns) == set(ODD_NAMES)
    assert columns[ODD_NAMES[4]].drop_reason == "all values missing"
    assert columns[ODD_NAMES[5]].drop_reason.startswith("constant")
    assert not columns["petal [width]"].dropped


def test_missing_labels_dropped_with_guardrail(finished):
    guardrails = {guardrail.name: guardrail for guardrail in finished["ok-missing-labels"].guardrails}

    assert guardrails["missing_labels"].status == featurization_pb2.GUARDRAIL_STATUS_DONE
    assert "Dropped 5 of 150 rows" in guardrails["missing_labels"].description
    assert guardrails["missing_labels"].details["column"] == "species"
    assert guardrails["constant_columns"].status == featurization_pb2.GUARDRAIL_STATUS_ALERTED
    assert "'constant'" in guardrails["constant_columns"].description


def test_empty_allowed_models_uses_all(stack, finished):
    (iteration,) = iterations_of(stack, "ok-empty-allowed-models")

    assert iteration.pipeline.estimator in catalog.ESTIMATORS[catalog.CLASSIFICATION]
    assert iteration.metrics["accuracy"] > 0.9
