"""Markdown report of the quality benchmark: the table, the summary lines and the notes.

`write_section` replaces the "## Search quality against FLAML" section of the
output file, or appends it, and keeps every other section.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.markdown import replace_section

SECTION = "## Search quality against FLAML"


@dataclass
class Dataset:
    """A data set with its task and where it comes from."""

    name: str
    task: str
    label_column: str
    frame: pd.DataFrame
    shared: bool


@dataclass
class Outcome:
    """One side's held-out score, or why it has none."""

    score: float | None = None
    seconds: float | None = None
    error: str = ""
    note: str = ""


def score_cell(outcome: Outcome) -> str:
    return f"{outcome.score:.4f}" if outcome.score is not None else outcome.error.replace("|", "/")


def seconds_cell(outcome: Outcome) -> str:
    return f"{outcome.seconds:.0f}" if outcome.seconds is not None else ""


def _beats(ours: Outcome, flaml: Outcome) -> str:
    if ours.score is None or flaml.score is None:
        return "n/a"
    return "yes" if ours.score >= flaml.score else "no"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def summarize(results: list[tuple[Dataset, Outcome, Outcome, Outcome]], budget: float) -> list[str]:
    """Return the summary lines: wins and means on the shared data sets, sets below the floor, the verdict."""
    shared = [(d, o, f) for d, o, f, _ in results if d.shared]
    compared = [(d, o, f) for d, o, f in shared if o.score is not None and f.score is not None]
    wins = sum(o.score >= f.score for _, o, f in compared)
    lines = [f"- Ours >= FLAML on {wins} of {_count(len(shared), 'shared data set')}"
             + (f" ({len(shared) - len(compared)} without both scores)." if len(compared) < len(shared) else ".")]

    mean_higher = False
    if shared and len(compared) == len(shared):
        mean_ours = float(np.mean([o.score for _, o, _ in compared]))
        mean_flaml = float(np.mean([f.score for _, _, f in compared]))
        mean_higher = mean_ours > mean_flaml
        lines.append(f"- Mean over the shared data sets: ours {mean_ours:.4f}, FLAML {mean_flaml:.4f}.")
    elif shared:
        lines.append("- Mean over the shared data sets: not computed, because a side failed on "
                     + ", ".join(d.name for d, o, f in shared if o.score is None or f.score is None) + ".")

    below = [d.name for d, o, _, floor in results
             if o.score is not None and floor.score is not None and o.score < floor.score]
    failed = [d.name for d, o, _, _ in results if o.score is None]
    lines.append("- Below the floor: " + (", ".join(below) if below else "none")
                 + (f"; ours has no score on {', '.join(failed)}." if failed else "."))

    if len(shared) < 6 or budget != 60:
        lines.append(f"- Acceptance (60 s budget, all 6 shared data sets): not evaluated, this run used "
                     f"a {budget:g} s budget and {_count(len(shared), 'shared data set')}.")
    else:
        met = wins >= 5 and mean_higher and not below and not failed
        lines.append(f"- Acceptance (ours >= FLAML on at least 5 of 6 shared data sets, higher mean, none below "
                     f"the floor): {'met' if met else 'not met'}.")
    return lines


def render(results, budget: float, command: str, run: str) -> str:
    """Return the Markdown section: how it was run, the table, the summary and per-set notes.

    `run` describes the sitting, for example its start time, duration and load averages.
    """
    lines = [
        SECTION,
        "",
        f"Command: `{command}` ({os.cpu_count()} cores, Python {platform.python_version()}, {run}). "
        "Each data set is split 75/25 (stratified for classification, random_state 0). "
        f"Ours and FLAML get a {budget:g} s budget on the 75%, and every score is on the held-out 25%: ROC AUC for "
        "binary, one-vs-rest AUC weighted by class frequency for multiclass, r2 for regression. Floor: default "
        "HistGradientBoosting with ordinal-encoded text columns. Seconds are wall time, ours from CreateExperiment "
        "to the experiment's end. Other work on the machine during the run slows both sides.",
        "",
        "| data set | task | rows | ours | FLAML | floor | ours seconds | FLAML seconds | ours >= FLAML? |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for dataset, ours, flaml, floor in results:
        task = dataset.task
        if task == "classification":
            classes = dataset.frame[dataset.label_column].nunique()
            task = "binary" if classes == 2 else f"multiclass ({classes})"
        lines.append(f"| {dataset.name} | {task} | {len(dataset.frame)} | {score_cell(ours)} | {score_cell(flaml)} | "
                     f"{score_cell(floor)} | {seconds_cell(ours)} | {seconds_cell(flaml)} | {_beats(ours, flaml)} |")
    lines += ["", *summarize(results, budget), "", "Notes:", ""]
    for dataset, ours, flaml, floor in results:
        for side, outcome in (("ours", ours), ("FLAML", flaml), ("floor", floor)):
            if outcome.note:
                lines.append(f"- {dataset.name}, {side}: {' '.join(outcome.note.split())}")
    return "\n".join(lines) + "\n"


def write_section(output: Path, text: str) -> None:
    """Replace this benchmark's section of `output`, or append it, keeping the other sections."""
    replace_section(output, SECTION, text)
