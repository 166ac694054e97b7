"""Out-of-fold predictions of an iteration, stored as NPZ for later ensembles.

Each validation fold predicts the rows it held out, so every validated row
gets a prediction from a model that did not see it. With cross-validation
that is every row, with a holdout only the holdout rows. The NPZ loads with
`allow_pickle=False`: string labels are stored as Unicode arrays.

Arrays: `predictions` (rows x classes probabilities in `classes` order, or
one value per row for regression), `labels`, `row_indices` (positions in the
data set after rows without a label were dropped), `classes`
(classification only), `folds` (validation fold of each row, from 1),
`label_range` (the data set's label range, the normalizer of regression
errors) and `validation_strategy`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from automl.common import catalog
from automl.common.ensembles import member_outputs

OOF_FILE = "oof_predictions.npz"


def _storable(values: np.ndarray) -> np.ndarray:
    # Object arrays need pickle; the labels in them are strings by then (see training.prepare_table).
    values = np.asarray(values)
    return values.astype(str) if values.dtype == object else values


@dataclass
class OutOfFold:
    """Out-of-fold predictions of one iteration, rows sorted by `row_indices`."""

    predictions: np.ndarray
    labels: np.ndarray
    row_indices: np.ndarray
    classes: np.ndarray | None
    folds: np.ndarray
    label_range: float
    validation_strategy: str


class OutOfFoldCollector:
    """Collects the held-out predictions of each fold during validation."""

    def __init__(self, task: int, classes: np.ndarray, label_range: float):
        self.classes = classes if task == catalog.CLASSIFICATION else None
        self.label_range = label_range
        self._parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, fold: int, pipeline, features, rows: np.ndarray, labels: np.ndarray) -> None:
        """Predict the held-out `features` (data set positions `rows`) with the fold's `pipeline`."""
        self._parts.append((fold, np.asarray(rows), member_outputs(pipeline, features, self.classes),
                            np.asarray(labels)))

    def to_bytes(self, validation_strategy: str) -> bytes:
        """Return the NPZ file of every collected fold."""
        rows = np.concatenate([part[1] for part in self._parts])
        order = np.argsort(rows, kind="stable")
        arrays = {
            "predictions": np.concatenate([part[2] for part in self._parts])[order],
            "labels": _storable(np.concatenate([part[3] for part in self._parts])[order]),
            "row_indices": rows[order].astype(np.int64),
            "folds": np.concatenate([np.full(len(part[1]), part[0]) for part in self._parts])[order],
            "label_range": np.float64(self.label_range),
            "validation_strategy": np.str_(validation_strategy),
        }
        if self.classes is not None:
            arrays["classes"] = _storable(self.classes)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()


def load_oof(data: bytes) -> OutOfFold:
    """Read an NPZ written by `OutOfFoldCollector.to_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return OutOfFold(
            predictions=arrays["predictions"],
            labels=arrays["labels"],
            row_indices=arrays["row_indices"],
            classes=arrays["classes"] if "classes" in arrays.files else None,
            folds=arrays["folds"] if "folds" in arrays.files else np.ones(len(arrays["labels"]), dtype=int),
            label_range=float(arrays["label_range"]) if "label_range" in arrays.files else 0.0,
            validation_strategy=str(arrays["validation_strategy"]) if "validation_strategy" in arrays.files else "",
        )
