"""ExplainModel without gRPC: load a stored model and a data set, compute SHAP values, store them.

`ModelExplainer.explain` validates an `ExplainRequest`, loads the model and
the data set from object storage, samples rows with the request's seed,
computes SHAP values (see `explainers`) and writes `shap_values.npz` and
`explanation.json` under the output prefix.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import structlog

from automl.common.datasets import DatasetCache, dataset_format
from automl.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from automl.common.models import ModelVersionMismatch, StoredModel, UntrustedModel, loads_model
from automl.common.storage import ObjectStore, parse_uri
from services.explainer import explainers
from services.explainer.explainers import ShapValues, compute_shap

log = structlog.get_logger(__name__)

DEFAULT_MAX_ROWS = 200
DEFAULT_BACKGROUND_ROWS = 50

# Upper limits of the row counts a request may ask for: (field, maximum).
ROW_LIMITS = (("max_rows", 10_000), ("background_rows", 1_000))

TASKS = ("classification", "regression")

# Seconds after which the permutation explainer stops taking new rows; the
# tree and linear explainers are fast enough to explain every sampled row.
# At 20 s a VotingEnsemble on digits got only 6 rows on a loaded 2-core
# machine, too few for a stable importance ranking.
DEFAULT_TIME_BUDGET = 60.0


@dataclass
class ExplainRequest:
    """Parameters of one explanation, as in `ExplainModelRequest`; `task` is `classification` or `regression`."""

    model_uri: str
    dataset_uri: str
    label_column: str
    task: str
    output_uri: str
    max_rows: int = 0
    background_rows: int = 0
    seed: int = 0


@dataclass
class FeatureImportance:
    """Mean absolute SHAP value of one feature."""

    feature: str
    importance: float


@dataclass
class ClassImportance:
    """Feature importance for one class, most important first."""

    class_label: str
    features: list[FeatureImportance]


@dataclass
class Explanation:
    """Summary of an explanation; the fields match the `Explanation` message."""

    explainer: str
    model_uri: str
    dataset_uri: str
    feature_names: list[str]
    class_labels: list[str]
    expected_values: list[float]
    overall_importance: list[FeatureImportance]
    per_class_importance: list[ClassImportance] = field(default_factory=list)
    shap_values_uri: str = ""
    row_count: int = 0


def validate(request: ExplainRequest, bucket: str) -> None:
    """Check every request field at once.

    Raises
    ------
    InvalidArgument
        With one violation per invalid field.
    """
    violations: list[FieldViolation] = []
    uri_checks = (("model_uri", request.model_uri, parse_uri), ("dataset.uri", request.dataset_uri, dataset_format),
                  ("output_uri", request.output_uri, parse_uri))
    for name, value, check in uri_checks:
        try:
            check(value, name)
        except InvalidArgument as error:
            violations.extend(error.violations)

    if request.output_uri.startswith("s3://") and not request.output_uri.startswith(f"s3://{bucket}/"):
        violations.append(FieldViolation(
            "output_uri", f"'{request.output_uri}' is outside this service's bucket; use s3://{bucket}/prefix/"))

    if request.task not in TASKS:
        violations.append(FieldViolation("task", "is required; use TASK_CLASSIFICATION or TASK_REGRESSION"))

    for name, maximum in ROW_LIMITS:
        value = getattr(request, name)
        if not 0 <= value <= maximum:
            violations.append(FieldViolation(name, f"is {value}; use 1 to {maximum}, or 0 for the default"))

    if violations:
        raise InvalidArgument(violations)


def sample_rows(row_count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return up to `size` distinct row positions in random order.

    The order stays random, not sorted, so that any prefix is a random
    sample too: the permutation explainer may stop after a prefix.
    """
    if row_count <= size:
        return rng.permutation(row_count)
    return rng.choice(row_count, size, replace=False)


def importance(values: np.ndarray, feature_names: list[str]) -> list[FeatureImportance]:
    """Return mean absolute SHAP values per feature, most important first.

    `values` is (rows, features); a classes axis, when present, is averaged too.
    """
    magnitude = np.abs(values).reshape(values.shape[0], values.shape[1], -1).mean(axis=(0, 2))
    order = np.argsort(-magnitude, kind="stable")
    return [FeatureImportance(feature_names[i], float(magnitude[i])) for i in order]


