"""The Featurizer: type detection, drops, imputation, encodings, names and a skops round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.cli.experiments import featurization_text
from automl.common import catalog
from automl.common.featurization import Featurizer
from automl.common.models import StoredModel, dumps_model, loads_model
from automl.v1 import experiment_pb2
from services.trainer.guardrails import compute_guardrails, featurization_message, guardrail_messages
from services.trainer.pipelines import build_pipeline

ROWS = 120
AWKWARD = 'Home, "type": [a] {b}'
WORDS = ["late", "payment", "good", "customer", "loan", "paid", "early", "bank", "account", "card", "fee", "risk"]


def raw_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Raw columns of every kind, shaped like a credit data set with ids, dates and notes."""
    rng = np.random.default_rng(seed)
    income = rng.normal(150, 40, rows).round(1)
    income[::9] = np.nan
    frame = pd.DataFrame({
        "row id": np.arange(rows),
        "customer": [f"C{i:05d}" for i in rng.permutation(rows)],
        "Income": income,
        "Price": [f"{v:,}" for v in rng.integers(500, 5000, rows)],
        AWKWARD: rng.choice(["rent", "owner", "parents"], rows),
        "city": [f"city{v}" for v in rng.integers(0, 50, rows)],
        "signed": [f"2024-{m:02d}-{d:02d} {h:02d}:30" for m, d, h in
                   zip(rng.integers(1, 13, rows), rng.integers(1, 28, rows), rng.integers(0, 24, rows))],
        "notes": [" ".join(rng.choice(WORDS, 6)) for _ in range(rows)],
        "empty": np.nan,
        "country": "es",
    })
    frame.loc[3::11, AWKWARD] = None
    return frame


def labels(frame: pd.DataFrame) -> np.ndarray:
    score = frame["Income"].fillna(150).to_numpy() + np.where(frame[AWKWARD] == "owner", 60, 0)
    return np.where(score > 170, "bad", "good")


@pytest.fixture(scope="module")
def fitted():
    frame = raw_frame()
    featurizer = Featurizer()
    matrix = featurizer.fit_transform(frame, labels(frame))
    return frame, featurizer, matrix, {entry["column"]: entry for entry in featurizer.summary_}


def test_detects_types_and_drops_useless_columns(fitted):
    _, _, _, summary = fitted
    table = {column: (entry["detected_type"], entry["dropped"]) for column, entry in summary.items()}
    assert table == {
        "row id": ("id", True), "customer": ("id", True), "Income": ("numeric", False),
        "Price": ("numeric", False), AWKWARD: ("categorical", False), "city": ("categorical", False),
        "signed": ("datetime", False), "notes": ("text", False), "empty": ("numeric", True),
        "country": ("categorical", True),
    }
    assert summary["empty"]["drop_reason"] == "all values missing"
    assert summary["country"]["drop_reason"].startswith("constant")
    assert summary["row id"]["drop_reason"].startswith("ID-like")
    assert summary["Price"]["transformations"] == ["NumberParser"]
    assert all(summary[c]["engineered_feature_count"] == 0 for c in ("row id", "customer", "empty", "country"))


def test_numbers_in_strings_are_parsed(fitted):
    frame, featurizer, matrix, _ = fitted
    names = list(featurizer.get_feature_names_out())
    parsed = frame["Price"].str.replace(",", "").astype(float).to_numpy()
    np.testing.assert_array_equal(matrix[:, names.index("Price")], parsed)


def test_median_imputation_with_missing_indicator(fitted):
    frame, featurizer, _, summary = fitted
    names = list(featurizer.get_feature_names_out())
    assert summary["Income"]["missing_count"] == frame["Income"].isna().sum() > 0
    assert summary["Income"]["missing_fill"] == "median"
    assert summary["Income"]["transformations"] == ["MedianImputer", "MissingIndicator"]
    assert summary["Income"]["engineered_feature_count"] == 2

    rows = featurizer.transform(pd.DataFrame({**{c: frame[c].iloc[:2] for c in frame}, "Income": [np.nan, 10.0]}))
    assert rows[0, names.index("Income")] == pytest.approx(frame["Income"].median())
    assert rows[:, names.index("Income_missing")].tolist() == [1.0, 0.0]
    assert rows[1, names.index("Income")] == 10.0
    # Columns without missing values in fit get no indicator.
    assert "Price_missing" not in names


def test_awkward_names_are_kept_verbatim(fitted):
    _, featurizer, matrix, summary = fitted
    names = list(featurizer.get_feature_names_out())
    assert summary[AWKWARD]["transformations"] == ["ModeImputer", "OneHotEncoder"]
    assert summary[AWKWARD]["missing_fill"] == "most frequent"
    assert [n for n in names if n.startswith(AWKWARD)] == [f"{AWKWARD}_{v}" for v in ("owner", "parents", "rent")]
    assert matrix.shape == (ROWS, len(names))
    assert featurization_message(featurizer.summary_).columns[4].column == AWKWARD


