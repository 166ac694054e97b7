"""Splitting of an iteration's rows into training and validation folds.

Cross-validation is stratified for classification and shuffled with the
request's seed. With neither folds nor a holdout size requested, the rule of
Azure AutoML applies: 10 folds below 1,000 rows, 3 folds below 20,000 rows,
else a 10% holdout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from automl.common import catalog
from automl.common.errors import invalid_field

FOLDS_FIELD = "validation.n_cross_validations"
SIZE_FIELD = "validation.validation_size"


@dataclass
class Splits:
    """Row indices of each (training, validation) pair and a description of the scheme."""

    folds: list[tuple[np.ndarray, np.ndarray]]
    strategy: str


def default_validation(n_rows: int) -> tuple[int, float]:
    """Return (folds, holdout fraction) by Azure AutoML's row-count rule; one of them is zero."""
    if n_rows < 1_000:
        return 10, 0.0
    if n_rows < 20_000:
        return 3, 0.0
    return 0, 0.1


def make_splits(task: int, labels: np.ndarray, n_cross_validations: int, validation_size: float,
                seed: int) -> Splits:
    """Split rows for validation.

    Raises
    ------
    InvalidArgument
        On `validation.n_cross_validations` when there are more folds than
        rows or a class has fewer rows than folds, on
        `validation.validation_size` when the holdout cannot hold every class.
    """
    n_rows = len(labels)
    chosen = ""
    if not n_cross_validations and not validation_size:
        n_cross_validations, validation_size = default_validation(n_rows)
        chosen = f", chosen for {n_rows:,} rows"
    classification = task == catalog.CLASSIFICATION
    random_state = seed % 2**32
    indices = np.arange(n_rows)

    if validation_size:
        try:
            train, test = train_test_split(indices, test_size=validation_size, random_state=random_state,
                                           shuffle=True, stratify=labels if classification else None)
        except ValueError as error:
            raise invalid_field(SIZE_FIELD, f"a {validation_size:.0%} holdout of {n_rows} rows is not possible: "
                                            f"{error}; use cross-validation or a larger holdout") from error
        kind = "stratified holdout" if classification else "holdout"
        return Splits([(train, test)], f"{validation_size:.0%} {kind} validation ({len(test)} rows{chosen})")

    if n_cross_validations > n_rows:
        raise invalid_field(FOLDS_FIELD, f"{n_cross_validations} folds need at least {n_cross_validations} rows; "
                                         f"the data set has {n_rows}; use fewer folds")
    if classification:
        classes, counts = np.unique(labels, return_counts=True)
        smallest = int(np.argmin(counts))
        if counts[smallest] < n_cross_validations:
            raise invalid_field(
                FOLDS_FIELD,
                f"class {classes[smallest]!r} has {counts[smallest]} rows, fewer than the "
                f"{n_cross_validations} folds{chosen}; set n_cross_validations to at most {counts[smallest]}, "
                "use validation_size, or add rows of that class")
        splitter = StratifiedKFold(n_cross_validations, shuffle=True, random_state=random_state)
        kind = "stratified cross-validation"
    else:
        splitter = KFold(n_cross_validations, shuffle=True, random_state=random_state)
        kind = "cross-validation"
    folds = list(splitter.split(indices, labels))
    return Splits(folds, f"{n_cross_validations}-fold {kind}{chosen.replace(', ', ' (', 1) + ')' if chosen else ''}")
