"""Trainer metrics against small cases worked out by hand."""

import math

import numpy as np
import pytest

from automl.common import catalog
from services.trainer.metrics import average, classification_metrics, regression_metrics


def test_binary_metrics_from_two_probability_columns():
    y_true = np.array([0, 0, 1, 1])
    positive = np.array([0.1, 0.4, 0.35, 0.8])
    y_pred = np.array([0, 0, 0, 1])

    metrics = classification_metrics(y_true, y_pred, np.column_stack([1 - positive, positive]), [0, 1])

    assert set(metrics) == set(catalog.METRICS[catalog.CLASSIFICATION])
    assert metrics["accuracy"] == pytest.approx(0.75)
    # Three of the four (positive, negative) pairs are ranked correctly.
    assert metrics["AUC_weighted"] == pytest.approx(0.75)
    assert metrics["AUC_macro"] == pytest.approx(0.75)
    # Both columns flattened: 13 of 16 pairs ranked correctly.
    assert metrics["AUC_micro"] == pytest.approx(13 / 16)
    # Recall 1 for class 0 and 1/2 for class 1; chance is 1/2.
    assert metrics["recall_score_macro"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx(0.75)
    assert metrics["norm_macro_recall"] == pytest.approx(0.5)
    # Each class: precision 1 at the first hit, 2/3 at the second.
    assert metrics["average_precision_score_weighted"] == pytest.approx(0.5 + 1 / 3)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    # TP=1, TN=2, FP=0, FN=1.
    assert metrics["matthews_correlation"] == pytest.approx(2 / math.sqrt(12))
    assert metrics["precision_score_macro"] == pytest.approx((2 / 3 + 1) / 2)


def test_multiclass_fold_missing_a_class():
    classes = np.array(["a", "b", "c"])
    y_true = np.array(["a", "a", "b", "b"])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    y_pred = classes[probabilities.argmax(axis=1)]

    metrics = classification_metrics(y_true, y_pred, probabilities, classes)

    assert metrics["accuracy"] == pytest.approx(0.75)
    # Class c has no rows here. Class a separates perfectly; class b ranks
    # 3.5 of 4 pairs right (0.3 ties 0.3), so AUC 0.875.
    assert metrics["AUC_macro"] == pytest.approx((1.0 + 0.875) / 2)
    # Macro recall over all three classes: (1 + 1/2 + 0) / 3; chance is 1/3.
    assert metrics["recall_score_macro"] == pytest.approx(0.5)
    assert metrics["norm_macro_recall"] == pytest.approx((0.5 - 1 / 3) / (2 / 3))
    assert math.isfinite(metrics["log_loss"])


def test_perfect_multiclass_scores():
    classes = np.array([0, 1, 2])
    y_true = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.eye(3)[y_true] * 0.9 + 0.1 / 3
    metrics = classification_metrics(y_true, y_true, probabilities, classes)
    for name in ("accuracy", "AUC_weighted", "AUC_micro", "f1_score_macro", "norm_macro_recall",
                 "matthews_correlation", "average_precision_score_weighted"):
        assert metrics[name] == pytest.approx(1.0), name


def test_regression_metrics_normalize_by_the_label_range():
    metrics = regression_metrics([1, 2, 3, 4], [1, 2, 3, 5], label_range=10.0)

    assert set(metrics) == set(catalog.METRICS[catalog.REGRESSION])
    assert metrics["root_mean_squared_error"] == pytest.approx(0.5)
    assert metrics["mean_absolute_error"] == pytest.approx(0.25)
    assert metrics["normalized_root_mean_squared_error"] == pytest.approx(0.05)
    assert metrics["normalized_mean_absolute_error"] == pytest.approx(0.025)
    assert metrics["spearman_correlation"] == pytest.approx(1.0)
    # Squared error 1 against a total sum of squares of 5.
    assert metrics["r2_score"] == pytest.approx(0.8)
    # Residual variance 0.1875 against label variance 1.25.
    assert metrics["explained_variance"] == pytest.approx(0.85)


def test_constant_predictions_have_zero_rank_correlation():
    assert regression_metrics([1, 2, 3], [2, 2, 2], 2.0)["spearman_correlation"] == 0.0


def test_average_skips_undefined_values():
    assert average([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 4.0}]) == {"a": 2.0, "b": 4.0}
