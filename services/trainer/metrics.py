"""Azure AutoML metrics of one validation fold, with scikit-learn and scipy.

Classification metrics that need scores (AUC, average precision, log_loss)
take the probabilities of every class of the data set, in `classes` order,
so folds missing a class and binary problems (two probability columns) are
handled alike. Normalized regression errors divide by the label range of the
whole data set, as Azure AutoML does.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr
from sklearn import metrics as skm

from automl.common import catalog


def _one_hot(y_true: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (np.asarray(y_true).reshape(-1, 1) == classes.reshape(1, -1)).astype(int)


def _scored(metric, indicator: np.ndarray, probabilities: np.ndarray, average: str) -> float:
    # A fold holding a single class has no negatives, so ranking metrics are
    # undefined there: NaN, which `average` leaves out.
    if indicator.shape[1] < 2 and average != "micro" or indicator.min() == indicator.max():
        return math.nan
    return metric(indicator, probabilities, average=average)


def classification_metrics(y_true, y_pred, probabilities, classes) -> dict[str, float]:
    """Return every classification metric of `catalog.METRICS`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted labels.
    probabilities : array-like of shape (n, len(classes))
        Predicted probability of each class, columns in `classes` order.
    classes : array-like
        Every class of the data set, sorted.
    """
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    probabilities = np.asarray(probabilities, dtype=float)
    n_classes = len(classes)

    # Score metrics one-vs-rest over the classes present in this fold: a class
    # with no true rows has no defined AUC or average precision.
    indicator = _one_hot(y_true, classes)
    present = indicator.sum(axis=0) > 0
    scored_indicator, scored_probabilities = indicator[:, present], probabilities[:, present]
    macro_recall = skm.recall_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    chance = 1.0 / n_classes

    values = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "AUC_weighted": _scored(skm.roc_auc_score, scored_indicator, scored_probabilities, "weighted"),
        "AUC_macro": _scored(skm.roc_auc_score, scored_indicator, scored_probabilities, "macro"),
        "AUC_micro": _scored(skm.roc_auc_score, indicator, probabilities, "micro"),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "log_loss": skm.log_loss(y_true, probabilities, labels=classes),
        "f1_score_weighted": skm.f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0),
        "f1_score_macro": skm.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0),
        "precision_score_weighted": skm.precision_score(y_true, y_pred, labels=classes, average="weighted",
                                                        zero_division=0),
        "precision_score_macro": skm.precision_score(y_true, y_pred, labels=classes, average="macro",
                                                     zero_division=0),
        "recall_score_weighted": skm.recall_score(y_true, y_pred, labels=classes, average="weighted",
                                                  zero_division=0),
        "recall_score_macro": macro_recall,
        "norm_macro_recall": (macro_recall - chance) / (1.0 - chance),
        "average_precision_score_weighted": _scored(skm.average_precision_score, scored_indicator,
                                                    scored_probabilities, "weighted"),
        "matthews_correlation": skm.matthews_corrcoef(y_true, y_pred),
    }
    return {name: float(values[name]) for name in catalog.METRICS[catalog.CLASSIFICATION]}


def regression_metrics(y_true, y_pred, label_range: float) -> dict[str, float]:
    """Return every regression metric of `catalog.METRICS`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted values.
    label_range : float
        `max(y) - min(y)` over the whole data set, the normalizer of the
        normalized errors; must be positive.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    rmse = skm.root_mean_squared_error(y_true, y_pred)
    mae = skm.mean_absolute_error(y_true, y_pred)
    # Constant predictions have no rank correlation; scipy returns NaN and warns.
    spearman = spearmanr(y_true, y_pred).statistic if np.ptp(y_pred) > 0 and np.ptp(y_true) > 0 else 0.0
    values = {
        "r2_score": skm.r2_score(y_true, y_pred),
        "spearman_correlation": spearman,
        "normalized_root_mean_squared_error": rmse / label_range,
        "normalized_mean_absolute_error": mae / label_range,
        "root_mean_squared_error": rmse,
        "mean_absolute_error": mae,
        "explained_variance": skm.explained_variance_score(y_true, y_pred),
    }
    return {name: float(values[name]) for name in catalog.METRICS[catalog.REGRESSION]}


def average(folds: list[dict[str, float]]) -> dict[str, float]:
    """Average each metric over folds, skipping folds where it is not finite."""
    names = folds[0].keys()
    averaged = {}
    for name in names:
        finite = [fold[name] for fold in folds if math.isfinite(fold[name])]
        if finite:
            averaged[name] = float(np.mean(finite))
    return averaged
