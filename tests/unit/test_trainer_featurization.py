"""RunIteration with preprocess: featurization summary and guardrails in the response."""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.common.models import loads_model
from automl.v1 import featurization_pb2
from tests.unit.test_trainer_service import _request, _upload_csv, iris_uri, trainer  # noqa: F401 (fixtures)


def test_preprocess_reports_featurization_and_guardrails(trainer, store):  # noqa: F811
    stub, _ = trainer
    rng = np.random.default_rng(1)
    rows = 200
    frame = pd.DataFrame({
        "id": np.arange(rows),
        "Home Type": rng.choice(["rent", "owner", "parents"], rows),
        "Income [k]": rng.normal(150, 40, rows).round(1),
        "opened": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
    })
    frame.loc[::8, "Income [k]"] = np.nan
    frame.loc[2::15, "Home Type"] = None
    # 6 of 200 rows (3%) are in the minority class.
    frame["Status"] = "good"
    frame.loc[rng.choice(rows, 6, replace=False), "Status"] = "bad"
    uri = _upload_csv(store, "datasets/unit-trainer/credit-like.csv", frame)

    response = stub.RunIteration(_request(store, "experiments/featurized/iterations/0", uri, "Status",
                                          estimator="RandomForest", hyperparameters={"n_estimators": 20},
                                          folds=3, preprocess=True), timeout=60)

    columns = {c.column: c for c in response.featurization.columns}
    assert list(columns) == ["id", "Home Type", "Income [k]", "opened"]
    assert columns["id"].dropped
    assert columns["id"].detected_type == "id"
    assert columns["Income [k]"].missing_count == 25
    assert columns["Income [k]"].missing_fill == "median"
    assert columns["opened"].detected_type == "datetime"
    assert columns["opened"].engineered_feature_count == 5
    assert response.featurization.engineered_feature_count == 3 + 2 + 5

    guardrails = {g.name: g for g in response.guardrails}
    assert list(guardrails) == ["validation_split", "class_balance", "missing_values", "high_cardinality"]
    assert guardrails["class_balance"].status == featurization_pb2.GUARDRAIL_STATUS_ALERTED
    assert guardrails["class_balance"].details["smallest_class"] == "bad"
    assert guardrails["class_balance"].details["smallest_class_share"] == "0.0300"
    assert guardrails["missing_values"].status == featurization_pb2.GUARDRAIL_STATUS_DONE
    assert guardrails["missing_values"].details["Home Type"] == "14 missing, most frequent"
    assert guardrails["validation_split"].details["strategy"] == response.validation_strategy

    model = loads_model(store.get_bytes(response.model_uri))
    raw = pd.DataFrame({"id": [5000], "Home Type": ["boat"], "Income [k]": [np.nan], "opened": ["2031-02-03"]})
    assert model.pipeline.predict(raw)[0] in {"good", "bad"}


def test_guardrails_without_preprocess(trainer, store, iris_uri):  # noqa: F811
    stub, _ = trainer
    response = stub.RunIteration(_request(store, "experiments/plain/iterations/0", iris_uri, "species",
                                          estimator="GaussianNaiveBayes", folds=3), timeout=60)

    assert not response.HasField("featurization")
    statuses = {g.name: g.status for g in response.guardrails}
    assert statuses == {name: featurization_pb2.GUARDRAIL_STATUS_PASSED for name in
                        ("validation_split", "class_balance", "missing_values", "high_cardinality")}
