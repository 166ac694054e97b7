"""Portfolio selection: regrets, greedy order, and the portfolio file against its pool and suite."""

import json

import numpy as np
import pandas as pd
import pytest

from automl.common import catalog
from benchmarks import portfolio
from benchmarks.portfolio_candidates import CLASSIFICATION, REGRESSION, candidates
from benchmarks.portfolio_suite import BENCHMARK_NAMES, SUITE
from benchmarks.quality import BUNDLED
from services.orchestrator import search_space


def _scores(table: dict[str, list[float]], datasets: list[str]) -> pd.DataFrame:
    rows = [{"dataset": d, "candidate": c, "score": s} for c, values in table.items() for d, s in zip(datasets, values)]
    return pd.DataFrame(rows)


def test_regrets_are_spread_normalized_and_capped():
    scores = _scores({"a": [0.90, 0.5], "b": [0.80, 0.6], "c": [0.60, float("nan")]}, ["easy", "hard"])

    regret = portfolio.regrets(scores)

    # easy: best 0.90 and median 0.80 make a spread of 0.10. So c is 3 spreads behind, and capped.
    assert regret.loc["easy"].to_dict() == pytest.approx({"a": 0.0, "b": 1.0, "c": portfolio.REGRET_CAP})
    # hard: a failed fit counts as the cap.
    assert regret.loc["hard", "c"] == portfolio.REGRET_CAP
    assert regret.loc["hard", "b"] == 0.0


def test_greedy_selection_weighs_gain_by_cost():
    regret = pd.DataFrame({"left": [0.0, 0.0, 2.0, 2.0], "right": [2.0, 2.0, 0.0, 0.0], "middle": [0.5] * 4},
                          index=["d1", "d2", "d3", "d4"])
    cost = pd.Series({"left": 3.0, "right": 1.0, "middle": 2.0})

    chosen = portfolio.select(regret, cost, size=3)

    assert [name for name, _ in chosen] == ["middle", "right", "left"]
    assert [after for _, after in chosen] == pytest.approx([0.5, 0.25, 0.0])


def test_relative_cost_geometric_mean():
    scores = pd.DataFrame({"dataset": ["d1", "d1", "d2", "d2"], "candidate": ["a", "b", "a", "b"],
                           "seconds": [1.0, 4.0, 2.0, 2.0]})

    cost = portfolio.relative_cost(scores)

    # d1 has a median of 2.5, so a is at 0.4 and b at 1.6. Both are at 1.0 on d2.
    assert cost["a"] == pytest.approx(np.sqrt(0.4))
    assert cost["b"] == pytest.approx(np.sqrt(1.6))


@pytest.mark.parametrize("task, code", [(CLASSIFICATION, catalog.CLASSIFICATION), (REGRESSION, catalog.REGRESSION)])
def test_portfolio_file_matches_pool(task, code):
    document = json.loads(search_space.PORTFOLIO_FILE.read_text())
    pool = {candidate.name: candidate for candidate in candidates(task)}

    assert document[task], "the portfolio has entries"
    for entry in document[task]:
        candidate = pool[entry["name"]]
        assert (entry["scaler"], entry["estimator"], entry["hyperparameters"]) == (
            candidate.scaler, candidate.estimator, candidate.hyperparameters)
        assert entry["estimator"] in catalog.ESTIMATORS[code]
    assert [e[1] for e in search_space.PORTFOLIOS[code]] == [e["estimator"] for e in document[task]]


def test_suite_excludes_benchmark_data():
    benchmark = set(BUNDLED) | {"phoneme", "segment", "credit_data", "concrete", "hotel_rates", "diamonds"}

    assert benchmark <= BENCHMARK_NAMES
    assert not {entry.name.lower() for entry in SUITE} & BENCHMARK_NAMES
