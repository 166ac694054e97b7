"""Fitted ensemble models that combine the pipelines of earlier iterations.

Both classes take raw rows, as every member pipeline does, so a stored
ensemble is used like any other model. They live in `automl.common` because
model loading trusts only `automl.` types besides the estimator libraries,
and they keep only plain attributes so that skops can store them.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator


def member_outputs(member, rows, classes: np.ndarray | None) -> np.ndarray:
    """Return a member's class probabilities in `classes` order, or its regression predictions.

    A member that never saw a class gives it probability 0, so members fitted
    on different class sets still line up column by column.
    """
    if classes is None:
        return np.asarray(member.predict(rows), dtype=float)
    probabilities = np.zeros((len(rows), len(classes)))
    positions = np.searchsorted(classes, member.classes_)
    probabilities[:, positions] = member.predict_proba(rows)
    return probabilities


class _Ensemble(BaseEstimator):
    """Common parts: members, task and classes."""

    @property
    def _classification(self) -> bool:
        return self.task == "classification"

    @property
    def classes_(self) -> np.ndarray:
        if not self._classification:
            raise AttributeError("a regression ensemble has no classes_")
        return np.asarray(self.classes)

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.asarray(self.feature_names, dtype=object)

    def _outputs(self, rows) -> list[np.ndarray]:
        classes = self.classes_ if self._classification else None
        return [member_outputs(member, rows, classes) for member in self.members]

    def predict(self, rows) -> np.ndarray:
        """Predict labels (classification) or values (regression) of raw rows."""
        if self._classification:
            return self.classes_[np.argmax(self.predict_proba(rows), axis=1)]
        return self._combine(self._outputs(rows))


class VotingEnsembleModel(_Ensemble):
    """Weighted average of member probabilities (classification) or predictions (regression).

    Parameters
    ----------
    members : list
        Fitted pipelines that take raw rows.
    weights : list of float
        Weight of each member; they sum to 1.
    task : str
        `classification` or `regression`.
    classes : list
        Sorted class labels of the data set; empty for regression.
    feature_names : list of str
        Input columns, in order.
    """

    def __init__(self, members=(), weights=(), task="classification", classes=(), feature_names=()):
        self.members = members
        self.weights = weights
        self.task = task
        self.classes = classes
        self.feature_names = feature_names

    def _combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        return sum(weight * output for weight, output in zip(self.weights, outputs))

    def predict_proba(self, rows) -> np.ndarray:
        """Return the weighted average of the members' class probabilities, columns in `classes_` order."""
        if not self._classification:
            raise AttributeError("a regression ensemble has no predict_proba")
        return self._combine(self._outputs(rows))


class StackEnsembleModel(_Ensemble):
    """Linear meta-learner on the concatenated outputs of the members.

    Parameters
    ----------
    members : list
        Fitted pipelines that take raw rows.
    meta_learner : estimator
        Fitted on the members' out-of-fold outputs, concatenated member by
        member (every class probability of a classifier, the prediction of a
        regressor). A classifier's targets are positions in `classes`, so its
        `classes_` do not depend on the label type.
    task, classes, feature_names
        As in `VotingEnsembleModel`.
    """

    def __init__(self, members=(), meta_learner=None, task="classification", classes=(), feature_names=()):
        self.members = members
        self.meta_learner = meta_learner
        self.task = task
        self.classes = classes
        self.feature_names = feature_names

    def _combine(self, outputs: list[np.ndarray]) -> np.ndarray:
        stacked = np.column_stack([output.reshape(len(output), -1) for output in outputs])
        return np.asarray(self.meta_learner.predict(stacked), dtype=float)

    def predict_proba(self, rows) -> np.ndarray:
        """Return the meta-learner's class probabilities, columns in `classes_` order."""
        if not self._classification:
            raise AttributeError("a regression ensemble has no predict_proba")
        stacked = np.column_stack(self._outputs(rows))
        return member_outputs(self.meta_learner, stacked, np.arange(len(self.classes)))


__all__ = ["VotingEnsembleModel", "StackEnsembleModel", "member_outputs"]
