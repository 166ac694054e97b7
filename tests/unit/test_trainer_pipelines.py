"""Catalog names to scikit-learn pipelines, hyperparameter checks and the request checks."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from automl.common import catalog
from automl.common.errors import InvalidArgument
from automl.v1 import pipeline_pb2, trainer_pb2
from services.trainer.pipelines import build_pipeline, resolve_hyperparameters
from services.trainer.spec import spec_from_request


def _classification_data():
    features, labels = make_classification(n_samples=60, n_features=4, n_informative=3, n_redundant=0,
                                           n_classes=3, random_state=0)
    return pd.DataFrame(features, columns=list("abcd")), labels


@pytest.mark.parametrize("estimator", catalog.ESTIMATORS[catalog.CLASSIFICATION])
def test_every_classifier_fits_and_gives_probabilities(estimator):
    features, labels = _classification_data()
    params = resolve_hyperparameters(catalog.CLASSIFICATION, estimator, {})
    pipeline = build_pipeline(catalog.CLASSIFICATION, "StandardScaler", estimator, params, seed=1)

    pipeline.fit(features, labels)

    probabilities = pipeline.predict_proba(features)
    assert probabilities.shape == (60, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.parametrize("estimator", catalog.ESTIMATORS[catalog.REGRESSION])
def test_every_regressor_fits(estimator):
    features, target = make_regression(n_samples=60, n_features=4, noise=0.1, random_state=0)
    params = resolve_hyperparameters(catalog.REGRESSION, estimator, {})
    pipeline = build_pipeline(catalog.REGRESSION, "MinMaxScaler", estimator, params, seed=1)

    pipeline.fit(pd.DataFrame(features, columns=list("abcd")), target)

    assert pipeline.predict(pd.DataFrame(features[:5], columns=list("abcd"))).shape == (5,)


@pytest.mark.parametrize("scaler", catalog.SCALERS)
def test_every_scaler_fits(scaler):
    features, labels = _classification_data()
    pipeline = build_pipeline(catalog.CLASSIFICATION, scaler, "GaussianNaiveBayes", {})
    assert pipeline.fit(features, labels).score(features, labels) > 0.5
    assert ("scaler" in pipeline.named_steps) == (scaler != "None")


def test_seed_and_cores_reach_the_estimator():
    pipeline = build_pipeline(catalog.CLASSIFICATION, "None", "RandomForest", {}, seed=2**40 + 5, cores=2)
    forest = pipeline.named_steps["estimator"]
    assert forest.random_state == 5
    assert forest.n_jobs == 2


def test_hyperparameters_integral_float_coercion():
    params = resolve_hyperparameters(catalog.CLASSIFICATION, "RandomForest",
                                     {"n_estimators": 10.0, "max_features": 1.0, "min_samples_split": 0.5,
                                      "max_depth": 3.0})
    assert params == {"n_estimators": 10, "max_features": 1.0, "min_samples_split": 0.5, "max_depth": 3}
    assert type(params["n_estimators"]) is int
    assert type(params["max_features"]) is float
    assert type(resolve_hyperparameters(catalog.CLASSIFICATION, "SVM", {"C": 2.0})["C"]) is float


@pytest.mark.parametrize("estimator, params, words", [
    ("DecisionTree", {"depth": 3.0}, ["'depth'", "max_depth", "min_samples_leaf"]),
    ("RandomForest", {"random_state": 1.0}, ["'random_state'", "seed"]),
    ("SVM", {"probability": False}, ["'probability'", "always true"]),
    ("SGD", {"loss": "hinge"}, ["'hinge'", "log_loss", "modified_huber"]),
    ("KNN", {"n_neighbors": 0.0}, ["n_neighbors"]),
])
def test_bad_hyperparameters_are_invalid(estimator, params, words):
    with pytest.raises(InvalidArgument) as raised:
        resolve_hyperparameters(catalog.CLASSIFICATION, estimator, params)
    violation = raised.value.violations[0]
    assert violation.field == "pipeline.hyperparameters"
    for word in words:
        assert word in violation.description


def test_request_checks_report_every_bad_field():
    request = trainer_pb2.RunIterationRequest(
        iteration="iterations/1",
        dataset=pipeline_pb2.Dataset(uri="s3://bucket/data.xlsx"),
        task=catalog.REGRESSION,
        pipeline=pipeline_pb2.Pipeline(scaler="ZScaler", estimator="SVM"),
        validation=pipeline_pb2.Validation(n_cross_validations=1),
        output_uri="/tmp/out",
    )
    with pytest.raises(InvalidArgument) as raised:
        spec_from_request(request)
    fields = {v.field for v in raised.value.violations}
    assert fields == {"iteration", "dataset.uri", "pipeline.scaler", "pipeline.estimator",
                      "validation.n_cross_validations", "output_uri"}


def test_request_defaults():
    request = trainer_pb2.RunIterationRequest(
        iteration="experiments/e/iterations/3",
        dataset=pipeline_pb2.Dataset(uri="s3://bucket/data.csv", label_column="y"),
        task=catalog.CLASSIFICATION,
        pipeline=pipeline_pb2.Pipeline(estimator="KNN"),
        output_uri="s3://bucket/out/",
    )
    spec = spec_from_request(request)
    assert spec.timeout_seconds == 1800
    assert spec.scaler == "None"
    assert spec.description == "None KNN"
