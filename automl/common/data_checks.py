"""Checks of a data set against an experiment's task and settings.

The ExperimentService runs them at CreateExperiment, so a bad data set fails
before any iteration starts, and each trainer runs them again on the rows it
reads, as a safety net. Problems raise `InvalidArgument` with fields relative
to the experiment (`dataset.label_column`, `validation.n_cross_validations`,
`preprocess`). The orchestrator prefixes them with `experiment.`, see
`prefix_fields`. Problems the platform can handle (rows without a label,
constant columns) become `DataWarning`s, which the trainer reports as data
guardrails.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from automl.common import catalog
from automl.common.errors import FieldViolation, InvalidArgument, invalid_field
from automl.common.featurization import parse_numbers

URI_FIELD = "dataset.uri"
LABEL_FIELD = "dataset.label_column"
FOLDS_FIELD = "validation.n_cross_validations"
SIZE_FIELD = "validation.validation_size"
PREPROCESS_FIELD = "preprocess"
TASK_FIELD = "task"

# Columns named in one message; the rest are counted.
SHOWN_COLUMNS = 20
# A classification label with at least this many distinct numbers, some of them fractional, is most
# likely a regression target, so the task is rejected rather than trained as that many classes.
REGRESSION_LIKE_CLASSES = 20


@dataclass
class DataWarning:
    """A data problem that was handled, reported as a guardrail named `name`.

    `status` is a GuardrailStatus name: `DONE` when the platform fixed the
    problem, `ALERTED` when the user should look at it.
    """

    name: str
    status: str
    description: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckedData:
    """Features and labels ready for training, and the warnings raised on the way."""

    features: pd.DataFrame
    labels: pd.Series
    warnings: list[DataWarning]


@dataclass(frozen=True)
class ValidationPlan:
    """Folds or holdout fraction an iteration uses; one of them is zero."""

    n_cross_validations: int
    validation_size: float
    # Non-empty when the plan was chosen by row count, for example ", chosen for 150 rows".
    chosen: str = ""


def prefix_fields(error: InvalidArgument, prefix: str) -> InvalidArgument:
    """Return a copy of `error` with `prefix` before each field path."""
    violations = [FieldViolation(prefix + v.field, v.description) for v in error.violations]
    return InvalidArgument(violations, error.reason)


def _plain(value):
    """Return a NumPy scalar as the Python value, so messages show `'b'` and not `np.str_('b')`."""
    return value.item() if isinstance(value, np.generic) else value


def _shown(names) -> str:
    names = [str(name) for name in names]
    more = f" and {len(names) - SHOWN_COLUMNS} more" if len(names) > SHOWN_COLUMNS else ""
    return ", ".join(repr(name) for name in names[:SHOWN_COLUMNS]) + more


def check_column_names(names: list[str], uri: str) -> None:
    """Raise InvalidArgument on `dataset.uri` when column names repeat.

    `names` must come from the file itself (the CSV header, the Parquet
    schema), because pandas renames a repeated `a` to `a.1` while reading.
    """
    repeated = {name: count for name, count in Counter(names).items() if count > 1}
    if repeated:
        listed = ", ".join(f"{name!r} ({count} times)" for name, count in repeated.items())
        raise invalid_field(URI_FIELD, f"'{uri}' has duplicate column names: {listed}; rename the columns so "
                                       "each name is unique")


# FLAML 2.7 (`AutoML._decide_eval_method`) cross-validates only while rows × columns / 0.9 stays below
# 10 million cells per hour of time budget. Above that, a holdout leaves time to try more configurations.
CV_CELLS_PER_BUDGET_HOUR = 10_000_000
BUDGET_HOLDOUT_SIZE = 0.1


def budget_validation(n_rows: int, n_columns: int, budget_minutes: float) -> float:
    """Return the holdout fraction a time budget calls for, or 0.0 where cross-validation fits the budget.

    Parameters
    ----------
    n_rows, n_columns : int
        Size of the feature table before featurization.
    budget_minutes : float
        The experiment's time budget; 0 or less means none, and then
        cross-validation always fits.
    """
    if budget_minutes <= 0:
        return 0.0
    if n_rows * n_columns / 0.9 < CV_CELLS_PER_BUDGET_HOUR * budget_minutes / 60:
        return 0.0
    return BUDGET_HOLDOUT_SIZE


def default_validation(n_rows: int) -> tuple[int, float]:
    """Return (folds, holdout fraction) by Azure AutoML's row-count rule; one of them is zero."""
    if n_rows < 1_000:
        return 10, 0.0
    if n_rows < 20_000:
        return 3, 0.0
    return 0, 0.1


