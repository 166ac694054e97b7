"""LightGBM and XGBoost pipelines (string labels, skops round trip, SHAP family) and row subsampling."""

import random

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression

from automl.common import catalog
from automl.common.errors import InvalidArgument
from automl.common.models import StoredModel, dumps_model, loads_model
from automl.v1 import pipeline_pb2, trainer_pb2
from services.orchestrator.search_space import PORTFOLIOS, SEARCH_SPACES, sample_random
from services.explainer.explainers import compute_shap, model_family, split_pipeline
from services.trainer.pipelines import build_pipeline, resolve_hyperparameters
from services.trainer.spec import spec_from_request
from services.trainer.subsampling import subsample_rows

CLASSIFIERS = ["LightGBM", "XGBoostClassifier"]
REGRESSORS = ["LightGBM", "XGBoostRegressor"]


def _string_labelled():
    features, codes = make_classification(n_samples=300, n_features=6, n_informative=4, n_redundant=0,
                                          n_classes=3, random_state=0)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[codes]
    return pd.DataFrame(features, columns=[f"f{i}" for i in range(6)]), labels


def _round_trip(pipeline, task, features, class_labels=()):
    model = StoredModel(pipeline=pipeline, task=task, feature_names=list(features.columns),
                        class_labels=list(class_labels))
    return loads_model(dumps_model(model)).pipeline


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_classifier_predicts_string_labels(estimator):
    features, labels = _string_labelled()
    params = resolve_hyperparameters(catalog.CLASSIFICATION, estimator, {"n_estimators": 30.0})
    pipeline = build_pipeline(catalog.CLASSIFICATION, "None", estimator, params, seed=3, cores=2)

    pipeline.fit(features, labels)
    predictions = pipeline.predict(features)

    assert list(pipeline.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(predictions) <= set(labels)
    assert (predictions == labels).mean() > 0.8
    assert pipeline.predict_proba(features).shape == (300, 3)


@pytest.mark.parametrize("estimator", CLASSIFIERS)
def test_classifier_skops_round_trip(estimator):
    features, labels = _string_labelled()
    params = resolve_hyperparameters(catalog.CLASSIFICATION, estimator, {"n_estimators": 20})
    pipeline = build_pipeline(catalog.CLASSIFICATION, "StandardScaler", estimator, params, seed=3).fit(features, labels)

    loaded = _round_trip(pipeline, "classification", features, pipeline.classes_)

    assert list(loaded.predict(features)) == list(pipeline.predict(features))
    assert np.allclose(loaded.predict_proba(features), pipeline.predict_proba(features))


@pytest.mark.parametrize("estimator", REGRESSORS)
def test_regressor_skops_round_trip(estimator):
    features, target = make_regression(n_samples=200, n_features=5, noise=0.1, random_state=0)
    frame = pd.DataFrame(features, columns=list("abcde"))
    params = resolve_hyperparameters(catalog.REGRESSION, estimator, {"n_estimators": 50, "learning_rate": 0.2})
    pipeline = build_pipeline(catalog.REGRESSION, "None", estimator, params, seed=3).fit(frame, target)

    loaded = _round_trip(pipeline, "regression", frame)

    assert np.allclose(loaded.predict(frame), pipeline.predict(frame))
    assert np.corrcoef(pipeline.predict(frame), target)[0, 1] > 0.9


def test_xgboost_integer_hyperparameters_coerced():
    params = resolve_hyperparameters(catalog.CLASSIFICATION, "XGBoostClassifier",
                                     {"n_estimators": 40.0, "max_depth": 4.0, "learning_rate": 0.1})

    assert params["n_estimators"] == 40 and isinstance(params["n_estimators"], int)
    assert params["max_depth"] == 4 and isinstance(params["max_depth"], int)
    assert params["tree_method"] == "hist"


@pytest.mark.parametrize("task, estimator", [(catalog.CLASSIFICATION, "LightGBM"),
                                             (catalog.CLASSIFICATION, "XGBoostClassifier"),
                                             (catalog.REGRESSION, "LightGBM"),
                                             (catalog.REGRESSION, "XGBoostRegressor")])
def test_explainer_treats_boosting_as_trees(task, estimator):
    features, labels = _string_labelled()
    if task == catalog.REGRESSION:
        labels = features["f0"].to_numpy() * 2 + features["f1"].to_numpy()
    params = resolve_hyperparameters(task, estimator, {"n_estimators": 20})
    pipeline = build_pipeline(task, "None", estimator, params, seed=1).fit(features, labels)
    task_name = catalog.TASK_NAMES[task]

    _, final = split_pipeline(pipeline)
    shap_values = compute_shap(pipeline, features.iloc[:10], features.iloc[:50], task_name, seed=0)

    assert model_family(final) == "tree"
    assert shap_values.explainer == "tree"
    expected_shape = (10, 6, 3) if task == catalog.CLASSIFICATION else (10, 6)
    assert shap_values.values.shape == expected_shape


def test_subsample_rows_stratified_and_seeded():
    labels = np.array(["a"] * 900 + ["b"] * 100)
    rows = np.arange(1000)

    kept = subsample_rows(rows, labels, 0.25, seed=5, stratify=True)

    assert len(kept) == 250
    assert (labels[kept] == "b").sum() == 25
    assert list(kept) == list(subsample_rows(rows, labels, 0.25, seed=5, stratify=True))
    assert list(kept) != list(subsample_rows(rows, labels, 0.25, seed=6, stratify=True))
    assert list(subsample_rows(rows, labels, 1.0, seed=5, stratify=True)) == list(rows)


def test_subsample_rows_keeps_rare_classes():
    labels = np.array(["a"] * 98 + ["b", "c"])

    kept = subsample_rows(np.arange(100), labels, 0.05, seed=0, stratify=True)

    assert len(kept) >= 3
    assert len(set(kept)) == len(kept)


@pytest.mark.parametrize("subsample, expected", [(0.0, 1.0), (0.25, 0.25), (1.0, 1.0)])
def test_spec_subsample_accepted(subsample, expected):
    request = trainer_pb2.RunIterationRequest(
        iteration="experiments/e/iterations/3", dataset=pipeline_pb2.Dataset(uri="s3://bucket/data.csv", label_column="y"),
        task=catalog.CLASSIFICATION, pipeline=pipeline_pb2.Pipeline(estimator="LightGBM"),
        output_uri="s3://bucket/out/", subsample=subsample)

    assert spec_from_request(request).subsample == expected


@pytest.mark.parametrize("subsample", [-0.5, 1.5])
def test_spec_subsample_outside_unit_interval_rejected(subsample):
    request = trainer_pb2.RunIterationRequest(
        iteration="experiments/e/iterations/3", dataset=pipeline_pb2.Dataset(uri="s3://bucket/data.csv", label_column="y"),
        task=catalog.CLASSIFICATION, pipeline=pipeline_pb2.Pipeline(estimator="LightGBM"),
        output_uri="s3://bucket/out/", subsample=subsample)

    with pytest.raises(InvalidArgument) as raised:
        spec_from_request(request)

    assert [v.field for v in raised.value.violations] == ["subsample"]


@pytest.mark.parametrize("task", [catalog.CLASSIFICATION, catalog.REGRESSION])
def test_search_space_values_resolve(task):
    # Hyperparameters reach the trainer through a Struct, where every number is a float.
    def as_struct_values(hyperparameters):
        return {name: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
                for name, value in hyperparameters.items()}

    rng = random.Random(0)
    configurations = [(estimator, hyperparameters) for _, estimator, hyperparameters in PORTFOLIOS[task]]
    for estimator, space in SEARCH_SPACES[task].items():
        for _ in range(5):
            configurations.append((estimator, {name: sample_random(rng, spec) for name, spec in space.items()}))

    for estimator, hyperparameters in configurations:
        resolved = resolve_hyperparameters(task, estimator, as_struct_values(hyperparameters))
        assert set(hyperparameters) <= set(resolved), estimator
