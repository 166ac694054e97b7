"""The pool of configurations the starting portfolio is chosen from.

Every candidate is a library default or a round hand setting of the kind
found in the libraries' tuning guides. The selection in `benchmarks.portfolio`
decides which of them make the portfolio, and in which order, from their
cross-validated scores on the data sets of `benchmarks.portfolio_suite`.

Boosting settings span the usual trade-off between the learning rate and the
number of rounds, and tree sizes from depth-2 stumps to 63 leaves. LightGBM's
"Parameters Tuning" guide advises a small learning rate with more rounds for
accuracy, and bagging and feature fractions against over-fitting. Forests vary
the share of features tried per split. Linear models, KNN and the RBF SVM
come with scikit-learn's defaults and one step of regularization either way.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class Candidate:
    """One configuration of the pool: a short name, the scaler, the catalog estimator and its hyperparameters."""

    name: str
    scaler: str
    estimator: str
    hyperparameters: dict


# The regularization terms are the search space's lower bound of 1e-3 in place of LightGBM's 0.
_LIGHTGBM_BASE = {"subsample_freq": 1, "reg_alpha": 1e-3, "reg_lambda": 1e-3}
_XGBOOST_BASE = {"min_child_weight": 1.0, "reg_alpha": 1e-3, "reg_lambda": 1.0}


def _lightgbm(rounds: int, leaves: int, leaf_rows: int, rate: float, columns: float, rows: float) -> dict:
    return dict(_LIGHTGBM_BASE, n_estimators=rounds, num_leaves=leaves, min_child_samples=leaf_rows,
                learning_rate=rate, colsample_bytree=columns, subsample=rows)


def _xgboost(rounds: int, depth: int, rate: float, columns: float, rows: float) -> dict:
    return dict(_XGBOOST_BASE, n_estimators=rounds, max_depth=depth, learning_rate=rate,
                colsample_bytree=columns, subsample=rows)


_BOOSTING = {
    # LightGBM 4.7's defaults, then larger and slower settings.
    "lightgbm_default": ("LightGBM", _lightgbm(100, 31, 20, 0.1, 1.0, 1.0)),
    "lightgbm_small_fast": ("LightGBM", _lightgbm(200, 7, 30, 0.1, 0.8, 0.8)),
    "lightgbm_small_slow": ("LightGBM", _lightgbm(1000, 15, 20, 0.03, 0.6, 0.8)),
    "lightgbm_large": ("LightGBM", _lightgbm(500, 63, 10, 0.05, 0.6, 0.8)),
    "lightgbm_many_rounds": ("LightGBM", _lightgbm(2000, 31, 10, 0.02, 0.5, 0.8)),
    # XGBoost 2.1's defaults (hist trees), then the same span of depths and rates.
    "xgboost_default": ("XGBoost", _xgboost(100, 6, 0.3, 1.0, 1.0)),
    "xgboost_stumps": ("XGBoost", _xgboost(300, 2, 0.1, 1.0, 1.0)),
    "xgboost_shallow": ("XGBoost", _xgboost(500, 3, 0.03, 0.6, 0.8)),
    "xgboost_medium": ("XGBoost", _xgboost(1000, 6, 0.03, 0.6, 0.8)),
    "xgboost_deep": ("XGBoost", _xgboost(400, 8, 0.05, 0.8, 0.8)),
    "xgboost_many_rounds": ("XGBoost", _xgboost(2000, 4, 0.02, 0.5, 0.8)),
}

_FOREST = {"n_estimators": 100, "min_samples_leaf": 1, "max_depth": None}

_TREES = {
    "extra_trees_sqrt": ("ExtremeRandomTrees", dict(_FOREST, max_features="sqrt")),
    "extra_trees_half": ("ExtremeRandomTrees", dict(_FOREST, max_features=0.5)),
    "extra_trees_all": ("ExtremeRandomTrees", dict(_FOREST, max_features=1.0)),
    "random_forest_sqrt": ("RandomForest", dict(_FOREST, max_features="sqrt")),
    "random_forest_half": ("RandomForest", dict(_FOREST, max_features=0.5)),
    "random_forest_leaf3": ("RandomForest", dict(_FOREST, max_features="sqrt", min_samples_leaf=3)),
    "gradient_boosting_default": ("GradientBoosting",
                                  {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0}),
}

_CLASSIFICATION_ONLY = [
    Candidate("logistic_c1", "StandardScaler", "LogisticRegression", {"C": 1.0, "max_iter": 1000}),
    Candidate("logistic_c0.1", "StandardScaler", "LogisticRegression", {"C": 0.1, "max_iter": 1000}),
    Candidate("logistic_c10", "StandardScaler", "LogisticRegression", {"C": 10.0, "max_iter": 1000}),
    Candidate("knn_5", "MinMaxScaler", "KNN", {"n_neighbors": 5, "weights": "distance", "p": 2}),
    Candidate("knn_15", "StandardScaler", "KNN", {"n_neighbors": 15, "weights": "distance", "p": 2}),
    Candidate("svm_c1", "StandardScaler", "SVM", {"C": 1.0, "gamma": "scale", "kernel": "rbf"}),
    Candidate("svm_c10", "StandardScaler", "SVM", {"C": 10.0, "gamma": "scale", "kernel": "rbf"}),
]

_REGRESSION_ONLY = [
    Candidate("elastic_net_0.01", "StandardScaler", "ElasticNet", {"alpha": 0.01, "l1_ratio": 0.5}),
    Candidate("elastic_net_0.1", "StandardScaler", "ElasticNet", {"alpha": 0.1, "l1_ratio": 0.5}),
    Candidate("knn_7", "StandardScaler", "KNN", {"n_neighbors": 7, "weights": "distance", "p": 2}),
    Candidate("knn_15", "StandardScaler", "KNN", {"n_neighbors": 15, "weights": "distance", "p": 2}),
]

_XGBOOST_NAMES = {CLASSIFICATION: "XGBoostClassifier", REGRESSION: "XGBoostRegressor"}


def candidates(task: str) -> list[Candidate]:
    """Return the pool of `task` ("classification" or "regression")."""
    shared = []
    for name, (estimator, hyperparameters) in {**_BOOSTING, **_TREES}.items():
        estimator = _XGBOOST_NAMES[task] if estimator == "XGBoost" else estimator
        if task == CLASSIFICATION and estimator in ("RandomForest", "ExtremeRandomTrees"):
            hyperparameters = dict(hyperparameters, criterion="gini")
        shared.append(Candidate(name, "None", estimator, hyperparameters))
    return shared + (_CLASSIFICATION_ONLY if task == CLASSIFICATION else _REGRESSION_ONLY)
