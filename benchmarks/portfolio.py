"""Choose the search's starting portfolio on data sets outside the quality benchmark.

Steps, each reproducible with seed 0:

1. Cross-validate every candidate of `benchmarks.portfolio_candidates` on
   every data set of `benchmarks.portfolio_suite` (3 folds, stratified for
   classification) through the trainer's own pipeline builder, featurizer
   included, with one core per fit. Scores: ROC AUC for binary,
   one-vs-rest AUC weighted by class frequency for multiclass, r2 for
   regression. The scores and fit seconds go to a CSV file, so a rerun only
   evaluates the pairs it is missing.
2. Turn scores into regrets per data set: (best - score) / (best - median),
   where best and median are over the candidates on that data set, capped at
   `REGRET_CAP` (a failed fit counts as the cap). Dividing by the spread
   between the best and the median puts easy and hard data sets on one scale.
3. Greedy, cost-aware selection. This is auto-sklearn 2.0's portfolio
   construction with the gain weighed by cost. It starts with no entry,
   where every data set is at the cap. Each step adds the candidate with
   the largest gain per cost, until the portfolio has `--size` entries.
   The gain is how much the candidate lowers the mean over data sets of
   the best regret reached so far. The cost is the candidate's relative fit
   time to the power `COST_EXPONENT`, so a candidate four times as slow
   needs twice the gain. Ties go to the cheaper candidate. The search tries
   the entries in the selection order, so cheap strong entries come first
   and a short time budget already ends with a good model.
4. Check how well the procedure generalizes: for each data set, select a
   portfolio on the others and measure the regret it reaches on the one left
   out, next to the regret of LightGBM's defaults alone.

Writes `services/orchestrator/portfolio.json` (read by the search) and
`docs/portfolio.md`. Usage:
`python -m benchmarks.portfolio [--size 10] [--cost-exponent 0.5] [--jobs 2] [--scores FILE] [--select-only]`.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

from automl.common import catalog
from benchmarks.portfolio_candidates import CLASSIFICATION, REGRESSION, Candidate, candidates
from benchmarks.portfolio_report import render, write_portfolio
from benchmarks.portfolio_suite import SuiteData, load_suite

REPO = Path(__file__).resolve().parents[1]
SCORES = REPO / "benchmarks" / "portfolio_scores.csv"
FOLDS = 3
SEED = 0
REGRET_CAP = 2.0
# Smallest spread used to normalize regrets, so that a data set on which every candidate ties does not
# turn tiny score differences into large regrets.
MIN_SPREAD = 1e-3
BASELINE = "lightgbm_default"
COST_EXPONENT = 0.5
TASK_CODES = {name: code for code, name in catalog.TASK_NAMES.items()}


def _scoring(data: SuiteData) -> str:
    if data.task == REGRESSION:
        return "r2"
    return "roc_auc" if data.labels.nunique() == 2 else "roc_auc_ovr_weighted"


def evaluate(data: SuiteData, candidate: Candidate) -> dict:
    """Cross-validate one candidate on one data set; a failure gives a NaN score and the error."""
    from services.trainer.pipelines import build_pipeline

    warnings.filterwarnings("ignore")
    folds = (StratifiedKFold if data.task == CLASSIFICATION else KFold)(FOLDS, shuffle=True, random_state=SEED)
    pipeline = build_pipeline(TASK_CODES[data.task], candidate.scaler, candidate.estimator,
                              candidate.hyperparameters, seed=SEED, cores=1, features=data.features)
    started = time.perf_counter()
    try:
        result = cross_validate(pipeline, data.features, data.labels, cv=folds, scoring=_scoring(data),
                                error_score="raise")
        score, error = float(np.mean(result["test_score"])), ""
    except Exception as failure:  # A candidate that cannot fit a data set is a result, not a reason to stop.
        score, error = float("nan"), f"{type(failure).__name__}: {failure}"[:200]
    return {"task": data.task, "dataset": data.name, "candidate": candidate.name, "score": score,
            "seconds": time.perf_counter() - started, "error": error}


def evaluate_missing(suite: list[SuiteData], scores_path: Path, jobs: int) -> pd.DataFrame:
    """Evaluate the (data set, candidate) pairs not yet in `scores_path` and append them to it."""
    known = pd.read_csv(scores_path) if scores_path.exists() else pd.DataFrame(
        columns=["task", "dataset", "candidate", "score", "seconds", "error"])
    done = set(zip(known["dataset"], known["candidate"]))
    pairs = [(data, candidate) for data in suite for candidate in candidates(data.task)
             if (data.name, candidate.name) not in done]
    print(f"{len(pairs)} pairs to evaluate, {len(done)} already in {scores_path}", flush=True)
    rows = []
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(evaluate)(data, candidate) for data, candidate in pairs)
    for count, row in enumerate(results, start=1):
        rows.append(row)
        print(f"[{count}/{len(pairs)}] {row['dataset']} {row['candidate']}: {row['score']:.4f} "
              f"in {row['seconds']:.1f} s {row['error']}", flush=True)
        if count % 20 == 0 or count == len(pairs):
            pd.concat([known, pd.DataFrame(rows)]).to_csv(scores_path, index=False)
    return pd.concat([known, pd.DataFrame(rows)]) if rows else known


def regrets(scores: pd.DataFrame) -> pd.DataFrame:
    """Data sets × candidates matrix of capped, spread-normalized regrets."""
    table = scores.pivot(index="dataset", columns="candidate", values="score").astype(float)
    best = table.max(axis=1)
    spread = (best - table.median(axis=1)).clip(lower=MIN_SPREAD)
    regret = table.rsub(best, axis=0).div(spread, axis=0)
    return regret.clip(upper=REGRET_CAP).fillna(REGRET_CAP)


def relative_cost(scores: pd.DataFrame) -> pd.Series:
    """Per candidate, the geometric mean over data sets of its fit time relative to the data set's median."""
    seconds = scores.pivot(index="dataset", columns="candidate", values="seconds").astype(float)
    relative = seconds.div(seconds.median(axis=1), axis=0)
    return np.exp(np.log(relative).mean(axis=0))