def check_validation(task: int, labels: np.ndarray, n_cross_validations: int,
                     validation_size: float) -> ValidationPlan:
    """Resolve the validation scheme for `labels` and check that the rows allow it.

    Raises
    ------
    InvalidArgument
        On `validation.n_cross_validations` when there are more folds than
        rows or a class has fewer rows than folds, on
        `validation.validation_size` when the holdout or the training part
        cannot hold every class.
    """
    n_rows = len(labels)
    chosen = ""
    if not n_cross_validations and not validation_size:
        n_cross_validations, validation_size = default_validation(n_rows)
        chosen = f", chosen for {n_rows:,} rows"
    classification = task == catalog.CLASSIFICATION
    classes, counts = np.unique(labels, return_counts=True) if classification else (np.array([]), np.array([]))

    if validation_size:
        # The same rounding as scikit-learn's train_test_split.
        test_rows = math.ceil(validation_size * n_rows)
        train_rows = n_rows - test_rows
        if train_rows < 1 or test_rows < 1:
            raise invalid_field(SIZE_FIELD, f"a {validation_size:.0%} holdout of {n_rows} rows leaves "
                                            f"{train_rows} rows to train on and {test_rows} to validate; "
                                            "add rows or use another validation_size")
        if classification:
            smallest = int(np.argmin(counts))
            if counts[smallest] < 2:
                raise invalid_field(SIZE_FIELD, f"class {_plain(classes[smallest])!r} has {counts[smallest]} row, but a "
                                                "stratified holdout needs at least 2 rows of each class; add rows "
                                                "of that class")
            if min(train_rows, test_rows) < len(classes):
                raise invalid_field(SIZE_FIELD, f"a {validation_size:.0%} holdout of {n_rows} rows gives "
                                                f"{test_rows} validation and {train_rows} training rows, fewer "
                                                f"than the {len(classes)} classes; use a validation_size that "
                                                "leaves at least one row of each class on both sides")
        return ValidationPlan(0, validation_size, chosen)

    if n_cross_validations > n_rows:
        raise invalid_field(FOLDS_FIELD, f"{n_cross_validations} folds{chosen} need at least {n_cross_validations} "
                                         f"rows, but the data set has {n_rows}; use fewer folds or add rows")
    if classification:
        smallest = int(np.argmin(counts))
        if counts[smallest] < n_cross_validations:
            raise invalid_field(
                FOLDS_FIELD,
                f"class {_plain(classes[smallest])!r} has {_rows(counts[smallest])}, fewer than the "
                f"{n_cross_validations} folds{chosen}; set n_cross_validations to at most "
                f"{max(counts[smallest], 2)}, use validation_size, or add rows of that class")
    return ValidationPlan(n_cross_validations, 0.0, chosen)


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def check_labels(task: int, labels: pd.Series, column: str) -> tuple[np.ndarray, list[DataWarning]]:
    """Check labels against the task; return a mask of the rows to keep and the warnings.

    Rows without a label are dropped with a warning, as Azure AutoML does.
    """
    warnings = []
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if numeric:
        infinite = int(np.isinf(labels.to_numpy(dtype=float)).sum())
        if infinite:
            raise invalid_field(LABEL_FIELD, f"column '{column}' has {infinite} infinite values; replace them "
                                             "with finite numbers or remove those rows")
    keep = labels.notna().to_numpy()
    missing = int((~keep).sum())
    if missing:
        warnings.append(DataWarning(
            "missing_labels", "DONE", f"Dropped {missing} of {len(labels)} rows whose label '{column}' is missing.",
            {"column": column, "dropped_rows": str(missing), "rows": str(len(labels))}))
    present = labels[keep]
    if len(present) == 0:
        raise invalid_field(LABEL_FIELD, f"column '{column}' has no values; fill in the labels")
    if len(present) == 1:
        raise invalid_field(URI_FIELD, "the data set has 1 row with a label; training and validation need at "
                                       "least 2 rows, and cross-validation one row per fold; add rows")

    if task == catalog.CLASSIFICATION:
        # Only an object column can mix types; mapping every value is too slow for numeric columns.
        types = present.map(lambda value: type(value).__name__).unique() if labels.dtype == object else []
        if len(types) > 1:
            as_text = present.astype(str)
            if as_text.nunique() < present.nunique():
                raise invalid_field(LABEL_FIELD, f"column '{column}' mixes types ({', '.join(sorted(types))}) so that "
                                                 "different values read the same as text, such as 1 and '1'; "
                                                 "store every label with one type")
            warnings.append(DataWarning(
                "label_types", "ALERTED", f"Label column '{column}' mixes {', '.join(sorted(types))} values; "
                                          "every label was read as text, so predictions are strings.",
                {"column": column, "types": ", ".join(sorted(types))}))
        if numeric and present.nunique() >= REGRESSION_LIKE_CLASSES:
            fractional = present[present != np.floor(present)]
            if len(fractional):
                raise invalid_field(TASK_FIELD, f"is classification, but label column '{column}' has "
                                                f"{present.nunique()} distinct numbers, some fractional such as "
                                                f"{_plain(fractional.iloc[0])!r}; set the task to regression, or "
                                                "store the classes as integers or text")
        if present.nunique() < 2:
            raise invalid_field(LABEL_FIELD, f"column '{column}' contains a single class ({_plain(present.iloc[0])!r}); "
                                             "classification needs at least two")
    else:
        if not numeric:
            raise invalid_field(LABEL_FIELD, f"column '{column}' contains non-numeric values such as "
                                             f"{_plain(present.iloc[0])!r}; regression needs numbers, or use "
                                             "TASK_CLASSIFICATION")
        if present.max() == present.min():
            raise invalid_field(LABEL_FIELD, f"column '{column}' has the single value {_plain(present.iloc[0])!r}; "
                                             "there is nothing to predict")
    return keep, warnings


