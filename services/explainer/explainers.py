"""SHAP explainers chosen by model family, with outputs in one shape.

Tree models get `shap.TreeExplainer`, linear models `shap.LinearExplainer`
and every other model the model-agnostic `shap.PermutationExplainer`. Values
come back as (rows, features) for regression and (rows, features, classes)
for classification, whatever shape the SHAP explainer returned.

The explained output depends on the explainer, as in SHAP itself. Tree
explainers explain what the trees output: class probabilities for decision
trees and forests, log-odds for gradient boosting. Linear explainers explain
the decision function, which is log-odds for logistic regression. The
permutation explainer explains `predict` for regression and `predict_proba`
for classification, or `decision_function` when a classifier has no
probabilities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import shap
from shap.utils._exceptions import InvalidModelError
from sklearn import ensemble, tree
from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC, LinearSVR

from automl.common.estimators import LabelEncodedClassifier

TREE_MODELS = (tree.BaseDecisionTree, ensemble.RandomForestClassifier, ensemble.RandomForestRegressor,
               ensemble.ExtraTreesClassifier, ensemble.ExtraTreesRegressor, ensemble.GradientBoostingClassifier,
               ensemble.GradientBoostingRegressor, ensemble.HistGradientBoostingClassifier,
               ensemble.HistGradientBoostingRegressor)

# Matched by module name so that neither library has to be installed.
TREE_MODULE_PREFIXES = ("lightgbm.", "xgboost.")

# These have `coef_` but predict through a non-identity link, so a linear
# explanation would not add up to their predictions.
NONLINEAR_LINK_MODELS = (PoissonRegressor, GammaRegressor, TweedieRegressor)

# Masked inputs the permutation explainer evaluates per row. One permutation
# forward and backward needs 2 * features + 1 of them, so wide data sets get
# one permutation per row and narrow ones several; SHAP's own default is 500.
PERMUTATION_EVALS_PER_ROW = 200



@dataclass
class ShapValues:
    """SHAP values of some rows, normalized to one layout.

    Attributes
    ----------
    explainer : str
        `tree`, `linear` or `permutation`.
    values : numpy.ndarray
        (rows, features) for regression, (rows, features, classes) for classification.
    expected_values : numpy.ndarray
        Expected model output per class, or one value for regression.
    feature_names : list of str
        Names of the explained inputs, in the order of the features axis.
    class_labels : list of str
        Class labels in the order of the classes axis; empty for regression.
    """

    explainer: str
    values: np.ndarray
    expected_values: np.ndarray
    feature_names: list[str]
    class_labels: list[str]

    @property
    def row_count(self) -> int:
        """Number of rows explained."""
        return int(self.values.shape[0])


def split_pipeline(model) -> tuple[list, object]:
    """Return the transformer steps (without `passthrough` ones) and the final estimator.

    A `LabelEncodedClassifier` is unwrapped to the model it fitted, whose
    outputs follow the same sorted class order.
    """
    if not isinstance(model, Pipeline):
        return [], _unwrap(model)
    transformers = [step for _, step in model.steps[:-1] if step is not None and step != "passthrough"]
    return transformers, _unwrap(model.steps[-1][1])


def _unwrap(estimator):
    return estimator.estimator_ if isinstance(estimator, LabelEncodedClassifier) else estimator


def keeps_columns(transformers: list, feature_names: list[str]) -> bool:
    """Return whether the transformers map each input column to one output column of the same name.

    Scalers do; a one-hot ColumnTransformer renames and adds columns, so
    its output columns are not the data set's columns any more.
    """
    names = np.asarray(feature_names, dtype=object)
    for step in transformers:
        try:
            names_out = np.asarray(step.get_feature_names_out(names), dtype=object)
        except (AttributeError, ValueError, TypeError):
            return False
        if names_out.shape != names.shape or not (names_out == names).all():
            return False
    return True


def model_family(estimator) -> str:
    """Return `tree`, `linear` or `permutation` for a fitted estimator."""
    if isinstance(estimator, TREE_MODELS) or type(estimator).__module__.startswith(TREE_MODULE_PREFIXES):
        return "tree"
    module = type(estimator).__module__
    is_linear_model = module.startswith("sklearn.linear_model.") or isinstance(estimator, (LinearSVC, LinearSVR))
    if is_linear_model and hasattr(estimator, "coef_") and not isinstance(estimator, NONLINEAR_LINK_MODELS):
        return "linear"
    return "permutation"


class RawRowCodec:
    """Numeric matrix view of raw data set rows, for explaining a whole pipeline.

    SHAP maskers work on numeric arrays, while a pipeline with a
    ColumnTransformer may need string columns. Non-numeric columns become
    integer codes here, and `decode` turns masked matrices back into frames.
    """

    def __init__(self, frame: pd.DataFrame):
        self.columns = list(frame.columns)
        self.categories: dict[str, np.ndarray] = {}
        encoded = {}
        for column in self.columns:
            values = frame[column]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                encoded[column] = values.to_numpy(dtype=float)
                continue
            codes, uniques = pd.factorize(values, use_na_sentinel=False)
            self.categories[column] = np.asarray(uniques, dtype=object)
            encoded[column] = codes.astype(float)
        self.matrix = np.column_stack([encoded[column] for column in self.columns]).astype(float)

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        """Turn a (masked) numeric matrix back into a frame with the original columns and values."""
        frame = pd.DataFrame(matrix, columns=self.columns)
        for column, uniques in self.categories.items():
            frame[column] = uniques[frame[column].to_numpy().astype(int)]
        return frame


def compute_shap(model, frame: pd.DataFrame, background: pd.DataFrame, task: str, seed: int,
                 deadline: float = float("inf")) -> ShapValues:
    """Compute SHAP values of `model` on the rows of `frame`.

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline or estimator
        Fitted model whose input columns are `frame`'s columns.
    frame : pandas.DataFrame
        Rows to explain, in the model's feature order.
    background : pandas.DataFrame
        Background rows for the linear and permutation explainers.
    task : str
        `classification` or `regression`.
    seed : int
        Seed of the permutation explainer.
    deadline : float
        `time.monotonic()` value after which the permutation explainer stops
        taking new rows, so the result may hold fewer rows than `frame`. It
        always explains the first rows, and tree and linear explainers
        explain every row.

    Returns
    -------
    ShapValues
    """
    feature_names = [str(name) for name in frame.columns]
    transformers, estimator = split_pipeline(model)
    classification = task == "classification"
    class_labels = [str(label) for label in model.classes_] if classification else []

    # A model without transformer steps that takes text columns (an ensemble of
    # featurizing pipelines, for one) also needs raw rows: they are not floats.
    numeric = all(pd.api.types.is_numeric_dtype(frame[column]) for column in frame.columns)
    if not keeps_columns(transformers, feature_names) or not numeric:
        codec = RawRowCodec(pd.concat([frame, background], ignore_index=True))
        rows, background_rows = codec.matrix[:len(frame)], codec.matrix[len(frame):]
        predict = _output_function(model, classification, codec.decode)
        values, expected = _permutation(predict, rows, background_rows, seed, deadline)
        return _normalize("permutation", values, expected, feature_names, class_labels)

    rows = _transform(transformers, frame)
    background_rows = _transform(transformers, background)
    family = model_family(estimator)

    if family == "tree":
        try:
            explainer = shap.TreeExplainer(estimator)
        except InvalidModelError:
            # SHAP 0.51 rejects multi-class GradientBoostingClassifier, for one.
            family = "permutation"
        else:
            explanation = explainer(rows, check_additivity=False)
            return _normalize("tree", explanation.values, explanation.base_values, feature_names, class_labels)

    if family == "linear":
        explanation = shap.LinearExplainer(estimator, background_rows)(rows)
        return _normalize("linear", explanation.values, explanation.base_values, feature_names, class_labels)

    predict = _output_function(estimator, classification, _as_input_of(estimator))
    values, expected = _permutation(predict, rows, background_rows, seed, deadline)
    return _normalize("permutation", values, expected, feature_names, class_labels)


def _transform(transformers: list, frame: pd.DataFrame) -> np.ndarray:
    data = frame
    for step in transformers:
        data = step.transform(data if hasattr(step, "feature_names_in_") else np.asarray(data))
    return np.asarray(data, dtype=float)


def _as_input_of(estimator) -> Callable[[np.ndarray], object]:
    # An estimator fitted on a frame warns about arrays without column names.
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return lambda matrix: matrix
    return lambda matrix: pd.DataFrame(matrix, columns=names)


def _output_function(model, classification: bool, to_input: Callable) -> Callable[[np.ndarray], np.ndarray]:
    if not classification:
        method = model.predict
    elif hasattr(model, "predict_proba"):
        method = model.predict_proba
    else:
        method = model.decision_function
    return lambda matrix: np.asarray(method(to_input(matrix)), dtype=float)


def _permutation(predict: Callable, rows: np.ndarray, background: np.ndarray, seed: int,
                 deadline: float) -> tuple[np.ndarray, np.ndarray]:
    masker = shap.maskers.Independent(background, max_samples=len(background))
    # PermutationExplainer seeds NumPy's global generator, which takes 32-bit seeds.
    explainer = shap.PermutationExplainer(predict, masker, seed=seed % 2**32)
    max_evals = max(PERMUTATION_EVALS_PER_ROW, 2 * rows.shape[1] + 1)

    # One row per call, so that a slow model overruns the deadline by one row at most.
    values, expected = [], []
    for row in rows:
        explanation = explainer(row[np.newaxis, :], max_evals=max_evals, silent=True)
        values.append(explanation.values)
        expected.append(explanation.base_values)
        if time.monotonic() > deadline:
            break
    return np.concatenate(values), np.concatenate(expected)


def _normalize(kind: str, values, base_values, feature_names: list[str], class_labels: list[str]) -> ShapValues:
    values = np.asarray(values, dtype=float)
    # Base values are per row, but the same for every row with these explainers.
    expected = np.asarray(base_values, dtype=float).reshape(values.shape[0], -1).mean(axis=0)

    if class_labels and values.ndim == 2:
        if len(class_labels) != 2:
            raise ValueError(f"{kind} explainer returned one output for {len(class_labels)} classes")
        # A single output of a binary classifier is a margin (log-odds or
        # decision function) of the positive class, and the negative class's
        # margin is its negation.
        values = np.stack([-values, values], axis=-1)
        expected = np.concatenate([-expected, expected])
    elif not class_labels and values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]

    return ShapValues(explainer=kind, values=values, expected_values=expected, feature_names=feature_names,
                      class_labels=class_labels)


def warm_up() -> None:
    """Run a tiny permutation explanation so SHAP's Numba kernels compile before the first request.

    Otherwise the first permutation explanation in a process spends the
    compile time: about 17 s with SHAP 0.51 on an idle 2-core machine, and
    40 s or more on a loaded one. SHAP's kernels are not cached on disk.
    """
    rng = np.random.default_rng(0)
    rows, background = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    weights = np.array([1.0, -1.0, 0.5])
    _permutation(lambda x: x @ weights, rows, background, 0, float("inf"))
    _permutation(lambda x: np.column_stack([x @ weights, -x @ weights]), rows, background, 0, float("inf"))