def npz_bytes(shap_values: ShapValues, row_indices: np.ndarray) -> bytes:
    """Serialize SHAP values as an NPZ file of plain arrays that loads with `allow_pickle=False`."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        shap_values=shap_values.values,
        expected_values=shap_values.expected_values,
        feature_names=np.asarray(shap_values.feature_names, dtype=str),
        class_labels=np.asarray(shap_values.class_labels, dtype=str),
        row_indices=np.asarray(row_indices, dtype=np.int64),
    )
    return buffer.getvalue()


class ModelExplainer:
    """Explains stored models on stored data sets.

    Parameters
    ----------
    store : ObjectStore
        Where models and data sets are read and results written.
    datasets : DatasetCache
        Local copies of data sets.
    time_budget : float
        Seconds after which a permutation explanation stops taking new rows.
    """

    def __init__(self, store: ObjectStore, datasets: DatasetCache, time_budget: float = DEFAULT_TIME_BUDGET):
        self.store = store
        self.datasets = datasets
        self.time_budget = time_budget
        # One explanation computes at a time: SHAP's permutation explainer
        # seeds NumPy's global generator, and explanations are CPU bound.
        self._compute_lock = threading.Lock()

    def explain(self, request: ExplainRequest, time_budget: float | None = None) -> Explanation:
        """Explain a stored model on rows of a data set and store the SHAP values.

        Parameters
        ----------
        request : ExplainRequest
            What to explain.
        time_budget : float, optional
            Tighter time budget for this call than the service's, in seconds
            from the start of the call, for example from the caller's deadline.

        Raises
        ------
        InvalidArgument
            On malformed fields, a data set without the label column, or a
            model file that is not a stored model.
        NotFound
            When the model or the data set does not exist.
        FailedPrecondition
            When the model's task differs from the request's, the data set
            lacks model features, or the model's library versions differ.
        """
        validate(request, self.store.bucket)
        started = time.monotonic()
        max_rows = request.max_rows or DEFAULT_MAX_ROWS
        background_rows = request.background_rows or DEFAULT_BACKGROUND_ROWS
        output_prefix = request.output_uri if request.output_uri.endswith("/") else request.output_uri + "/"

        model = self._load_model(request.model_uri)
        if model.task != request.task:
            raise FailedPrecondition(
                f"model {request.model_uri} was trained for {model.task}, but the request has task {request.task}; "
                f"send task {model.task}", "TASK_MISMATCH", {"model_task": model.task, "task": request.task})

        table = self.datasets.load(request.dataset_uri, request.label_column)
        missing = [name for name in model.feature_names if name not in table.features.columns]
        if missing:
            raise FailedPrecondition(
                f"data set {request.dataset_uri} lacks the model's feature columns {missing}; "
                "explain the model on a data set with the columns it was trained on",
                "MISSING_FEATURES", {"missing": ",".join(missing)})
        features = table.features[model.feature_names]

        # Seeds are int64 in the API; NumPy's generators take non-negative ones.
        rng = np.random.default_rng(request.seed % 2**64)
        row_indices = sample_rows(len(features), max_rows, rng)
        background_indices = sample_rows(len(features), background_rows, rng)
        rows = features.iloc[row_indices].reset_index(drop=True)
        background = features.iloc[background_indices].reset_index(drop=True)

        # NOTE: time spent waiting for another explanation counts against the
        # budget, so concurrent permutation explanations return fewer rows.
        budget = self.time_budget if time_budget is None else min(self.time_budget, time_budget)
        with self._compute_lock:
            shap_values = compute_shap(model.pipeline, rows, background, model.task, request.seed, started + budget)
        row_indices = row_indices[:shap_values.row_count]

        explanation = summarize(shap_values, request)
        self._write_results(output_prefix, shap_values, row_indices, explanation)
        log.info("explanation_finished", model_uri=request.model_uri, explainer=explanation.explainer,
                 rows=explanation.row_count, requested_rows=min(max_rows, len(features)),
                 seconds=round(time.monotonic() - started, 2))
        return explanation

    def warm_up(self) -> None:
        """Compile SHAP's Numba kernels; see `explainers.warm_up`."""
        with self._compute_lock:
            explainers.warm_up()

    def _load_model(self, uri: str) -> StoredModel:
        data = self.store.get_bytes(uri, "model_uri")
        try:
            return loads_model(data)
        except (ModelVersionMismatch, UntrustedModel) as error:
            raise FailedPrecondition(f"model {uri} cannot be loaded: {error}", "MODEL_NOT_LOADABLE",
                                     {"model_uri": uri}) from error
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
            raise InvalidArgument([FieldViolation(
                "model_uri", f"'{uri}' is not a model file written by a trainer ({error}); "
                             "pass the URI of a model.skops object")]) from error

    def _write_results(self, prefix: str, shap_values: ShapValues, row_indices: np.ndarray,
                       explanation: Explanation) -> None:
        """Store the NPZ and the JSON summary under `prefix` and set `explanation.shap_values_uri`."""
        _, key_prefix = parse_uri(prefix, "output_uri")
        shap_values_uri = self.store.put_bytes(key_prefix + "shap_values.npz", npz_bytes(shap_values, row_indices))
        explanation.shap_values_uri = shap_values_uri
        self.store.put_json(key_prefix + "explanation.json", dataclasses.asdict(explanation))


def summarize(shap_values: ShapValues, request: ExplainRequest) -> Explanation:
    """Build the Explanation summary (importance overall and per class) of computed SHAP values."""
    names = shap_values.feature_names
    per_class = [
        ClassImportance(label, importance(shap_values.values[:, :, k], names))
        for k, label in enumerate(shap_values.class_labels)
    ]
    return Explanation(
        explainer=shap_values.explainer,
        model_uri=request.model_uri,
        dataset_uri=request.dataset_uri,
        feature_names=list(names),
        class_labels=list(shap_values.class_labels),
        expected_values=[float(value) for value in shap_values.expected_values],
        overall_importance=importance(shap_values.values, names),
        per_class_importance=per_class,
        row_count=shap_values.row_count,
    )
