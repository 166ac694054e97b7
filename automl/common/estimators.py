"""Estimator wrappers that live inside stored models.

Model loading trusts only types from `automl.` and a few libraries (see
`automl.common.models`), so every wrapper class that a fitted pipeline
contains is defined here.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted


class LabelEncodedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Classifier that fits its inner estimator on integer-encoded labels.

    XGBoost's `XGBClassifier` (2.x) accepts only the labels 0 to n_classes - 1.
    This wrapper encodes any labels (strings included) before fitting and
    decodes predictions, so `predict` and `classes_` use the original labels.
    The columns of `predict_proba` follow `classes_`, which is sorted.

    Parameters
    ----------
    estimator : classifier
        Unfitted classifier; a clone of it is fitted.

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone, trained on encoded labels.
    classes_ : numpy.ndarray
        The original class labels, sorted.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y, **fit_params):
        """Encode `y` and fit a clone of the estimator on it."""
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        self.estimator_ = clone(self.estimator).fit(X, encoder.transform(y), **fit_params)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X):
        """Predict original class labels."""
        check_is_fitted(self, "estimator_")
        codes = np.asarray(self.estimator_.predict(X)).astype(int)
        return self.classes_[codes]

    def predict_proba(self, X):
        """Return class probabilities, one column per entry of `classes_`."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)
