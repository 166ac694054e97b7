"""Data guardrails and the featurization summary of one iteration.

The guardrails mirror Azure AutoML's: which validation split was used, how
balanced the classes are, which missing values were imputed and how
high-cardinality categorical columns were encoded. They are computed in the
worker as plain dicts (which cross the process pipe) and turned into
`automl.v1` messages by the servicer with the `*_message` functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.common import catalog
from automl.common.data_checks import DataWarning
from automl.common.featurization import Featurizer
from automl.v1 import featurization_pb2

PASSED, DONE, ALERTED = "PASSED", "DONE", "ALERTED"

# Classification guardrail: a class below this share of the rows is reported.
MIN_CLASS_SHARE = 0.05

# Maximum number of columns named in a guardrail's description. The details list them all.
DESCRIBED_COLUMNS = 10


def find_featurizer(model) -> Featurizer | None:
    """Return the fitted Featurizer at the start of a pipeline, or None when there is none."""
    steps = getattr(model, "steps", None)
    if steps and isinstance(steps[0][1], Featurizer):
        return steps[0][1]
    return None


def compute_guardrails(task: int, labels: np.ndarray, strategy: str, features: pd.DataFrame,
                       summary: list[dict] | None) -> list[dict]:
    """Run the data guardrails on the training data.

    Parameters
    ----------
    task : int
        `catalog.CLASSIFICATION` or `catalog.REGRESSION`.
    labels : ndarray
        Training labels.
    strategy : str
        Validation strategy the iteration used.
    features : DataFrame
        Raw training features.
    summary : list of dict, optional
        The Featurizer's `summary_`; None when the iteration did not featurize.

    Returns
    -------
    list of dict
        One dict per guardrail with `name`, `status`, `description` and `details`.
    """
    guardrails = [{"name": "validation_split", "status": PASSED,
                   "description": f"Validation used {strategy}.", "details": {"strategy": strategy}}]
    if task == catalog.CLASSIFICATION:
        guardrails.append(_class_balance(labels))
    guardrails.append(_missing_values(features, summary))
    guardrails.append(_high_cardinality(summary))
    return guardrails


def _class_balance(labels: np.ndarray) -> dict:
    classes, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    smallest = int(np.argmin(counts))
    share = counts[smallest] / counts.sum()
    details = {"smallest_class": str(classes[smallest]), "smallest_class_rows": str(int(counts[smallest])),
               "smallest_class_share": f"{share:.4f}", "classes": str(len(classes)), "rows": str(int(counts.sum()))}
    if share < MIN_CLASS_SHARE:
        return {"name": "class_balance", "status": ALERTED, "details": details,
                "description": f"Class '{classes[smallest]}' has {counts[smallest]} of {counts.sum()} rows "
                               f"({share:.1%}), below {MIN_CLASS_SHARE:.0%}; the model may rarely predict it. "
                               "Add rows of that class or prefer AUC_weighted or balanced metrics."}
    return {"name": "class_balance", "status": PASSED, "details": details,
            "description": f"The smallest class, '{classes[smallest]}', has {counts[smallest]} of "
                           f"{counts.sum()} rows ({share:.1%})."}


def _missing_values(features: pd.DataFrame, summary: list[dict] | None) -> dict:
    counts = {str(column): int(count) for column, count in features.isna().sum().items() if count}
    if not counts:
        return {"name": "missing_values", "status": PASSED, "details": {},
                "description": "No feature values are missing."}

    fills = {entry["column"]: ("column dropped" if entry["dropped"] else entry["missing_fill"])
             for entry in summary or []}
    details = {column: f"{count} missing, {fills.get(column) or 'not filled'}" for column, count in counts.items()}
    if summary is None:
        return {"name": "missing_values", "status": ALERTED, "details": details,
                "description": f"Missing values in {_named_columns(counts)}. Set preprocess=true to impute them."}

    dropped = {column: count for column, count in counts.items() if fills.get(column) == "column dropped"}
    imputed = {column: count for column, count in counts.items() if column not in dropped}
    sentences = []
    if imputed:
        sentences.append(f"Imputed missing values in {_named_columns(imputed)}.")
    if dropped:
        sentences.append(f"Featurization dropped {_named_columns(dropped)}, so nothing was imputed there.")
    return {"name": "missing_values", "status": DONE, "details": details, "description": " ".join(sentences)}


def _named_columns(counts: dict[str, int]) -> str:
    """Return `2 columns: a (5), b (1)`, naming at most DESCRIBED_COLUMNS of them."""
    named = ", ".join(f"{column} ({count})" for column, count in list(counts.items())[:DESCRIBED_COLUMNS])
    more = f" and {len(counts) - DESCRIBED_COLUMNS} more" if len(counts) > DESCRIBED_COLUMNS else ""
    return f"{_columns(len(counts))}: {named}{more}"


def _high_cardinality(summary: list[dict] | None) -> dict:
    encoded = {entry["column"]: entry for entry in summary or []
               if entry["detected_type"] == "categorical" and not entry["dropped"]
               and "OneHotEncoder" not in entry["transformations"]}
    if not encoded:
        return {"name": "high_cardinality", "status": PASSED, "details": {},
                "description": "No categorical column has too many distinct values to one-hot encode."}
    details = {column: f"{entry['distinct_count']} distinct, {entry['transformations'][-1]}"
               for column, entry in encoded.items()}
    named = ", ".join(f"{column} ({entry['distinct_count']} distinct)"
                      for column, entry in list(encoded.items())[:DESCRIBED_COLUMNS])
    return {"name": "high_cardinality", "status": DONE, "details": details,
            "description": f"Encoded {_columns(len(encoded), 'high-cardinality categorical column')} without one-hot "
                           f"features: {named}."}


def _columns(count: int, noun: str = "column") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def featurization_message(summary: list[dict]) -> featurization_pb2.FeaturizationSummary:
    """Turn a Featurizer's `summary_` into an `automl.v1.FeaturizationSummary`."""
    columns = [featurization_pb2.ColumnSummary(**entry) for entry in summary]
    return featurization_pb2.FeaturizationSummary(
        columns=columns, engineered_feature_count=sum(entry["engineered_feature_count"] for entry in summary))


def guardrail_messages(guardrails: list[dict]) -> list[featurization_pb2.Guardrail]:
    """Turn guardrail dicts into `automl.v1.Guardrail` messages."""
    messages = []
    for guardrail in guardrails:
        status = featurization_pb2.GuardrailStatus.Value(f"GUARDRAIL_STATUS_{guardrail['status']}")
        messages.append(featurization_pb2.Guardrail(name=guardrail["name"], status=status,
                                                    description=guardrail["description"], details=guardrail["details"]))
    return messages


def data_report(task: int, preprocess: bool, model, features: pd.DataFrame, labels: np.ndarray,
                strategy: str, warnings: list[DataWarning] = ()) -> tuple[list[dict] | None, list[dict]]:
    """Return the fitted model's featurization summary (None without preprocess) and the guardrails.

    Each warning of the data checks becomes one more guardrail after the standard ones.
    """
    featurizer = find_featurizer(model) if preprocess else None
    summary = list(featurizer.summary_) if featurizer is not None else None
    guardrails = compute_guardrails(task, labels, strategy, features, summary)
    guardrails += [{"name": w.name, "status": w.status, "description": w.description, "details": dict(w.details)}
                   for w in warnings]
    return summary, guardrails