def select(regret: pd.DataFrame, cost: pd.Series, size: int,
           cost_exponent: float = COST_EXPONENT) -> list[tuple[str, float]]:
    """Select a portfolio greedily: the chosen candidates in order, each with the mean regret after adding it."""
    reached = pd.Series(REGRET_CAP, index=regret.index)
    chosen: list[tuple[str, float]] = []
    for _ in range(min(size, regret.shape[1])):
        chosen_names = {name for name, _ in chosen}
        remaining = [name for name in regret.columns if name not in chosen_names]
        after = {name: float(np.minimum(reached, regret[name]).mean()) for name in remaining}
        weighted = {name: (reached.mean() - after[name]) / cost[name] ** cost_exponent for name in remaining}
        name = max(remaining, key=lambda c: (round(weighted[c], 9), -cost[c]))
        reached = np.minimum(reached, regret[name])
        chosen.append((name, after[name]))
    return chosen


def leave_one_out(regret: pd.DataFrame, cost: pd.Series, size: int,
                  cost_exponent: float = COST_EXPONENT) -> pd.DataFrame:
    """Return, per data set, the regret of the portfolio selected on the others and of the baseline alone."""
    rows = []
    for dataset in regret.index:
        portfolio = [name for name, _ in select(regret.drop(index=dataset), cost, size, cost_exponent)]
        rows.append({"dataset": dataset, "portfolio": float(regret.loc[dataset, portfolio].min()),
                     "baseline": float(regret.loc[dataset, BASELINE])})
    return pd.DataFrame(rows)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10, help="portfolio entries per task")
    parser.add_argument("--cost-exponent", type=float, default=COST_EXPONENT,
                        help="power of the relative fit time that divides a candidate's gain; 0 ignores cost")
    parser.add_argument("--jobs", type=int, default=2, help="number of fits run side by side")
    parser.add_argument("--scores", type=Path, default=SCORES,
                        help="CSV file of evaluated pairs; it is read and extended")
    parser.add_argument("--select-only", action="store_true", help="select from the scores file without evaluating")
    parser.add_argument("--output", type=Path, default=REPO / "services" / "orchestrator" / "portfolio.json",
                        help="portfolio JSON file to write")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "portfolio.md",
                        help="Markdown report to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    suite = load_suite()
    started = time.perf_counter()
    scores = pd.read_csv(args.scores) if args.select_only else evaluate_missing(suite, args.scores, args.jobs)
    portfolios, sections = {}, []
    for task in (CLASSIFICATION, REGRESSION):
        task_scores = scores[scores["task"] == task]
        regret, cost = regrets(task_scores), relative_cost(task_scores)
        chosen = select(regret, cost, args.size, args.cost_exponent)
        pool = {candidate.name: candidate for candidate in candidates(task)}
        portfolios[task] = [pool[name] for name, _ in chosen]
        sections.append(render(task, task_scores, regret, cost, chosen,
                               leave_one_out(regret, cost, args.size, args.cost_exponent)))
    command = f"python -m benchmarks.portfolio --size {args.size} --cost-exponent {args.cost_exponent:g}"
    write_portfolio(args.output, args.report, portfolios, sections, command, suite)
    print(f"wrote {args.output} and {args.report} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
