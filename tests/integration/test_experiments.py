"""The experiment flow through the real processes: S3, compute, trainers, explainer, orchestrator."""

import time

import grpc
import numpy as np
import pytest

from automl.common import catalog
from automl.common.models import loads_model
from automl.v1 import experiment_pb2, pipeline_pb2
from tests.integration.helpers import (ensure_target, experiment_stub, field_violations, iris_frame, slow_frame,
                                       upload_frame, wait_for, wait_terminal, worker_pids)

pytestmark = pytest.mark.integration


def classification_experiment(uri, label, target, **fields) -> experiment_pb2.Experiment:
    fields = {"primary_metric": "AUC_weighted", "seed": 7, **fields}
    return experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column=label), compute_target=target,
        task=pipeline_pb2.TASK_CLASSIFICATION, validation=pipeline_pb2.Validation(n_cross_validations=3), **fields)


@pytest.fixture(scope="module")
def iris_uri(stack, store):
    return upload_frame(store, "datasets/iris flowers ü.csv", iris_frame())


@pytest.fixture(scope="module")
def finished_iris(stack, iris_uri):
    """An explained 4-iteration iris experiment, run to its end."""
    stub = experiment_stub(stack)
    target = ensure_target(stack, "it-cluster")
    experiment = classification_experiment(iris_uri, "species", target, iterations=4, max_concurrent_iterations=2,
                                           model_explainability=True)
    created = stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="iris", experiment=experiment))
    assert created.state == experiment_pb2.EXPERIMENT_STATE_QUEUED
    events = [response.event for response in stub.WatchExperiment(
        experiment_pb2.WatchExperimentRequest(name="experiments/iris"), timeout=300)]
    return stub, stub.GetExperiment(experiment_pb2.GetExperimentRequest(name="experiments/iris")), events


def test_experiment_succeeds_with_all_iterations(finished_iris):
    stub, experiment, _ = finished_iris
    iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=experiment.name)).iterations

    assert experiment.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED
    assert [it.index for it in iterations] == [0, 1, 2, 3]
    assert all(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations)
    for iteration in iterations:
        assert set(iteration.metrics) == set(catalog.METRICS[catalog.CLASSIFICATION])
        assert iteration.score == iteration.metrics["AUC_weighted"]
        assert iteration.model_uri.endswith("model.skops")
        assert iteration.duration.ToNanoseconds() > 0
    best = max(iterations, key=lambda it: it.score)
    assert experiment.best_iteration == best.index
    assert experiment.best_score == best.score
    assert experiment.best_score > 0.95


def test_watch_streams_every_iteration_in_order(finished_iris):
    _, _, events = finished_iris
    started = [e.iteration.index for e in events if e.type == experiment_pb2.EVENT_TYPE_ITERATION_STARTED]
    succeeded = [e.iteration.index for e in events if e.type == experiment_pb2.EVENT_TYPE_ITERATION_SUCCEEDED]

    assert [e.index for e in events] == list(range(len(events)))
    assert sorted(started) == [0, 1, 2, 3]
    assert sorted(succeeded) == [0, 1, 2, 3]
    assert events[-1].state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED


def test_watch_resumes_from_index(finished_iris):
    stub, experiment, events = finished_iris
    resumed = [r.event for r in stub.WatchExperiment(
        experiment_pb2.WatchExperimentRequest(name=experiment.name, start_index=5), timeout=30)]

    assert [e.index for e in resumed] == [e.index for e in events[5:]]


def test_best_model_predicts_raw_rows(finished_iris, store):
    stub, experiment, _ = finished_iris
    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=experiment.name))
    model = loads_model(store.get_bytes(best.model_uri))
    rows = iris_frame().drop(columns="species").iloc[::10]

    predictions = model.pipeline.predict(rows)
    assert set(predictions) <= {"setosa", "versicolor", "virginica"}
    assert model.feature_names == list(rows.columns)


def test_best_by_other_metric(finished_iris):
    stub, experiment, _ = finished_iris
    iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=experiment.name)).iterations
    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=experiment.name, metric="log_loss"))

    assert best.metrics["log_loss"] == min(it.metrics["log_loss"] for it in iterations)


def test_explanation_names_features(finished_iris):
    stub, experiment, _ = finished_iris
    explanation = stub.GetExplanation(experiment_pb2.GetExplanationRequest(parent=experiment.name))
    importances = [f.importance for f in explanation.overall_importance]

    assert experiment.explanation_state == experiment_pb2.EXPLANATION_STATE_SUCCEEDED
    assert set(explanation.feature_names) == set(iris_frame().columns) - {"species"}
    assert importances == sorted(importances, reverse=True)
    assert sorted(c.class_label for c in explanation.per_class_importance) == ["setosa", "versicolor", "virginica"]
    assert explanation.shap_values_uri.endswith(".npz")


def test_iterations_page(finished_iris):
    stub, experiment, _ = finished_iris
    first = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=experiment.name, page_size=3))
    second = stub.ListIterations(experiment_pb2.ListIterationsRequest(
        parent=experiment.name, page_size=3, page_token=first.next_page_token))

    assert [it.index for it in first.iterations] == [0, 1, 2]
    assert [it.index for it in second.iterations] == [3]
    assert second.next_page_token == ""


def test_continue_adds_iterations(finished_iris):
    stub, experiment, _ = finished_iris
    stub.ContinueExperiment(experiment_pb2.ContinueExperimentRequest(name=experiment.name, additional_iterations=1))
    ended = wait_terminal(stub, experiment.name, timeout=120)

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED
    assert ended.iterations == 5
    assert ended.iteration_counts["SUCCEEDED"] == 5


