"""Pipeline proposers: which scaler, estimator and hyperparameters to try next.

`Proposer` is the interface the scheduler uses. `PortfolioRandomProposer`
first tries a fixed portfolio of strong defaults, one per estimator, then
samples the search space at random. Proposals depend only on the seed and
the iteration index, so a run is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

from automl.common import catalog


@dataclass(frozen=True)
class Proposal:
    """A pipeline to try."""

    scaler: str
    estimator: str
    hyperparameters: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.estimator if self.scaler == "None" else f"{self.scaler} {self.estimator}"

    def key(self) -> tuple:
        return self.scaler, self.estimator, tuple(sorted(self.hyperparameters.items()))


@dataclass(frozen=True)
class Trial:
    """A finished iteration as the proposer sees it; `score` is None when it failed."""

    proposal: Proposal
    score: float | None


class Proposer(Protocol):
    """Chooses the pipeline of each new iteration."""

    def propose(self, index: int, history: list[Trial]) -> Proposal:
        """Return the pipeline for iteration `index`, given the finished ones."""
        ...


# Distributions: ("log", low, high), ("float", low, high), ("int", low, high),
# ("choice", [values]), or a plain constant.
_TREE_SPACE = {
    "n_estimators": ("int", 50, 300),
    "max_features": ("choice", ["sqrt", "log2", 0.5, 0.8]),
    "min_samples_leaf": ("int", 1, 10),
    "max_depth": ("choice", [None, 8, 16, 32]),
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
    },
}

# Portfolio of defaults that do well across tabular data sets, best first.
# Each entry is (scaler, estimator, hyperparameters).
PORTFOLIOS = {
    catalog.CLASSIFICATION: [
        ("StandardScaler", "LogisticRegression", {"C": 1.0, "max_iter": 1000}),
        ("StandardScaler", "SVM", {"C": 1.0, "gamma": "scale", "kernel": "rbf"}),
        ("None", "RandomForest", {"n_estimators": 200}),
        ("None", "ExtremeRandomTrees", {"n_estimators": 200}),
        ("MinMaxScaler", "KNN", {"n_neighbors": 5, "weights": "distance"}),
        ("None", "GradientBoosting", {"n_estimators": 100}),
        ("StandardScaler", "LinearSVM", {"C": 1.0}),
        ("StandardScaler", "SGD", {"loss": "modified_huber"}),
        ("None", "DecisionTree", {"min_samples_leaf": 2}),
        ("None", "GaussianNaiveBayes", {}),
    ],
    catalog.REGRESSION: [
        ("None", "GradientBoosting", {"n_estimators": 200}),
        ("None", "RandomForest", {"n_estimators": 200}),
        ("None", "ExtremeRandomTrees", {"n_estimators": 200}),
        ("StandardScaler", "ElasticNet", {"alpha": 0.01, "l1_ratio": 0.5}),
        ("StandardScaler", "KNN", {"n_neighbors": 7, "weights": "distance"}),
        ("StandardScaler", "LassoLars", {"alpha": 0.001}),
        ("StandardScaler", "SGD", {"loss": "huber"}),
        ("None", "DecisionTree", {"min_samples_leaf": 5}),
    ],
}

# Trees and naive Bayes do not depend on feature scale, so they get no scaler.
SCALE_FREE = {"DecisionTree", "RandomForest", "ExtremeRandomTrees", "GradientBoosting", "GaussianNaiveBayes"}


def _sample(rng: random.Random, distribution):
    if not isinstance(distribution, tuple):
        return distribution
    kind = distribution[0]
    if kind == "log":
        return math.exp(rng.uniform(math.log(distribution[1]), math.log(distribution[2])))
    if kind == "float":
        return rng.uniform(distribution[1], distribution[2])
    if kind == "int":
        return rng.randint(distribution[1], distribution[2])
    return rng.choice(distribution[1])


class PortfolioRandomProposer:
    """Portfolio of defaults first, then random search.

    Parameters
    ----------
    task : int
        `automl.v1.Task` value.
    estimators : list of str
        Estimators the experiment allows.
    seed : int
        Seed; with the same seed and history the same proposals follow.
    """

    def __init__(self, task: int, estimators: list[str], seed: int = 0):
        self.task = task
        self.estimators = list(estimators)
        self.seed = seed
        self.portfolio = [Proposal(s, e, dict(h)) for s, e, h in PORTFOLIOS[task] if e in self.estimators]

    def propose(self, index: int, history: list[Trial]) -> Proposal:
        """Return portfolio entry `index`, or a random sample past the portfolio."""
        if index < len(self.portfolio):
            return self.portfolio[index]
        tried = {trial.proposal.key() for trial in history}
        rng = random.Random(f"{self.seed}-{index}")
        proposal = self._random(rng)
        # A few redraws avoid repeating a configuration in small spaces.
        for _ in range(20):
            if proposal.key() not in tried:
                break
            proposal = self._random(rng)
        return proposal

    def _random(self, rng: random.Random) -> Proposal:
        estimator = rng.choice(self.estimators)
        if estimator in SCALE_FREE:
            scaler = "None"
        else:
            scaler = rng.choice([s for s in catalog.SCALERS if s != "None"])
        space = SEARCH_SPACES[self.task][estimator]
        hyperparameters = {name: _sample(rng, distribution) for name, distribution in space.items()}
        return Proposal(scaler, estimator, hyperparameters)
