"""Search spaces and the starting portfolio of the pipeline search.

Each estimator has a space of hyperparameters, written as small tuples:
`("log", low, high)` and `("float", low, high)` for floats (log-uniform or
uniform), `("int", low, high)` and `("logint", low, high)` for integers,
`("choice", [values])` for categories, or a plain constant that every
proposal of the estimator sets.

The portfolio lists configurations tried before the model-based search
starts, in order. `python -m benchmarks.portfolio` chooses it on data sets
that are not in the quality benchmark. It cross-validates every
configuration of a pool of library defaults and round hand settings on each
data set. A greedy selection then keeps the ones that together come closest
to the best score on every data set, cheap ones first. It writes the result
to `portfolio.json` next to this module, and docs/portfolio.md lists the
data sets, the order and a check on data sets left out of the selection.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

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

PORTFOLIO_FILE = Path(__file__).with_name("portfolio.json")


def load_portfolios(path: Path = PORTFOLIO_FILE) -> dict[int, list[tuple[str, str, dict]]]:
    """Read the portfolio file: per task, (scaler, estimator, hyperparameters) in the order they are tried."""
    document = json.loads(path.read_text())
    return {task: [(entry["scaler"], entry["estimator"], entry["hyperparameters"]) for entry in document[key]]
            for task, key in catalog.TASK_NAMES.items()}


PORTFOLIOS = load_portfolios()

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
