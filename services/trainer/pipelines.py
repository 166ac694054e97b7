"""The catalog's scaler and estimator names as scikit-learn pipelines.

One table maps each catalog name to a scikit-learn class, the defaults the
trainer uses, the parameters it fixes and, where one exists, a wrapper: every
classifier has to give probabilities because AUC and log_loss need them.
Hyperparameters arrive from a `google.protobuf.Struct`, where every number is
a float, so integral floats become ints where scikit-learn expects an int.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
from sklearn.base import BaseEstimator
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
from sklearn.linear_model import ElasticNet, LassoLars, LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (MaxAbsScaler, MinMaxScaler, Normalizer, RobustScaler,
                                   StandardScaler)
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError, make_constraint
from xgboost import XGBClassifier, XGBRegressor

from automl.common import catalog
from automl.common.errors import invalid_field
from automl.common.featurization import Featurizer
from automl.common.estimators import LabelEncodedClassifier, NumericArray

SCALERS: dict[str, type | None] = {
    "StandardScaler": StandardScaler,
    "MinMaxScaler": MinMaxScaler,
    "MaxAbsScaler": MaxAbsScaler,
    "RobustScaler": RobustScaler,
    "Normalizer": Normalizer,
    "None": None,
}

# Parameters the trainer sets itself: from the request's seed and the node's cores.
MANAGED = {"random_state": "the request's seed", "n_jobs": "the node's core count"}


def _calibrated(estimator: BaseEstimator, cores: int) -> BaseEstimator:
    # LinearSVC has no predict_proba; sigmoid calibration on 3 folds adds one.
    return CalibratedClassifierCV(estimator, cv=3, n_jobs=None if cores == 1 else cores)


def _threaded(estimator: BaseEstimator, cores: int) -> BaseEstimator:
    # NOTE: one OpenMP thread, whatever the node's cores. LightGBM and XGBoost spin-wait in OpenMP, and when
    # nodes share the machine's cores (the local provider) n_jobs=2 made a 3-fold fit on 5,400 rows take
    # 5.7 s instead of 0.6 s on a loaded 2-core machine. Revisit for dedicated nodes and large data sets.
    return estimator.set_params(n_jobs=1)


def _label_encoded(estimator: BaseEstimator, cores: int) -> BaseEstimator:
    return LabelEncodedClassifier(_threaded(estimator, cores))


@dataclass(frozen=True)
class EstimatorEntry:
    """Recipe that turns one catalog estimator into a scikit-learn estimator.

    Attributes
    ----------
    cls : type
        The scikit-learn class the hyperparameters belong to.
    defaults : dict
        Values used unless the request sets them.
    fixed : dict
        Values the trainer always passes.
    reserved : dict
        Parameters the request may not set, each with the reason.
    allowed : dict
        Parameters restricted to some of the values scikit-learn accepts.
    wrap : callable, optional
        Turns the built estimator into the one the pipeline uses, for
        example one with `predict_proba`.
    integers : frozenset
        Parameters that take an int where the class signature does not say so.
    """

    cls: type
    defaults: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)
    allowed: dict[str, tuple] = field(default_factory=dict)
    allowed_reason: str = ""
    wrap: Callable[[BaseEstimator, int], BaseEstimator] | None = None
    integers: frozenset = frozenset()


# XGBoost's __init__ takes **kwargs, so its integer parameters are listed by hand.
XGBOOST_INTEGERS = frozenset({"n_estimators", "max_depth", "max_leaves", "max_bin", "num_parallel_tree"})


ESTIMATORS: dict[int, dict[str, EstimatorEntry]] = {
    catalog.CLASSIFICATION: {
        "LogisticRegression": EstimatorEntry(LogisticRegression, defaults={"max_iter": 1000}),
        "SGD": EstimatorEntry(SGDClassifier, defaults={"loss": "log_loss"},
                              allowed={"loss": ("log_loss", "modified_huber")},
                              allowed_reason="only these losses give the probabilities AUC and log_loss need"),
        "KNN": EstimatorEntry(KNeighborsClassifier),
        "DecisionTree": EstimatorEntry(DecisionTreeClassifier),
        "RandomForest": EstimatorEntry(RandomForestClassifier),
        "ExtremeRandomTrees": EstimatorEntry(ExtraTreesClassifier),
        "GradientBoosting": EstimatorEntry(GradientBoostingClassifier),
        # scikit-learn 1.9 deprecates probability=True for CalibratedClassifierCV(SVC(), ensemble=False),
        # but on digits that scores a lower AUC (0.994 against 0.999: one-vs-rest sigmoids instead of
        # libsvm's pairwise coupling) and takes twice as long. Revisit before scikit-learn 1.11.
        "SVM": EstimatorEntry(SVC, fixed={"probability": True}, reserved={
            "probability": "it is always true, because AUC and log_loss need probabilities"}),
        "LinearSVM": EstimatorEntry(LinearSVC, wrap=_calibrated),
        "GaussianNaiveBayes": EstimatorEntry(GaussianNB),
        "LightGBM": EstimatorEntry(LGBMClassifier, fixed={"verbose": -1}, wrap=_threaded,
                                   reserved={"verbose": "the trainer silences LightGBM's output"}),
        "XGBoostClassifier": EstimatorEntry(XGBClassifier, defaults={"tree_method": "hist"}, wrap=_label_encoded,
                                            integers=XGBOOST_INTEGERS),
    },
    catalog.REGRESSION: {
        "ElasticNet": EstimatorEntry(ElasticNet),
        "LassoLars": EstimatorEntry(LassoLars),
        "SGD": EstimatorEntry(SGDRegressor),
        "KNN": EstimatorEntry(KNeighborsRegressor),
        "DecisionTree": EstimatorEntry(DecisionTreeRegressor),
        "RandomForest": EstimatorEntry(RandomForestRegressor),
        "ExtremeRandomTrees": EstimatorEntry(ExtraTreesRegressor),
        "GradientBoosting": EstimatorEntry(GradientBoostingRegressor),
        "LightGBM": EstimatorEntry(LGBMRegressor, fixed={"verbose": -1}, wrap=_threaded,
                                   reserved={"verbose": "the trainer silences LightGBM's output"}),
        "XGBoostRegressor": EstimatorEntry(XGBRegressor, defaults={"tree_method": "hist"}, wrap=_threaded,
                                           integers=XGBOOST_INTEGERS),
    },
}

# The table must cover exactly the catalog, so a new catalog name fails at import, not at run time.
for _task, _names in catalog.ESTIMATORS.items():
    assert set(ESTIMATORS[_task]) == set(_names), f"pipelines.ESTIMATORS is out of step with the catalog for {_task}"
assert set(SCALERS) == set(catalog.SCALERS), "pipelines.SCALERS is out of step with the catalog"

HYPERPARAMETERS_FIELD = "pipeline.hyperparameters"


def _coerce(cls: type, name: str, value):
    """Return `value` as an int when it is an integral float that only an int constraint accepts."""
    if not isinstance(value, float) or not value.is_integer():
        return value
    constraints = getattr(cls, "_parameter_constraints", {}).get(name)
    if constraints is None:
        parameter = inspect.signature(cls).parameters.get(name)
        if parameter is None:  # Passed through **kwargs, as XGBoost's parameters are: see EstimatorEntry.integers.
            return value
        default = parameter.default
        return int(value) if isinstance(default, int) and not isinstance(default, bool) else value
    checks = [make_constraint(c) for c in constraints if c != "no_validation"]
    # A float the parameter accepts as a float keeps its meaning: max_features=1.0 is "all features".
    if any(c.is_satisfied_by(value) for c in checks):
        return value
    if any(c.is_satisfied_by(int(value)) for c in checks):
        return int(value)
    return value


def resolve_hyperparameters(task: int, estimator: str, requested: dict) -> dict:
    """Check and coerce the request's hyperparameters for one estimator.

    Parameters
    ----------
    task : int
        `catalog.CLASSIFICATION` or `catalog.REGRESSION`.
    estimator : str
        Catalog estimator name, already checked against the catalog.
    requested : dict
        Hyperparameters as decoded from the Struct.

    Returns
    -------
    dict
        Keyword arguments for the scikit-learn class, defaults included.

    Raises
    ------
    InvalidArgument
        On `pipeline.hyperparameters` for an unknown name, a parameter the
        trainer sets itself, or a value scikit-learn rejects.
    """
    entry = ESTIMATORS[task][estimator]
    valid = sorted(set(entry.cls().get_params()) - set(MANAGED) - set(entry.reserved))
    params = dict(entry.defaults)
    for name, value in requested.items():
        if name in MANAGED:
            raise invalid_field(HYPERPARAMETERS_FIELD, f"'{name}' is set by the trainer from {MANAGED[name]}; "
                                                       "remove it from the hyperparameters")
        if name in entry.reserved:
            raise invalid_field(HYPERPARAMETERS_FIELD, f"'{name}' cannot be set for {estimator}: "
                                                       f"{entry.reserved[name]}; remove it")
        if name not in valid:
            raise invalid_field(HYPERPARAMETERS_FIELD,
                                f"'{name}' is not a hyperparameter of {estimator} ({entry.cls.__name__}); "
                                f"valid names are: {', '.join(valid)}")
        if name in entry.allowed and value not in entry.allowed[name]:
            choices = ", ".join(map(repr, entry.allowed[name]))
            raise invalid_field(HYPERPARAMETERS_FIELD, f"'{name}'={value!r} is not supported for {estimator}: "
                                                       f"{entry.allowed_reason}; use one of {choices}")
        if name in entry.integers and isinstance(value, float) and value.is_integer():
            value = int(value)
        params[name] = _coerce(entry.cls, name, value)

    # LightGBM and XGBoost declare no scikit-learn parameter constraints; they check values when fitting.
    try:
        if hasattr(entry.cls, "_parameter_constraints"):
            entry.cls(**params)._validate_params()
    except InvalidParameterError as error:
        raise invalid_field(HYPERPARAMETERS_FIELD, f"{estimator}: {error}") from error
    return params


def make_estimator(task: int, estimator: str, params: dict, seed: int, cores: int) -> BaseEstimator:
    """Build the scikit-learn estimator of a catalog name with resolved hyperparameters."""
    entry = ESTIMATORS[task][estimator]
    available = entry.cls().get_params()
    kwargs = {**params, **entry.fixed}
    if "random_state" in available:
        kwargs["random_state"] = seed % 2**32
    if "n_jobs" in available:
        kwargs["n_jobs"] = None if cores == 1 else cores
    built = entry.cls(**kwargs)
    return entry.wrap(built, cores) if entry.wrap else built


def column_kinds(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Split columns into numeric (booleans included) and categorical ones."""
    numeric = [c for c in features.columns
               if pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_bool_dtype(features[c])]
    categorical = [c for c in features.columns if c not in set(numeric)]
    return numeric, categorical


def make_preprocessor(task: int, seed: int = 0) -> Featurizer:
    """Return the featurization step: column types, imputation, encodings, date and text features."""
    return Featurizer(target_type="continuous" if task == catalog.REGRESSION else "auto", random_state=seed % 2**32)


def build_pipeline(task: int, scaler: str, estimator: str, params: dict, seed: int = 0, cores: int = 1,
                   features: pd.DataFrame | None = None) -> Pipeline:
    """Assemble preprocessing (when `features` is given), scaler and estimator.

    Parameters
    ----------
    features : DataFrame, optional
        Training features; when given, a Featurizer comes first, so the
        pipeline takes raw rows. Otherwise a NumericArray step comes first,
        so that no estimator receives the column names.
    """
    steps = []
    if features is not None:
        steps.append(("featurize", make_preprocessor(task, seed)))
    else:
        steps.append(("to_array", NumericArray()))
    if SCALERS[scaler] is not None:
        steps.append(("scaler", SCALERS[scaler]()))
    steps.append(("estimator", make_estimator(task, estimator, params, seed, cores)))
    return Pipeline(steps)
