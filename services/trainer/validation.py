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
from automl.common.data_checks import SIZE_FIELD, check_validation, default_validation
from automl.common.errors import invalid_field

__all__ = ["Splits", "default_validation", "make_splits"]


@dataclass
class Splits:
    """Row indices of each (training, validation) pair and a description of the scheme."""

    folds: list[tuple[np.ndarray, np.ndarray]]
    strategy: str


def make_splits(task: int, labels: np.ndarray, n_cross_validations: int, validation_size: float,
                seed: int) -> Splits:
    """Split rows for validation.

    Raises
    ------
    InvalidArgument
        When the rows do not allow the scheme; see
        `automl.common.data_checks.check_validation`.
    """
    plan = check_validation(task, labels, n_cross_validations, validation_size)
    chosen = plan.chosen
    n_rows = len(labels)
    classification = task == catalog.CLASSIFICATION
    random_state = seed % 2**32
    indices = np.arange(n_rows)

    if plan.validation_size:
        validation_size = plan.validation_size
        try:
            train, test = train_test_split(indices, test_size=validation_size, random_state=random_state,
                                           shuffle=True, stratify=labels if classification else None)
        except ValueError as error:
            raise invalid_field(SIZE_FIELD, f"a {validation_size:.0%} holdout of {n_rows} rows is not possible: "
                                            f"{error}; use cross-validation or a larger holdout") from error
        kind = "stratified holdout" if classification else "holdout"
        return Splits([(train, test)], f"{validation_size:.0%} {kind} validation ({len(test)} rows{chosen})")

    n_cross_validations = plan.n_cross_validations
    if classification:
        splitter = StratifiedKFold(n_cross_validations, shuffle=True, random_state=random_state)
        kind = "stratified cross-validation"
    else:
        splitter = KFold(n_cross_validations, shuffle=True, random_state=random_state)
        kind = "cross-validation"
    folds = list(splitter.split(indices, labels))
    return Splits(folds, f"{n_cross_validations}-fold {kind}{chosen.replace(', ', ' (', 1) + ')' if chosen else ''}")