def test_cancel_iteration_then_experiment(stack, store):
    stub = experiment_stub(stack)
    target = ensure_target(stack, "it-cluster")
    uri = upload_frame(store, "datasets/slow.csv", slow_frame())
    experiment = classification_experiment(uri, "label", target, iterations=6, max_concurrent_iterations=1,
                                           allowed_models=["GradientBoosting"])
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="slow", experiment=experiment))

    def running_iteration():
        iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent="experiments/slow")).iterations
        return next((it for it in iterations if it.state == experiment_pb2.ITERATION_STATE_RUNNING), None)

    first = wait_for(running_iteration, 60, what="a running iteration")
    # One experiment with one iteration at a time runs now, so there is exactly one worker.
    workers = wait_for(worker_pids, 30, what="the iteration's worker process")
    assert len(workers) == 1
    requested = time.monotonic()
    stub.CancelIteration(experiment_pb2.CancelIterationRequest(name=first.name))
    wait_for(lambda: not (workers & worker_pids()), 1.0, interval=0.05, what="the worker gone within 1 s")
    assert time.monotonic() - requested < 1.0
    canceled = wait_for(lambda: (it := stub.GetIteration(experiment_pb2.GetIterationRequest(name=first.name)))
                        .state == experiment_pb2.ITERATION_STATE_CANCELED and it, 10, what="iteration canceled")
    assert canceled.error

    second = wait_for(lambda: (it := running_iteration()) and it.index != first.index and it, 60,
                      what="the next iteration running")
    stub.CancelExperiment(experiment_pb2.CancelExperimentRequest(name="experiments/slow"))
    ended = wait_terminal(stub, "experiments/slow", timeout=30)
    states = {it.index: it.state for it in stub.ListIterations(
        experiment_pb2.ListIterationsRequest(parent="experiments/slow")).iterations}

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_CANCELED
    assert states[second.index] == experiment_pb2.ITERATION_STATE_CANCELED
    assert len(states) < 6


def test_unknown_dataset_is_not_found(stack):
    stub = experiment_stub(stack)
    target = ensure_target(stack, "it-cluster")
    experiment = classification_experiment("s3://automl/datasets/absent.csv", "y", target, iterations=2)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "absent.csv" in raised.value.details()


def test_unknown_compute_target_is_not_found(stack, iris_uri):
    stub = experiment_stub(stack)
    experiment = classification_experiment(iris_uri, "species", "computeTargets/no-such-cluster", iterations=2)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-cluster" in raised.value.details()


BAD_CONFIGS = [
    ({"iterations": 0}, "experiment.iterations"),
    ({"iterations": 1001}, "experiment.iterations"),
    ({"iterations": 2, "primary_metric": "r2_score"}, "experiment.primary_metric"),
    ({"iterations": 2, "max_concurrent_iterations": 0}, "experiment.max_concurrent_iterations"),
    ({"iterations": 2, "iteration_timeout_minutes": 0}, "experiment.iteration_timeout_minutes"),
    ({"iterations": 2, "blocked_models": list(catalog.ESTIMATORS[catalog.CLASSIFICATION])}, "experiment.blocked_models"),
]


@pytest.mark.parametrize("fields,field", BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
def test_bad_config_names_field(stack, iris_uri, fields, field):
    stub = experiment_stub(stack)
    fields = dict(fields)
    validation = fields.pop("validation", None)
    experiment = classification_experiment(iris_uri, "species", "computeTargets/it-cluster", **fields)
    if validation is not None:
        experiment.validation.CopyFrom(validation)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(raised.value)


def test_wrong_label_column_lists_columns(stack, iris_uri):
    stub = experiment_stub(stack)
    experiment = classification_experiment(iris_uri, "Species", ensure_target(stack, "it-cluster"), iterations=2)

    with pytest.raises(grpc.RpcError) as raised:
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=experiment))
    violations = field_violations(raised.value)
    assert "'Species'" in violations["experiment.dataset.label_column"]
    assert "petal length (cm)" in violations["experiment.dataset.label_column"]


def test_unknown_experiment_is_not_found(stack):
    stub = experiment_stub(stack)

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetExperiment(experiment_pb2.GetExperimentRequest(name="experiments/nothing-here"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_malformed_name_is_invalid(stack):
    stub = experiment_stub(stack)

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetIteration(experiment_pb2.GetIterationRequest(name="experiments/iris/iterations/x"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in field_violations(raised.value)


# 2,000 rows × 40 columns / 0.9 makes 88,889 cells, more than the 83,333 that a 0.5-minute budget
# cross-validates (10 million per hour), so that budget gets a holdout. Without a budget, 3 folds.
@pytest.mark.parametrize("budget_minutes, strategy", [(0.5, "10% stratified holdout"), (0.0, "3-fold stratified")])
def test_time_budget_chooses_validation(stack, store, budget_minutes, strategy):
    frame = slow_frame(rows=2000, features=40)
    uri = upload_frame(store, f"datasets/budget-{budget_minutes}.csv", frame)
    stub = experiment_stub(stack)
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="label"), compute_target=ensure_target(stack, "it-cluster"),
        task=pipeline_pb2.TASK_CLASSIFICATION, iterations=1, allowed_models=["LogisticRegression"],
        enable_voting_ensemble=False, enable_stack_ensemble=False)
    if budget_minutes:
        experiment.experiment_timeout_minutes = budget_minutes
    experiment_id = f"budget-validation-{int(budget_minutes * 10)}"

    created = stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id=experiment_id,
                                                                           experiment=experiment))
    wait_terminal(stub, created.name, timeout=120)
    iteration = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=created.name)).iterations[0]

    assert iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED, iteration.error
    assert iteration.validation_strategy.startswith(strategy)
    assert created.validation.validation_size == (0.1 if budget_minutes else 0.0)
