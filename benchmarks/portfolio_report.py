"""Outputs of the portfolio selection: the JSON file the search reads and the Markdown report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmarks.portfolio_candidates import Candidate
from benchmarks.portfolio_suite import MAX_ROWS, SuiteData


def render(task: str, scores: pd.DataFrame, regret: pd.DataFrame, cost: pd.Series, chosen: list[tuple[str, float]],
           held_out: pd.DataFrame) -> str:
    """Markdown section of one task: the chosen entries in order, then the leave-one-out check."""
    datasets = regret.shape[0]
    lines = [f"## {task.capitalize()}", "",
             f"{datasets} data sets, {regret.shape[1]} candidates. Mean regret is over the data sets, "
             "of the best entry so far (0 is the best candidate everywhere).", "",
             "| order | candidate | mean regret after it | data sets where it is best | relative cost |",
             "| ---: | --- | ---: | ---: | ---: |"]
    winners = regret.idxmin(axis=1).value_counts()
    for position, (name, after) in enumerate(chosen, start=1):
        lines.append(f"| {position} | {name} | {after:.3f} | {int(winners.get(name, 0))} | {cost[name]:.2f} |")
    better = int((held_out["portfolio"] < held_out["baseline"]).sum())
    lines += ["", f"Leave one data set out: a portfolio selected on the other {datasets - 1} data sets reaches a "
              f"mean regret of {held_out['portfolio'].mean():.3f} on the one left out, against "
              f"{held_out['baseline'].mean():.3f} for LightGBM's defaults alone "
              f"(lower on {better} of {datasets} data sets).", ""]
    failures = scores[scores["error"].fillna("") != ""]
    if len(failures):
        lines += [f"Failed fits (counted at the regret cap): {len(failures)}: "
                  + "; ".join(f"{row.candidate} on {row.dataset}" for row in failures.itertuples()) + ".", ""]
    return "\n".join(lines)


def write_portfolio(output: Path, report: Path, portfolios: dict[str, list[Candidate]], sections: list[str],
                    command: str, suite: list[SuiteData]) -> None:
    """Write the portfolio JSON and the Markdown report."""
    document = {"generated_by": command, "see": "docs/portfolio.md"}
    for task, entries in portfolios.items():
        document[task] = [{"name": c.name, "scaler": c.scaler, "estimator": c.estimator,
                           "hyperparameters": c.hyperparameters} for c in entries]
    output.write_text(json.dumps(document, indent=1) + "\n")
    rows = [f"| {data.name} | {data.origin} | {data.task} | {len(data.labels)} |" for data in suite]
    header = ["# Starting portfolio", "",
              f"Produced by `{command}`; the docstring of `benchmarks/portfolio.py` describes each step. "
              "The search tries these entries first, in this order, before its model-based search starts.", "",
              f"None of the {len(suite)} data sets is in the quality benchmark, and each has at most {MAX_ROWS} "
              "rows.", "", "| data set | source | task | rows |", "| --- | --- | --- | ---: |", *rows, ""]
    report.write_text("\n".join(header + sections).rstrip() + "\n")
