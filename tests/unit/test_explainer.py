"""ExplainerService over gRPC, served in process, against a real S3 server process."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pandas as pd
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import ElasticNet, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from automl.common.datasets import DatasetCache
from automl.common.models import StoredModel, dumps_model
from automl.common.server import ServiceServer
from automl.common.storage import parse_uri
from automl.v1 import explainer_pb2, explainer_pb2_grpc, pipeline_pb2
from services.explainer.explain import ExplainRequest, ModelExplainer
from services.explainer.servicer import ExplainerServicer

CLASSIFICATION = pipeline_pb2.TASK_CLASSIFICATION
REGRESSION = pipeline_pb2.TASK_REGRESSION


@pytest.fixture(scope="module")
def stub(store, tmp_path_factory):
    """An ExplainerService stub on an in-process server on a free port.

    The time budget is large so that permutation explanations cover every
    requested row however slow the machine; Numba compiles before the tests.
    """
    explainer = ModelExplainer(store, DatasetCache(store, tmp_path_factory.mktemp("explainer-cache")),
                               time_budget=600.0)
    explainer.warm_up()
    server = ServiceServer("explainer-test", 0, grace_seconds=1.0)
    server.add_service(explainer_pb2_grpc.add_ExplainerServiceServicer_to_server, ExplainerServicer(explainer),
                       "automl.v1.ExplainerService")
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield explainer_pb2_grpc.ExplainerServiceStub(channel)
    channel.close()
    server.stop()


@pytest.fixture(scope="module")
def iris(store):
    """Iris with string class labels, stored as CSV: (frame, label column, URI)."""
    data = load_iris(as_frame=True)
    frame = data.frame.rename(columns=lambda name: name.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = data.target_names[data.target]
    frame = frame.drop(columns="target")
    uri = store.put_bytes("datasets/explainer-iris.csv", frame.to_csv(index=False).encode())
    return frame, "species", uri


@pytest.fixture(scope="module")
def diabetes(store):
    """Diabetes regression data with an added string column, stored as CSV."""
    frame = load_diabetes(as_frame=True).frame
    frame["region"] = np.where(frame["age"] > 0, "north", "south")
    uri = store.put_bytes("datasets/explainer-diabetes.csv", frame.to_csv(index=False).encode())
    return frame, "target", uri


def store_model(store, name, pipeline, frame, label, features, task):
    """Fit `pipeline` on `frame[features]`, store it as a trainer would and return its URI."""
    pipeline.fit(frame[features], frame[label])
    classes = list(pipeline.classes_) if task == "classification" else []
    model = StoredModel(pipeline=pipeline, task=task, feature_names=list(features), class_labels=classes,
                        label_column=label)
    return store.put_bytes(f"experiments/explainer-test/{name}/model.skops", dumps_model(model))


def explain(stub, store, model_uri, dataset, task, name, **options):
    frame, label, uri = dataset
    request = explainer_pb2.ExplainModelRequest(
        model_uri=model_uri, dataset=pipeline_pb2.Dataset(uri=uri, label_column=label), task=task,
        output_uri=store.uri(f"explanations/explainer-test/{name}/"), seed=7, **options)
    return stub.ExplainModel(request, timeout=120)


def load_npz(store, uri):
    with np.load(io.BytesIO(store.get_bytes(uri)), allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def check_importance(entries, feature_names):
    values = [entry.importance for entry in entries]
    assert values == sorted(values, reverse=True)
    assert sorted(entry.feature for entry in entries) == sorted(feature_names)
    assert all(value >= 0 for value in values)


def violation_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(violation.field for violation in bad_request.field_violations)
    return fields


def test_tree_classifier_explanation(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    pipeline = Pipeline([("scaler", StandardScaler()),
                         ("estimator", RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0))])
    model_uri = store_model(store, "forest", pipeline, frame, label, features, "classification")

    response = explain(stub, store, model_uri, iris, CLASSIFICATION, "forest", max_rows=40)

    assert response.explainer == "tree"
    assert response.row_count == 40
    assert list(response.feature_names) == features
    assert list(response.class_labels) == ["setosa", "versicolor", "virginica"]
    assert len(response.expected_values) == 3
    check_importance(response.overall_importance, features)
    assert [entry.class_label for entry in response.per_class_importance] == list(response.class_labels)
    for entry in response.per_class_importance:
        check_importance(entry.features, features)

    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (40, 4, 3)
    assert list(arrays["feature_names"]) == features
    assert len(set(arrays["row_indices"])) == 40

    # Forests output class probabilities, so SHAP values add up to predict_proba.
    rows = frame.iloc[arrays["row_indices"]][features]
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"]
    np.testing.assert_allclose(total, pipeline.predict_proba(rows), atol=1e-6)


def test_binary_boosting_gives_both_classes(stub, store, iris):
    frame, label, uri = iris
    binary = frame[frame[label] != "setosa"].reset_index(drop=True)
    binary_uri = store.put_bytes("datasets/explainer-iris-binary.csv", binary.to_csv(index=False).encode())
    features = [column for column in frame.columns if column != label]
    pipeline = Pipeline([("estimator", GradientBoostingClassifier(n_estimators=20, random_state=0))])
    model_uri = store_model(store, "boosting", pipeline, binary, label, features, "classification")

    response = explain(stub, store, model_uri, (binary, label, binary_uri), CLASSIFICATION, "boosting")

    assert response.explainer == "tree"
    assert response.row_count == len(binary)
    assert list(response.class_labels) == ["versicolor", "virginica"]
    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (len(binary), 4, 2)

    # Gradient boosting is explained in log-odds; each class gets its own margin.
    rows = binary.iloc[arrays["row_indices"]][features]
    margin = pipeline.decision_function(rows)
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"]
    np.testing.assert_allclose(total[:, 1], margin, atol=1e-6)
    np.testing.assert_allclose(total[:, 0], -margin, atol=1e-6)


def test_linear_classifier_explanation(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    pipeline = Pipeline([("scaler", StandardScaler()), ("estimator", LogisticRegression(max_iter=1000))])
    model_uri = store_model(store, "logistic", pipeline, frame, label, features, "classification")

    response = explain(stub, store, model_uri, iris, CLASSIFICATION, "logistic", background_rows=30)

    assert response.explainer == "linear"
    assert response.row_count == len(frame)
    assert len(response.per_class_importance) == 3
    check_importance(response.overall_importance, features)

    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (len(frame), 4, 3)
    assert list(arrays["class_labels"]) == ["setosa", "versicolor", "virginica"]

    rows = frame.iloc[arrays["row_indices"]][features]
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"]
    np.testing.assert_allclose(total, pipeline.decision_function(rows), atol=1e-6)


def test_linear_regressor_explanation(stub, store, diabetes):
    frame, label, _ = diabetes
    features = [column for column in frame.columns if column not in (label, "region")]
    pipeline = Pipeline([("scaler", StandardScaler()), ("estimator", ElasticNet(alpha=0.1))])
    model_uri = store_model(store, "elastic-net", pipeline, frame, label, features, "regression")

    response = explain(stub, store, model_uri, diabetes, REGRESSION, "elastic-net", max_rows=100)

    assert response.explainer == "linear"
    assert list(response.class_labels) == []
    assert len(response.expected_values) == 1
    assert len(response.per_class_importance) == 0
    check_importance(response.overall_importance, features)

    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (100, 10)
    rows = frame.iloc[arrays["row_indices"]][features]
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"][0]
    np.testing.assert_allclose(total, pipeline.predict(rows), atol=1e-6)


def test_permutation_regressor_explanation(stub, store, diabetes):
    frame, label, _ = diabetes
    features = [column for column in frame.columns if column not in (label, "region")]
    pipeline = Pipeline([("scaler", StandardScaler()), ("estimator", KNeighborsRegressor())])
    model_uri = store_model(store, "knn", pipeline, frame, label, features, "regression")

    response = explain(stub, store, model_uri, diabetes, REGRESSION, "knn", max_rows=10, background_rows=20)

    assert response.explainer == "permutation"
    assert response.row_count == 10
    assert list(response.feature_names) == features
    check_importance(response.overall_importance, features)

    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (10, 10)
    # Each permutation's forward and backward passes telescope, so the values add up exactly.
    rows = frame.iloc[arrays["row_indices"]][features]
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"][0]
    np.testing.assert_allclose(total, pipeline.predict(rows), atol=1e-6)


def test_one_hot_pipeline_keeps_raw_columns(stub, store, diabetes):
    frame, label, _ = diabetes
    features = ["age", "bmi", "bp", "region"]
    encoder = ColumnTransformer([("region", OneHotEncoder(), ["region"])], remainder="passthrough")
    pipeline = Pipeline([("preprocess", encoder), ("scaler", StandardScaler()),
                         ("estimator", ElasticNet(alpha=0.1))])
    model_uri = store_model(store, "one-hot", pipeline, frame, label, features, "regression")

    response = explain(stub, store, model_uri, diabetes, REGRESSION, "one-hot", max_rows=8, background_rows=10)

    # The one-hot columns are not the data set's, so the whole pipeline is explained on raw rows.
    assert response.explainer == "permutation"
    assert list(response.feature_names) == features
    check_importance(response.overall_importance, features)
    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (8, 4)


def test_wrapped_estimator_is_model_agnostic(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    calibrated = CalibratedClassifierCV(LinearSVC(), cv=3)
    pipeline = Pipeline([("scaler", StandardScaler()), ("estimator", calibrated)])
    model_uri = store_model(store, "calibrated", pipeline, frame, label, features, "classification")

    response = explain(stub, store, model_uri, iris, CLASSIFICATION, "calibrated", max_rows=8,
                       background_rows=10)

    assert response.explainer == "permutation"
    assert response.row_count == 8
    arrays = load_npz(store, response.shap_values_uri)
    assert arrays["shap_values"].shape == (8, 4, 3)
    rows = frame.iloc[arrays["row_indices"]][features]
    total = arrays["shap_values"].sum(axis=1) + arrays["expected_values"]
    np.testing.assert_allclose(total, pipeline.predict_proba(rows), atol=1e-6)


def test_time_budget_limits_permutation_rows(store, diabetes, tmp_path):
    frame, label, uri = diabetes
    features = [column for column in frame.columns if column not in (label, "region")]
    pipeline = Pipeline([("estimator", KNeighborsRegressor())])
    model_uri = store_model(store, "budget", pipeline, frame, label, features, "regression")
    explainer = ModelExplainer(store, DatasetCache(store, tmp_path), time_budget=0.0)

    explanation = explainer.explain(ExplainRequest(
        model_uri=model_uri, dataset_uri=uri, label_column=label, task="regression",
        output_uri=store.uri("explanations/explainer-test/budget/"), max_rows=50, background_rows=10))

    # The first row is always explained, and the spent budget stops the rest.
    assert explanation.explainer == "permutation"
    assert explanation.row_count == 1
    arrays = load_npz(store, explanation.shap_values_uri)
    assert arrays["shap_values"].shape == (1, 10)
    assert arrays["row_indices"].shape == (1,)


def test_explanation_json_matches_response(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    pipeline = Pipeline([("estimator", LogisticRegression(max_iter=1000))])
    model_uri = store_model(store, "json", pipeline, frame, label, features, "classification")

    response = explain(stub, store, model_uri, iris, CLASSIFICATION, "json", max_rows=10)

    bucket, key = parse_uri(response.shap_values_uri)
    document = json.loads(store.get_bytes(f"s3://{bucket}/{key.replace('shap_values.npz', 'explanation.json')}"))
    assert document["explainer"] == response.explainer
    assert document["shap_values_uri"] == response.shap_values_uri
    assert document["row_count"] == 10
    assert [entry["feature"] for entry in document["overall_importance"]] == \
        [entry.feature for entry in response.overall_importance]


def test_missing_model_is_not_found(stub, store, iris):
    with pytest.raises(grpc.RpcError) as raised:
        explain(stub, store, store.uri("experiments/explainer-test/absent/model.skops"), iris, CLASSIFICATION,
                "absent")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_missing_dataset_is_not_found(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    model_uri = store_model(store, "no-data", Pipeline([("estimator", LogisticRegression(max_iter=1000))]),
                            frame, label, features, "classification")
    with pytest.raises(grpc.RpcError) as raised:
        explain(stub, store, model_uri, (frame, label, store.uri("datasets/absent.csv")), CLASSIFICATION, "x")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("field, request_fields", [
    ("model_uri", {"model_uri": "model.skops"}),
    ("dataset.uri", {"dataset": pipeline_pb2.Dataset(uri="s3://automl/data.txt", label_column="y")}),
    ("output_uri", {"output_uri": "/tmp/out/"}),
    ("task", {"task": pipeline_pb2.TASK_UNSPECIFIED}),
    ("max_rows", {"max_rows": -1}),
])
def test_bad_request_names_field(stub, store, field, request_fields):
    request = explainer_pb2.ExplainModelRequest(
        model_uri=store.uri("experiments/x/model.skops"),
        dataset=pipeline_pb2.Dataset(uri=store.uri("datasets/x.csv"), label_column="y"),
        task=CLASSIFICATION, output_uri=store.uri("explanations/x/"))
    for name, value in request_fields.items():
        if isinstance(value, pipeline_pb2.Dataset):
            request.dataset.CopyFrom(value)
        else:
            setattr(request, name, value)

    with pytest.raises(grpc.RpcError) as raised:
        stub.ExplainModel(request, timeout=30)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violation_fields(raised.value) == [field]


def test_task_mismatch_is_failed_precondition(stub, store, iris):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    model_uri = store_model(store, "mismatch", Pipeline([("estimator", LogisticRegression(max_iter=1000))]),
                            frame, label, features, "classification")
    with pytest.raises(grpc.RpcError) as raised:
        explain(stub, store, model_uri, iris, REGRESSION, "mismatch")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "classification" in raised.value.details()


def test_missing_features_are_named(stub, store, iris, diabetes):
    frame, label, _ = iris
    features = [column for column in frame.columns if column != label]
    model_uri = store_model(store, "features", Pipeline([("estimator", LogisticRegression(max_iter=1000))]),
                            frame, label, features, "classification")
    with pytest.raises(grpc.RpcError) as raised:
        explain(stub, store, model_uri, diabetes, CLASSIFICATION, "features")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sepal_length" in raised.value.details()