def check_features(features: pd.DataFrame, preprocess: bool, uri: str, label_column: str) -> list[DataWarning]:
    """Check feature columns against `preprocess`; return warnings.

    Raises
    ------
    InvalidArgument
        On `dataset.uri` when no column can serve as a feature, on
        `preprocess` when it is false but columns need featurization.
    """
    if features.shape[1] == 0:
        raise invalid_field(URI_FIELD, f"'{uri}' has no feature columns besides '{label_column}'")
    empty = [c for c in features.columns if features[c].isna().all()]
    constant = [c for c in features.columns if c not in empty and features[c].nunique(dropna=False) == 1]
    if len(empty) + len(constant) == features.shape[1]:
        reasons = [f"{c!r} (every value missing)" for c in empty] + [f"{c!r} (constant)" for c in constant]
        raise invalid_field(URI_FIELD, f"'{uri}' has no usable feature column: {', '.join(reasons[:SHOWN_COLUMNS])}; "
                                       "add columns that vary")
    warnings = []
    if preprocess:
        return warnings

    numeric_text, text, gaps = [], [], []
    for column in features.columns:
        values = features[column]
        if column in empty:
            continue
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            non_missing = values.dropna()
            (numeric_text if parse_numbers(non_missing).notna().all() else text).append(column)
        if values.isna().any():
            gaps.append(column)
    problems = []
    if empty:
        problems.append(f"columns with every value missing: {_shown(empty)}")
    if numeric_text:
        examples = ", ".join(repr(features[c].dropna().iloc[0]) for c in numeric_text[:3])
        problems.append(f"numbers stored as text in {_shown(numeric_text)} (for example {examples})")
    if text:
        problems.append(f"non-numeric columns {_shown(text)}")
    if gaps:
        problems.append(f"missing values in {_shown(gaps)}")
    if problems:
        raise invalid_field(PREPROCESS_FIELD, f"is false but the data set has {'; '.join(problems)}; set "
                                              "preprocess=true to impute, parse and encode them, or fix the file")
    if constant:
        warnings.append(DataWarning(
            "constant_columns", "ALERTED", f"Columns {_shown(constant)} have one value in every row and cannot "
                                           "help the model; drop them or set preprocess=true, which drops them.",
            {str(c): repr(features[c].iloc[0]) for c in constant}))
    return warnings


def check_table(table, task: int, preprocess: bool, n_cross_validations: int, validation_size: float,
                uri: str) -> CheckedData:
    """Run every data check on a read table (see `automl.common.datasets.Table`).

    Returns the features and labels without the rows that have no label;
    classification labels of mixed types become text.

    Raises
    ------
    InvalidArgument
        Naming the field to change, the value and the fix.
    """
    keep, warnings = check_labels(task, table.labels, table.label_column)
    features, labels = table.features, table.labels
    if not keep.all():
        features = features.loc[keep].reset_index(drop=True)
        labels = labels.loc[keep].reset_index(drop=True)
    if any(warning.name == "label_types" for warning in warnings):
        labels = labels.astype(str)
    warnings += check_features(features, preprocess, uri, table.label_column)
    check_validation(task, labels.to_numpy(), n_cross_validations, validation_size)
    return CheckedData(features, labels, warnings)


__all__ = ["CheckedData", "DataWarning", "ValidationPlan", "check_column_names", "check_features", "check_labels",
           "check_table", "check_validation", "budget_validation", "default_validation", "prefix_fields"]
