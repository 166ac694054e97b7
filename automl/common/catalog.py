"""Names every service agrees on: tasks, scalers, estimators and metrics.

Names follow Azure AutoML where it has one (`KNN`, `ExtremeRandomTrees`,
`AUC_weighted`, `normalized_root_mean_squared_error`), so users can move
their configurations over unchanged.
"""

from __future__ import annotations

from automl.v1 import pipeline_pb2

CLASSIFICATION = pipeline_pb2.TASK_CLASSIFICATION
REGRESSION = pipeline_pb2.TASK_REGRESSION

TASK_NAMES = {CLASSIFICATION: "classification", REGRESSION: "regression"}

SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "Normalizer", "None")

ESTIMATORS = {
    CLASSIFICATION: (
        "LogisticRegression", "SGD", "KNN", "DecisionTree", "RandomForest", "ExtremeRandomTrees",
        "GradientBoosting", "SVM", "LinearSVM", "GaussianNaiveBayes", "LightGBM", "XGBoostClassifier",
    ),
    REGRESSION: (
        "ElasticNet", "LassoLars", "SGD", "KNN", "DecisionTree", "RandomForest", "ExtremeRandomTrees",
        "GradientBoosting", "LightGBM", "XGBoostRegressor",
    ),
}

# Ensembles of earlier iterations, scheduled by the orchestrator as the last
# iterations of an experiment. They are not in ESTIMATORS, so an experiment
# cannot allow or block them as base models.
ENSEMBLES = ("VotingEnsemble", "StackEnsemble")

# Every metric the trainer reports for a task.
METRICS = {
    CLASSIFICATION: (
        "accuracy", "AUC_weighted", "AUC_macro", "AUC_micro", "balanced_accuracy", "log_loss",
        "f1_score_weighted", "f1_score_macro", "precision_score_weighted", "precision_score_macro",
        "recall_score_weighted", "recall_score_macro", "norm_macro_recall",
        "average_precision_score_weighted", "matthews_correlation",
    ),
    REGRESSION: (
        "r2_score", "spearman_correlation", "normalized_root_mean_squared_error",
        "normalized_mean_absolute_error", "root_mean_squared_error", "mean_absolute_error",
        "explained_variance",
    ),
}

# Metrics an experiment may optimize, as Azure AutoML allows them per task.
PRIMARY_METRICS = {
    CLASSIFICATION: (
        "accuracy", "AUC_weighted", "norm_macro_recall", "average_precision_score_weighted",
        "precision_score_weighted",
    ),
    REGRESSION: (
        "spearman_correlation", "normalized_root_mean_squared_error", "r2_score",
        "normalized_mean_absolute_error",
    ),
}

DEFAULT_PRIMARY_METRIC = {CLASSIFICATION: "accuracy", REGRESSION: "spearman_correlation"}

# Error metrics: lower is better. Every other metric is a score: higher is better.
LOWER_IS_BETTER = frozenset({
    "log_loss", "normalized_root_mean_squared_error", "normalized_mean_absolute_error",
    "root_mean_squared_error", "mean_absolute_error",
})


def higher_is_better(metric: str) -> bool:
    """Return whether larger values of `metric` are better."""
    return metric not in LOWER_IS_BETTER


def is_better(metric: str, candidate: float, incumbent: float | None) -> bool:
    """Return whether `candidate` beats `incumbent` (None: no incumbent yet) on `metric`."""
    if incumbent is None:
        return True
    return candidate > incumbent if higher_is_better(metric) else candidate < incumbent