def test_high_cardinality_target_or_frequency_encoding(fitted):
    frame, _, _, summary = fitted
    assert summary["city"]["distinct_count"] > 30
    assert summary["city"]["transformations"] == ["TargetEncoder"]
    assert summary["city"]["engineered_feature_count"] == 1

    unsupervised = Featurizer().fit(frame)
    assert {e["column"]: e for e in unsupervised.summary_}["city"]["transformations"] == ["FrequencyEncoder"]
    city = list(unsupervised.get_feature_names_out()).index("city_frequency")
    shares = unsupervised.transform(frame)[:, city]
    np.testing.assert_allclose(shares, frame["city"].map(frame["city"].value_counts(normalize=True)))


def test_datetime_expansion(fitted):
    _, featurizer, _, summary = fitted
    names = list(featurizer.get_feature_names_out())
    assert [n for n in names if n.startswith("signed_")] == [
        "signed_year", "signed_month", "signed_day", "signed_day_of_week", "signed_day_of_year", "signed_hour",
        "signed_minute"]
    row = featurizer.transform(raw_frame().iloc[:1].assign(signed="2025-03-14 17:45"))[0]
    values = [row[names.index(f"signed_{p}")] for p in ("year", "month", "day", "day_of_week", "hour", "minute")]
    assert values == [2025, 3, 14, 4, 17, 45]
    assert summary["signed"]["transformations"] == ["DateTimeParser", "DateTimeExpander"]


def test_text_tfidf_is_bounded(fitted):
    frame, _, _, summary = fitted
    assert summary["notes"]["engineered_feature_count"] == len(WORDS)
    small = Featurizer(max_text_features=5).fit(frame, labels(frame))
    names = [n for n in small.get_feature_names_out() if n.startswith("notes_tfidf_")]
    assert len(names) == 5
    assert all(n.removeprefix("notes_tfidf_") in WORDS for n in names)


def test_guardrails_report_imputation_and_encoding(fitted):
    frame, featurizer, _, _ = fitted
    y = labels(frame)
    guardrails = {g["name"]: g for g in compute_guardrails(catalog.CLASSIFICATION, y, "3-fold cross validation",
                                                           frame, featurizer.summary_)}
    assert [g["status"] for g in guardrails.values()] == ["PASSED", "PASSED", "DONE", "DONE"]
    assert guardrails["missing_values"]["details"]["Income"] == f"{frame['Income'].isna().sum()} missing, median"
    assert guardrails["missing_values"]["details"]["empty"].endswith("column dropped")
    assert set(guardrails["high_cardinality"]["details"]) == {"city"}
    assert guardrail_messages(list(guardrails.values()))[2].status == 2  # GUARDRAIL_STATUS_DONE

    rare = np.array(["yes"] * 3 + ["no"] * 97)
    balance = compute_guardrails(catalog.CLASSIFICATION, rare, "holdout", frame.iloc[:100], None)[1]
    assert balance["status"] == "ALERTED"
    assert balance["details"]["smallest_class_rows"] == "3"


def test_skops_round_trip_predicts_raw_rows():
    frame = raw_frame()
    pipeline = build_pipeline(catalog.CLASSIFICATION, "StandardScaler", "LogisticRegression", {}, seed=3,
                              features=frame).fit(frame, labels(frame))
    model = StoredModel(pipeline=pipeline, task="classification", feature_names=list(frame.columns),
                        class_labels=["bad", "good"])
    loaded = loads_model(dumps_model(model)).pipeline

    new = raw_frame(rows=4, seed=9)
    new[AWKWARD] = ["castle", None, "rent", "owner"]
    new.loc[0, "city"] = "nowhere"
    new.loc[1, ["Income", "signed", "notes", "Price"]] = [np.nan, None, None, None]
    np.testing.assert_allclose(loaded.predict_proba(new), pipeline.predict_proba(new))
    assert set(loaded.predict(new)) <= {"bad", "good"}
    assert list(loaded[0].get_feature_names_out()) == list(pipeline[0].get_feature_names_out())


def test_no_usable_column_raises():
    frame = pd.DataFrame({"empty": [np.nan] * 30, "same": ["a"] * 30, "key": [f"k{i}" for i in range(30)]})
    with pytest.raises(ValueError, match="no column is usable.*empty: all values missing"):
        Featurizer().fit(frame)


def test_cli_prints_featurization_and_guardrails(fitted):
    frame, featurizer, _, _ = fitted
    guardrails = compute_guardrails(catalog.CLASSIFICATION, labels(frame), "holdout", frame, featurizer.summary_)
    experiment = experiment_pb2.Experiment(name="experiments/e1", featurization=featurization_message(
        featurizer.summary_), guardrails=guardrail_messages(guardrails))

    text = featurization_text(experiment)
    lines = text.splitlines()
    assert lines[0].split() == ["COLUMN", "TYPE", "DROPPED", "FEATURES", "TRANSFORMATIONS"]
    assert any(line.startswith("row id") and "yes: ID-like" in line for line in lines)
    assert f"10 columns became {len(featurizer.get_feature_names_out())} features." in lines
    assert any(line.split()[:2] == ["missing_values", "DONE"] for line in lines)
    assert "no data report yet" in featurization_text(experiment_pb2.Experiment(name="experiments/e2"))
