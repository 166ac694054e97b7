"""VotingEnsemble and StackEnsemble as the last iterations of a real experiment."""

import io

import grpc
import numpy as np
import pytest

from automl.common import catalog
from automl.common.ensembles import StackEnsembleModel, VotingEnsembleModel
from automl.common.models import loads_model
from automl.v1 import experiment_pb2, explainer_pb2, explainer_pb2_grpc, pipeline_pb2
from tests.integration.helpers import ensure_target, experiment_stub, iris_frame, upload_frame, wait_terminal

pytestmark = pytest.mark.integration

SPECIES = {"setosa", "versicolor", "virginica"}


def iris_experiment(stack, store, experiment_id: str, **fields) -> experiment_pb2.Experiment:
    """Upload iris and return a 2-node experiment on it with both ensembles enabled (the default)."""
    uri = upload_frame(store, f"datasets/{experiment_id}.csv", iris_frame())
    return experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="species"),
        compute_target=ensure_target(stack, "ensemble-cluster"), task=pipeline_pb2.TASK_CLASSIFICATION,
        validation=pipeline_pb2.Validation(n_cross_validations=3), primary_metric="accuracy",
        max_concurrent_iterations=2,
        # Fast estimators keep the tests short; the ensembles do not depend on which ones run.
        allowed_models=["LogisticRegression", "KNN", "GaussianNaiveBayes"], **fields)


@pytest.fixture(scope="module")
def ensemble_experiment(stack, store):
    """A 5-iteration iris experiment with both ensembles enabled (the default), run to its end."""
    stub = experiment_stub(stack)
    experiment = iris_experiment(stack, store, "iris-ensembles", seed=3, iterations=5)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="iris-ensembles",
                                                                 experiment=experiment))
    ended = wait_terminal(stub, "experiments/iris-ensembles", timeout=180)
    iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=ended.name)).iterations
    return stub, ended, list(iterations)


def test_last_iterations_are_ensembles(ensemble_experiment):
    _, experiment, iterations = ensemble_experiment

    assert experiment.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED
    assert [it.index for it in iterations] == [0, 1, 2, 3, 4]
    assert [it.pipeline.description for it in iterations[3:]] == ["VotingEnsemble", "StackEnsemble"]
    for iteration in iterations:
        assert iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED, iteration.error
        assert set(iteration.metrics) == set(catalog.METRICS[catalog.CLASSIFICATION])
    members = [member.iteration for member in iterations[3].pipeline.ensemble_members]
    assert sorted(members) == [0, 1, 2]


def test_searched_iterations_store_oof_predictions(ensemble_experiment, store):
    _, _, iterations = ensemble_experiment

    for iteration in iterations[:3]:
        assert iteration.oof_predictions_uri.endswith("oof_predictions.npz")
        with np.load(io.BytesIO(store.get_bytes(iteration.oof_predictions_uri)), allow_pickle=False) as arrays:
            assert arrays["predictions"].shape == (150, 3)
            assert arrays["row_indices"].tolist() == list(range(150))
            assert set(arrays["classes"].tolist()) == SPECIES


def test_ensemble_models_predict_raw_rows(ensemble_experiment, store):
    stub, experiment, iterations = ensemble_experiment
    rows = iris_frame().drop(columns="species")
    labels = iris_frame()["species"].to_numpy()

    voting = loads_model(store.get_bytes(iterations[3].model_uri))
    stack = loads_model(store.get_bytes(iterations[4].model_uri))
    assert isinstance(voting.pipeline, VotingEnsembleModel)
    assert isinstance(stack.pipeline, StackEnsembleModel)
    for model in (voting, stack):
        assert model.feature_names == list(rows.columns)
        assert np.mean(model.pipeline.predict(rows) == labels) > 0.9

    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=experiment.name))
    assert best.score == max(it.score for it in iterations)
    model = loads_model(store.get_bytes(best.model_uri))
    assert set(model.pipeline.predict(rows.iloc[::10])) <= SPECIES


def test_explainer_explains_ensemble(ensemble_experiment, stack, store):
    _, experiment, iterations = ensemble_experiment
    stub = explainer_pb2_grpc.ExplainerServiceStub(grpc.insecure_channel(stack.address("explainer")))
    request = explainer_pb2.ExplainModelRequest(
        model_uri=iterations[4].model_uri, dataset=experiment.dataset, task=experiment.task,
        output_uri=store.uri("explanations/iris-ensembles/"), max_rows=5, background_rows=10, seed=1)
    explanation = stub.ExplainModel(request, timeout=120)

    assert explanation.explainer == "permutation"
    assert set(explanation.feature_names) == set(iris_frame().columns) - {"species"}
    assert sorted(c.class_label for c in explanation.per_class_importance) == sorted(SPECIES)


def test_time_budget_runs_ensembles_together(stack, store):
    stub = experiment_stub(stack)
    experiment = iris_experiment(stack, store, "iris-budget", seed=4, iterations=1000,
                                 experiment_timeout_minutes=0.5)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="iris-budget", experiment=experiment))
    ended = wait_terminal(stub, "experiments/iris-budget", timeout=120)
    iterations = list(stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=ended.name,
                                                                               page_size=1000)).iterations)

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, ended.error
    assert 2 < len(iterations) < 1000
    voting, stacked = iterations[-2:]
    assert [voting.pipeline.description, stacked.pipeline.description] == ["VotingEnsemble", "StackEnsemble"]
    assert voting.state == stacked.state == experiment_pb2.ITERATION_STATE_SUCCEEDED

    def span(iteration):
        start = iteration.start_time.ToNanoseconds() / 1e9
        return start, start + iteration.duration.ToNanoseconds() / 1e9

    # Two nodes: the ensembles run at the same time rather than one after the other.
    (voting_start, voting_end), (stack_start, stack_end) = span(voting), span(stacked)
    assert voting_start < stack_end
    assert stack_start < voting_end
    # The 30 s budget, plus the 5 s an iteration may overrun it by, plus 3 s for scheduling.
    elapsed = (ended.end_time.ToNanoseconds() - ended.create_time.ToNanoseconds()) / 1e9
    assert elapsed < 30 + 5 + 3
