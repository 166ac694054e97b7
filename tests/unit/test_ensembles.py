"""Ensemble selection, stacking, ensemble models and ensemble scheduling."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from automl.common import catalog
from automl.common.config import S3Settings
from automl.common.ensembles import StackEnsembleModel, VotingEnsembleModel
from automl.common.errors import InvalidArgument
from automl.common.models import StoredModel, dumps_model, loads_model
from automl.v1 import experiment_pb2, pipeline_pb2
from services.orchestrator import ensembles as scheduling
from services.trainer import ensembles
from services.trainer.oof import OutOfFold, OutOfFoldCollector, load_oof
from services.trainer.spec import IterationSpec

CLASSES = np.array(["no", "yes"])


def complementary_members() -> tuple[OutOfFold, list[np.ndarray]]:
    """Three members, each wrong on a different group of rows, and a last member that guesses.

    Member 0 is wrong on the smallest group, so it is the best single member;
    averaging any two of the first three is right on every row.
    """
    rng = np.random.default_rng(0)
    labels = rng.choice(CLASSES, 300)
    truth = (labels == "yes").astype(float)
    groups = np.repeat([0, 1, 2], [80, 110, 110])
    members = []
    for member in range(3):
        true_probability = np.where(groups == member, 0.4, 0.9)
        positive = np.where(truth == 1, true_probability, 1 - true_probability)
        members.append(np.column_stack([1 - positive, positive]))
    guess = rng.uniform(0.3, 0.7, 300)
    members.append(np.column_stack([1 - guess, guess]))
    folds = np.tile([1, 2, 3], 100)
    reference = OutOfFold(members[0], labels, np.arange(300), CLASSES, folds, 0.0, "3-fold")
    return reference, members


def accuracy(reference: OutOfFold, probabilities: np.ndarray) -> float:
    return float(np.mean(CLASSES[np.argmax(probabilities, axis=1)] == reference.labels))


def test_selection_starts_with_best_member():
    reference, members = complementary_members()
    weights = ensembles.select_weights(catalog.CLASSIFICATION, "accuracy", reference, members, rounds=1)
    assert weights.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_selection_beats_best_member():
    reference, members = complementary_members()
    weights = ensembles.select_weights(catalog.CLASSIFICATION, "accuracy", reference, members, rounds=25)
    best_single = max(accuracy(reference, member) for member in members)
    combined = ensembles.weighted_average(members, weights)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] > 0
    assert weights[3] == 0
    assert best_single == pytest.approx(220 / 300)
    assert accuracy(reference, combined) == 1.0


def test_selection_minimizes_error_metrics():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=400)
    members = [truth + rng.normal(scale=scale, size=400) for scale in (0.3, 0.5, 0.5)]
    reference = OutOfFold(members[0], truth, np.arange(400), None, np.ones(400, dtype=int), float(np.ptp(truth)), "")
    metric = "normalized_root_mean_squared_error"
    weights = ensembles.select_weights(catalog.REGRESSION, metric, reference, members, rounds=20)
    single = [ensembles.metric_value(catalog.REGRESSION, metric, reference, member) for member in members]
    combined_predictions = ensembles.weighted_average(members, weights)
    combined = ensembles.metric_value(catalog.REGRESSION, metric, reference, combined_predictions)
    assert weights.sum() == pytest.approx(1.0)
    assert combined < min(single)


def test_task_metrics_full_set():
    reference, members = complementary_members()
    metrics = ensembles.task_metrics(catalog.CLASSIFICATION, reference, members[0])
    assert set(metrics) == set(catalog.METRICS[catalog.CLASSIFICATION])
    assert metrics["accuracy"] == pytest.approx(accuracy(reference, members[0]), abs=0.02)


def test_stack_meta_learner_beats_best_member():
    reference, members = complementary_members()
    meta_learner, validated = ensembles.fit_meta_learner(catalog.CLASSIFICATION, reference, members, seed=0)
    assert validated.shape == (300, 2)
    assert meta_learner.coef_.shape[1] == 8
    assert accuracy(reference, validated) > max(accuracy(reference, member) for member in members)


def test_out_of_fold_npz_loads_without_pickle():
    frame, labels = iris_rows()
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    collector = OutOfFoldCollector(catalog.CLASSIFICATION, np.unique(labels), 0.0)
    collector.add(2, model, frame.iloc[75:], np.arange(75, 150), labels[75:])
    collector.add(1, model, frame.iloc[:75], np.arange(75), labels[:75])
    data = collector.to_bytes("2-fold stratified cross-validation")
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        assert set(arrays.files) >= {"predictions", "labels", "row_indices", "classes"}
        assert arrays["classes"].tolist() == ["setosa", "versicolor", "virginica"]
    loaded = load_oof(data)
    assert loaded.row_indices.tolist() == list(range(150))
    assert loaded.labels.tolist() == list(labels)
    assert loaded.folds[:75].tolist() == [1] * 75
    assert loaded.predictions.shape == (150, 3)


def iris_rows() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    return data.data, np.array(data.target_names, dtype=object)[data.target]


def fitted_members(frame: pd.DataFrame, labels: np.ndarray) -> list:
    return [
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, labels),
        make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(frame, labels),
        DecisionTreeClassifier(random_state=0).fit(frame, labels),
    ]


def round_trip(pipeline, frame: pd.DataFrame, classes: list) -> StoredModel:
    stored = StoredModel(pipeline=pipeline, task="classification", feature_names=list(frame.columns),
                         class_labels=classes, label_column="species", description=type(pipeline).__name__)
    return loads_model(dumps_model(stored))


def test_voting_model_skops_round_trip():
    frame, labels = iris_rows()
    members = fitted_members(frame, labels)
    classes = sorted(set(labels))
    model = VotingEnsembleModel(members=members, weights=[0.5, 0.3, 0.2], task="classification", classes=classes,
                                feature_names=list(frame.columns))
    loaded = round_trip(model, frame, classes).pipeline
    assert isinstance(loaded, VotingEnsembleModel)
    probabilities = loaded.predict_proba(frame)
    assert probabilities.shape == (150, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.allclose(probabilities, model.predict_proba(frame))
    predictions = loaded.predict(frame.head(10))
    assert set(predictions) <= set(classes)
    assert np.mean(loaded.predict(frame) == labels) > 0.9


def test_stack_model_skops_round_trip():
    frame, labels = iris_rows()
    members = fitted_members(frame, labels)
    classes = sorted(set(labels))
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    outputs = [cross_val_predict(member, frame, labels, cv=folds, method="predict_proba") for member in members]
    target = np.searchsorted(classes, labels)
    meta_learner = LogisticRegression(max_iter=1000).fit(np.column_stack(outputs), target)
    model = StackEnsembleModel(members=members, meta_learner=meta_learner, task="classification",
                               classes=classes, feature_names=list(frame.columns))
    loaded = round_trip(model, frame, classes).pipeline
    assert isinstance(loaded, StackEnsembleModel)
    assert np.allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    assert set(loaded.predict(frame.head(10))) <= set(classes)
    assert np.mean(loaded.predict(frame) == labels) > 0.9


def ensemble_request(members: int, **hyperparameters) -> pipeline_pb2.Pipeline:
    pipeline = pipeline_pb2.Pipeline(estimator="VotingEnsemble")
    pipeline.hyperparameters.update(hyperparameters)
    for index in range(members):
        pipeline.ensemble_members.add(iteration=index, model_uri=f"s3://automl/m{index}/model.skops",
                                      oof_predictions_uri=f"s3://automl/m{index}/oof_predictions.npz")
    return pipeline


def test_ensemble_parameters_defaults():
    hyperparameters, members = ensembles.ensemble_parameters(catalog.CLASSIFICATION, ensemble_request(3))
    assert hyperparameters == {"metric": "accuracy", "rounds": 25}
    assert [member.iteration for member in members] == [0, 1, 2]


@pytest.mark.parametrize("pipeline, field", [
    (ensemble_request(1), "pipeline.ensemble_members"),
    (ensemble_request(2, metric="r2_score"), "pipeline.hyperparameters.metric"),
    (ensemble_request(2, rounds=0), "pipeline.hyperparameters.rounds"),
    (ensemble_request(2, depth=3), "pipeline.hyperparameters.depth"),
])
def test_ensemble_parameters_rejects(pipeline, field):
    with pytest.raises(InvalidArgument) as raised:
        ensembles.ensemble_parameters(catalog.CLASSIFICATION, pipeline)
    assert field in [violation.field for violation in raised.value.violations]


def test_ensembles_not_base_estimators():
    for task in catalog.TASK_NAMES:
        assert not set(catalog.ENSEMBLES) & set(catalog.ESTIMATORS[task])


def searched(index: int, score: float, state=experiment_pb2.ITERATION_STATE_SUCCEEDED) -> experiment_pb2.Iteration:
    return experiment_pb2.Iteration(
        index=index, state=state, score=score, model_uri=f"s3://automl/{index}/model.skops",
        oof_predictions_uri=f"s3://automl/{index}/oof_predictions.npz",
        pipeline=pipeline_pb2.Pipeline(estimator="RandomForest"))


def test_schedule_last_slots():
    experiment = experiment_pb2.Experiment(iterations=5, primary_metric="accuracy")
    iterations = [searched(0, 0.8), searched(1, 0.9), searched(2, 0.85)]
    assert scheduling.next_ensemble(experiment, 2, iterations[:2]) is None
    voting = scheduling.next_ensemble(experiment, 3, iterations)
    assert voting.estimator == "VotingEnsemble"
    assert [member.iteration for member in voting.ensemble_members] == [1, 2, 0]
    assert voting.hyperparameters["metric"] == "accuracy"
    iterations.append(experiment_pb2.Iteration(index=3, pipeline=voting,
                                               state=experiment_pb2.ITERATION_STATE_RUNNING))
    stack = scheduling.next_ensemble(experiment, 4, iterations)
    assert stack.estimator == "StackEnsemble"


def test_schedule_waits_and_respects_flags():
    experiment = experiment_pb2.Experiment(iterations=4, primary_metric="log_loss", enable_stack_ensemble=False)
    running = [searched(0, 0.3), searched(1, 0.2), searched(2, 0.0, experiment_pb2.ITERATION_STATE_RUNNING)]
    assert scheduling.next_ensemble(experiment, 2, running) is None
    assert scheduling.next_ensemble(experiment, 3, running) is scheduling.WAIT
    running[2].state = experiment_pb2.ITERATION_STATE_FAILED
    voting = scheduling.next_ensemble(experiment, 3, running)
    assert voting.estimator == "VotingEnsemble"
    assert [member.iteration for member in voting.ensemble_members] == [1, 0]
    experiment.enable_voting_ensemble = False
    assert scheduling.next_ensemble(experiment, 3, running) is None


def test_schedule_needs_two_members():
    experiment = experiment_pb2.Experiment(iterations=3, primary_metric="accuracy")
    iterations = [searched(0, 0.8), searched(1, 0.0, experiment_pb2.ITERATION_STATE_FAILED)]
    assert scheduling.next_ensemble(experiment, 2, iterations) is None


def test_skipped_ensembles_after_time_budget():
    experiment = experiment_pb2.Experiment(iterations=20, primary_metric="accuracy")
    iterations = [searched(0, 0.8), searched(1, 0.9)]
    assert scheduling.runs_after_stop("experiment timeout reached")
    assert not scheduling.runs_after_stop("exit score reached")
    assert not scheduling.runs_after_stop("canceled")
    voting = scheduling.skipped_ensemble(experiment, iterations)
    assert voting.estimator == "VotingEnsemble"
    iterations.append(experiment_pb2.Iteration(index=2, pipeline=voting, state=experiment_pb2.ITERATION_STATE_FAILED))
    assert scheduling.skipped_ensemble(experiment, iterations).estimator == "StackEnsemble"
    iterations.append(experiment_pb2.Iteration(index=3, pipeline=pipeline_pb2.Pipeline(estimator="StackEnsemble")))
    assert scheduling.skipped_ensemble(experiment, iterations) is None


def store_member(store, index: int, pipeline, frame: pd.DataFrame, target: np.ndarray) -> tuple[str, str]:
    """Fit a regression member, store its model and 3-fold out-of-fold predictions; return both URIs."""
    folds = list(KFold(3, shuffle=True, random_state=0).split(frame))
    collector = OutOfFoldCollector(catalog.REGRESSION, np.array([]), float(np.ptp(target)))
    for number, (train_rows, test_rows) in enumerate(folds, start=1):
        fold_model = clone(pipeline).fit(frame.iloc[train_rows], target[train_rows])
        collector.add(number, fold_model, frame.iloc[test_rows], test_rows, target[test_rows])
    stored = StoredModel(pipeline=pipeline.fit(frame, target), task="regression",
                         feature_names=list(frame.columns), label_column="target")
    prefix = f"unit-ensembles/{index}/"
    return (store.put_bytes(prefix + "model.skops", dumps_model(stored)),
            store.put_bytes(prefix + "oof_predictions.npz", collector.to_bytes("3-fold cross-validation")))


class ListLog:
    def __init__(self):
        self.lines = []

    def write(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.parametrize("estimator", ["VotingEnsemble", "StackEnsemble"])
def test_regression_ensemble_iteration(store, estimator):
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    target = target.to_numpy()
    candidates = [make_pipeline(StandardScaler(), Ridge(alpha=1.0)), KNeighborsRegressor(n_neighbors=15),
                  DecisionTreeRegressor(max_depth=3, random_state=0)]
    members = [store_member(store, index, model, frame, target) for index, model in enumerate(candidates)]
    pipeline = pipeline_pb2.Pipeline(estimator=estimator)
    pipeline.hyperparameters.update({"metric": "r2_score"})
    for index, (model_uri, oof_uri) in enumerate(members):
        pipeline.ensemble_members.add(iteration=index, model_uri=model_uri, oof_predictions_uri=oof_uri)
    hyperparameters, parsed = ensembles.ensemble_parameters(catalog.REGRESSION, pipeline)
    spec = IterationSpec(
        iteration="experiments/unit/iterations/3", dataset_uri=store.uri("unused.csv"), label_column="target",
        task=catalog.REGRESSION, scaler="None", estimator=estimator, hyperparameters=hyperparameters,
        description=estimator, n_cross_validations=3, validation_size=0.0,
        output_uri=store.uri(f"unit-ensembles/{estimator}/"), timeout_seconds=60, seed=0, preprocess=False,
        ensemble_members=parsed)
    job = SimpleNamespace(spec=spec, s3=S3Settings.from_env(), node="unit")

    result = ensembles.train_ensemble(job, ListLog())

    member_r2 = []
    for _, oof_uri in members:
        out_of_fold = load_oof(store.get_bytes(oof_uri))
        member_r2.append(ensembles.task_metrics(catalog.REGRESSION, out_of_fold, out_of_fold.predictions)["r2_score"])
    assert set(result["metrics"]) == set(catalog.METRICS[catalog.REGRESSION])
    assert result["metrics"]["r2_score"] > max(member_r2)
    model = loads_model(store.get_bytes(result["model_uri"]))
    predictions = model.pipeline.predict(frame.head(5))
    assert predictions.shape == (5,)
    assert np.all(np.isfinite(predictions))
