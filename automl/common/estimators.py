"""Estimator wrappers that live inside stored models.

Model loading trusts only types from `automl.` and a few libraries (see
`automl.common.models`), so every wrapper class that a fitted pipeline
contains is defined here.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, TransformerMixin, clone
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


class NumericArray(TransformerMixin, BaseEstimator):
    """Transformer that passes a numeric table on as a float array without column names.

    LightGBM 4.7 rejects feature names with JSON characters (`"`, `:`, `,`,
    `[`, `{`) and XGBoost 2.1 names with `[`, `]` or `<`. Pipelines without
    featurization start with this step, so any column name works. Data frames
    are reordered to the fitted columns by name.

    Attributes
    ----------
    feature_names_in_ : numpy.ndarray
        Column names seen in `fit`, when it got a data frame.
    n_features_in_ : int
        Number of columns seen in `fit`.
    """

    def fit(self, X, y=None):
        """Record the columns of `X`."""
        columns = getattr(X, "columns", None)
        if columns is not None:
            self.feature_names_in_ = np.asarray(list(columns), dtype=object)
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        """Return `X` as a float array, with a data frame's columns in the fitted order."""
        check_is_fitted(self, "n_features_in_")
        names = getattr(self, "feature_names_in_", None)
        if names is not None and hasattr(X, "columns"):
            absent = [str(name) for name in names if name not in X.columns]
            if absent:
                raise ValueError(f"the rows are missing the columns {absent[:20]} that the model was fitted on; "
                                 "add them")
            X = X[list(names)]
        return np.asarray(X, dtype=float)

    def get_feature_names_out(self, input_features=None):
        """Return the input column names: each column passes through unchanged."""
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return names
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
