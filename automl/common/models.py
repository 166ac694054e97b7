"""Fitted models on disk and in object storage, with skops instead of pickle.

Loading a pickle runs arbitrary code, so models are stored with `skops.io`,
which rebuilds only the types the caller trusts. A stored model is a dict with
the fitted scikit-learn pipeline and metadata: task, feature names, class
labels and the versions of Python and the estimator libraries that fitted it.
`load_model` checks those versions and names any mismatch.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field

import skops.io

# Libraries whose versions must match between fitting and loading, because
# their pickled state is not guaranteed to be readable across versions.
VERSIONED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "lightgbm", "xgboost")

# Only types from these packages are rebuilt when loading a model.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "lightgbm.", "xgboost.", "automl.", "builtins.",
                           "collections.", "pandas.")


class ModelVersionMismatch(RuntimeError):
    """The model was fitted with library versions other than the loading environment's."""


class UntrustedModel(RuntimeError):
    """The model file contains types outside the trusted packages."""


@dataclass
class StoredModel:
    """A fitted pipeline with what a caller needs to use it on raw rows."""

    pipeline: object
    task: str
    feature_names: list[str]
    class_labels: list = field(default_factory=list)
    label_column: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    description: str = ""


def library_versions() -> dict[str, str]:
    """Return the versions of Python and of the estimator libraries installed here."""
    versions = {"python": platform.python_version()}
    for library in VERSIONED_LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def dumps_model(model: StoredModel) -> bytes:
    """Serialize a StoredModel with skops, recording this environment's versions."""
    document = {
        "pipeline": model.pipeline,
        "task": model.task,
        "feature_names": list(model.feature_names),
        "class_labels": [_plain(label) for label in model.class_labels],
        "label_column": model.label_column,
        "versions": library_versions(),
        "description": model.description,
    }
    return skops.io.dumps(document)


def loads_model(data: bytes, check_versions: bool = True) -> StoredModel:
    """Load a model written by `dumps_model`.

    Parameters
    ----------
    data : bytes
        Contents of a `model.skops` object.
    check_versions : bool
        Raise when the recorded versions differ from this environment's.

    Raises
    ------
    UntrustedModel
        When the file contains types outside `TRUSTED_MODULE_PREFIXES`.
    ModelVersionMismatch
        When `check_versions` is set and a library version differs.
    """
    untrusted = skops.io.get_untrusted_types(data=data)
    rejected = [name for name in untrusted if not name.startswith(TRUSTED_MODULE_PREFIXES)]
    if rejected:
        raise UntrustedModel(f"model file contains untrusted types {rejected}; it was not written by AutoML Services")
    document = skops.io.loads(data, trusted=untrusted)

    recorded = document.get("versions", {})
    if check_versions:
        here = library_versions()
        mismatches = [
            f"{name} {version} (installed: {here.get(name, 'not installed')})"
            for name, version in recorded.items()
            if name != "python" and here.get(name) != version
        ]
        if mismatches:
            raise ModelVersionMismatch(
                "the model was fitted with " + ", ".join(mismatches)
                + "; install those versions (requirements.txt pins them) or pass check_versions=False at your own risk"
            )

    return StoredModel(
        pipeline=document["pipeline"],
        task=document["task"],
        feature_names=list(document["feature_names"]),
        class_labels=list(document.get("class_labels", [])),
        label_column=document.get("label_column", ""),
        versions=recorded,
        description=document.get("description", ""),
    )


def load_model_file(path: str, check_versions: bool = True) -> StoredModel:
    """Load a downloaded `model.skops` file; see `loads_model`."""
    with open(path, "rb") as handle:
        return loads_model(handle.read(), check_versions)


def _plain(value):
    # numpy scalars become Python ones, so the metadata holds only builtins.
    return value.item() if hasattr(value, "item") else value
