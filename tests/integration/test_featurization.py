"""Featurization summary, data guardrails and raw-row predictions on real tables with strings and gaps.

The data are 1,000-row samples of credit_data and hotel_rates (see
tests/data/README.md): text categoricals, missing numbers and categories,
high-cardinality columns and a date column, as users upload them.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

from automl.common.models import loads_model
from automl.v1 import experiment_pb2, featurization_pb2, pipeline_pb2
from tests.integration.helpers import ensure_target, experiment_stub, upload_frame, wait_terminal

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
DONE = featurization_pb2.GUARDRAIL_STATUS_DONE
PASSED = featurization_pb2.GUARDRAIL_STATUS_PASSED

CASES = {
    "credit_data": ("Status", pipeline_pb2.TASK_CLASSIFICATION, "AUC_weighted"),
    "hotel_rates": ("avg_price_per_room", pipeline_pb2.TASK_REGRESSION, "r2_score"),
}


@pytest.fixture(scope="module")
def run_case(stack, store):
    """Return a function that runs a short experiment on 75% of a sample, once per data set.

    It returns the data set's name, the ended experiment, its best model and the held-out rows.
    """
    done = {}

    def run(name: str):
        if name not in done:
            done[name] = _run(stack, store, name)
        return done[name]

    return run


@pytest.fixture(params=sorted(CASES))
def featurized(request, run_case):
    return run_case(request.param)


def _run(stack, store, name: str):
    label, task, metric = CASES[name]
    frame = pd.read_csv(DATA / f"{name}_sample.csv")
    stratify = frame[label] if task == pipeline_pb2.TASK_CLASSIFICATION else None
    train, test = train_test_split(frame, test_size=0.25, stratify=stratify, random_state=0)
    uri = upload_frame(store, f"datasets/featurization-{name}.csv", train)

    stub = experiment_stub(stack)
    experiment_id = "featurization-" + name.replace("_", "-")
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column=label),
        compute_target=ensure_target(stack, "featurization-cluster"), task=task, primary_metric=metric,
        iterations=2, max_concurrent_iterations=2, preprocess=True, seed=0,
        allowed_models=["LightGBM"], enable_voting_ensemble=False, enable_stack_ensemble=False)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id=experiment_id, experiment=experiment))
    ended = wait_terminal(stub, f"experiments/{experiment_id}", timeout=240)
    best = stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=ended.name))
    model = loads_model(store.get_bytes(best.model_uri))
    return name, ended, model, test


def _columns(experiment) -> dict[str, featurization_pb2.ColumnSummary]:
    return {column.column: column for column in experiment.featurization.columns}


def _guardrails(experiment) -> dict[str, featurization_pb2.Guardrail]:
    return {guardrail.name: guardrail for guardrail in experiment.guardrails}


def test_summary_lists_every_raw_column(featurized):
    name, experiment, _, test = featurized
    label = CASES[name][0]

    assert experiment.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, experiment.error
    columns = _columns(experiment)
    assert list(columns) == [column for column in test.columns if column != label]
    assert experiment.featurization.engineered_feature_count == sum(
        column.engineered_feature_count for column in columns.values() if not column.dropped)
    for column in columns.values():
        assert column.detected_type in {"numeric", "categorical", "datetime", "text", "id"}
        assert column.dropped or column.engineered_feature_count > 0, column


def test_credit_data_columns_and_guardrails(run_case):
    _, experiment, _, _ = run_case("credit_data")
    columns, guardrails = _columns(experiment), _guardrails(experiment)

    assert columns["Home"].detected_type == "categorical"
    assert "OneHotEncoder" in columns["Home"].transformations
    assert columns["Income"].detected_type == "numeric"
    assert columns["Income"].missing_count > 0
    assert columns["Income"].missing_fill == "median"

    balance = guardrails["class_balance"]
    assert balance.status == PASSED
    assert balance.details["smallest_class"] == "bad"
    assert 0.2 < float(balance.details["smallest_class_share"]) < 0.35
    missing = guardrails["missing_values"]
    assert missing.status == DONE
    assert "Income" in missing.details
    assert "median" in missing.details["Income"]
    # 750 training rows: Azure AutoML's rule gives 10 folds below 1,000 rows.
    assert "10-fold" in guardrails["validation_split"].details["strategy"]


def test_hotel_rates_columns_and_guardrails(run_case):
    _, experiment, _, _ = run_case("hotel_rates")
    columns, guardrails = _columns(experiment), _guardrails(experiment)

    assert columns["arrival_date"].detected_type == "datetime"
    assert "DateTimeExpander" in columns["arrival_date"].transformations
    assert columns["country"].missing_count > 0
    assert columns["country"].missing_fill == "most frequent"
    assert "class_balance" not in guardrails
    assert guardrails["missing_values"].status == DONE
    assert "country" in guardrails["missing_values"].details
    high = guardrails["high_cardinality"]
    assert high.status == DONE
    # In 750 rows country, agent and company each have dozens of distinct values.
    assert {"country", "agent", "company"} & set(high.details)


def test_best_model_predicts_raw_held_out_rows(featurized):
    name, _, model, test = featurized
    label, task, _ = CASES[name]
    rows = test.drop(columns=label)
    assert rows.isna().any().any(), "the held-out rows should include missing values"

    if task == pipeline_pb2.TASK_CLASSIFICATION:
        probabilities = model.pipeline.predict_proba(rows)
        positive = list(model.pipeline.classes_).index("good")
        score = roc_auc_score(test[label] == "good", probabilities[:, positive])
        # On the full data set boosted trees reach about 0.83 held-out AUC. Trained on 750 rows they stay well above 0.5.
        assert score > 0.7
    else:
        score = r2_score(test[label], model.pipeline.predict(rows))
        assert score > 0.6
    assert np.isfinite(score)
