"""The quality benchmark's scoring, floor and report, without the stack or FLAML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score

from benchmarks.quality import held_out_score, load_bundled, run_floor, split
from benchmarks.quality_report import SECTION, Dataset, Outcome, render, summarize, write_section


class _Fixed:
    """A model whose held-out predictions are given up front."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def predict(self):
        return self.values

    def predict_proba(self):
        return self.values


def _dataset(name: str, shared: bool = True, task: str = "classification") -> Dataset:
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]})
    return Dataset(name, task, "y", frame, shared)


def test_binary_score_uses_second_class():
    labels = pd.Series(["good", "bad", "good", "bad"])
    probabilities = [[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]
    score = held_out_score("classification", labels, _Fixed(probabilities), ["bad", "good"])
    assert score == pytest.approx(roc_auc_score(labels == "good", [0.8, 0.1, 0.6, 0.3]))
    assert score == 1.0


def test_multiclass_score_is_weighted_ovr():
    labels = pd.Series([0, 1, 2, 2, 1, 0, 2])
    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), size=len(labels))
    score = held_out_score("classification", labels, _Fixed(probabilities), [0, 1, 2])
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="weighted")
    assert score == pytest.approx(expected)


def test_regression_score_is_r2():
    truth = pd.Series([1.0, 2.0, 3.0, 5.0])
    predictions = [1.1, 1.9, 3.3, 4.4]
    assert held_out_score("regression", truth, _Fixed(predictions), None) == pytest.approx(
        r2_score(truth, predictions))


def test_split_is_stratified_and_fixed():
    dataset = load_bundled("iris")
    train, test = split(dataset)
    again_train, _ = split(dataset)
    assert len(test) == 38
    assert list(train.index) == list(again_train.index)
    assert test["target"].value_counts().min() >= 12


def test_floor_handles_text_missing_and_many_categories():
    rng = np.random.default_rng(0)
    rows = 600
    frame = pd.DataFrame({
        "amount": rng.normal(size=rows),
        "home": rng.choice(["rent", "owner", None], size=rows),
        "agent": [f"agent_{i}" for i in rng.integers(0, 400, size=rows)],
    })
    frame.loc[::7, "amount"] = np.nan
    frame["status"] = np.where(frame["amount"].fillna(0) + (frame["home"] == "rent") > 0.5, "good", "bad")
    dataset = Dataset("synthetic", "classification", "status", frame, shared=True)
    train, test = split(dataset)
    outcome = run_floor(dataset, train, test)
    assert outcome.error == ""
    assert outcome.score > 0.8


def test_floor_matches_plain_boosting_without_text():
    dataset = load_bundled("diabetes")
    train, test = split(dataset)
    outcome = run_floor(dataset, train, test)
    plain = HistGradientBoostingRegressor(random_state=0).fit(train.drop(columns="target"), train["target"])
    assert outcome.score == pytest.approx(r2_score(test["target"], plain.predict(test.drop(columns="target"))))


def test_summary_counts_wins_and_floor():
    results = [
        (_dataset("a"), Outcome(0.9, 10), Outcome(0.8, 10), Outcome(0.85)),
        (_dataset("b"), Outcome(0.7, 10), Outcome(0.75, 10), Outcome(0.72)),
        (_dataset("c", shared=False), Outcome(error="failed: FAILED"), Outcome(0.9, 10), Outcome(0.9)),
    ]
    lines = summarize(results, 60)
    assert lines[0] == "- Ours >= FLAML on 1 of 2 shared data sets."
    assert lines[1] == "- Mean over the shared data sets: ours 0.8000, FLAML 0.7750."
    assert lines[2] == "- Below the floor: b; ours has no score on c."
    assert "not evaluated" in lines[3]


def test_summary_verdict_on_six_shared_sets():
    results = [(_dataset(f"s{i}"), Outcome(0.9, 60), Outcome(0.8, 60), Outcome(0.7)) for i in range(6)]
    assert summarize(results, 60)[-1].endswith(": met.")
    results[0] = (_dataset("s0"), Outcome(error="failed: FAILED"), Outcome(0.8, 60), Outcome(0.7))
    assert summarize(results, 60)[-1].endswith(": not met.")


def test_render_marks_failures_in_table():
    results = [(_dataset("credit_data"), Outcome(error="failed: FAILED", seconds=3, note="no iteration succeeded"),
                Outcome(0.84, 61), Outcome(0.83))]
    text = render(results, 60, "python -m benchmarks.quality", "started now")
    assert "| credit_data | binary | 4 | failed: FAILED | 0.8400 | 0.8300 | 3 | 61 | n/a |" in text
    assert "- credit_data, ours: no iteration succeeded" in text


def test_write_section_replaces_only_its_section(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Service overhead on the demo's experiment\n\nold overhead\n\n"
                      f"{SECTION}\n\nold quality\n\n## Later section\n\nkept\n")
    write_section(output, f"{SECTION}\n\nnew quality\n")
    text = output.read_text()
    assert "old overhead" in text
    assert "old quality" not in text
    assert "new quality" in text
    assert text.index("new quality") < text.index("## Later section")
    assert text.endswith("kept\n")


def test_write_section_appends_to_new_file(tmp_path):
    output = tmp_path / "docs" / "benchmarks.md"
    write_section(output, f"{SECTION}\n\nquality\n")
    assert output.read_text() == f"# Benchmarks\n\n{SECTION}\n\nquality\n"
