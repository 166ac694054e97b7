"""A RunIteration request, checked once and turned into a plain IterationSpec.

Every field rule lives in `spec_from_request`; the worker trusts the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import json_format

from automl.common import catalog
from automl.common.errors import FieldViolation, InvalidArgument
from automl.common.names import parse_iteration_name
from automl.common.storage import parse_uri
from automl.v1 import trainer_pb2

DEFAULT_TIMEOUT_SECONDS = 30 * 60


@dataclass(frozen=True)
class IterationSpec:
    """What one iteration does; picklable, so it travels to the worker process."""

    iteration: str
    dataset_uri: str
    label_column: str
    task: int
    scaler: str
    estimator: str
    hyperparameters: dict
    description: str
    n_cross_validations: int
    validation_size: float
    output_uri: str
    timeout_seconds: float
    seed: int
    preprocess: bool
    # Fraction of training rows each fit uses; 1.0 uses every row.
    subsample: float = 1.0
    # Members (services.trainer.ensembles.Member) of a VotingEnsemble or StackEnsemble; empty otherwise.
    ensemble_members: tuple = ()

    @property
    def task_name(self) -> str:
        return catalog.TASK_NAMES[self.task]


def _check(violations: list[FieldViolation], field: str, check) -> None:
    """Run one field check; a ServiceError with violations becomes part of the list."""
    try:
        check()
    except InvalidArgument as error:
        violations.extend(FieldViolation(field, v.description) for v in error.violations)


def spec_from_request(request: trainer_pb2.RunIterationRequest) -> IterationSpec:
    """Validate a RunIterationRequest and return its IterationSpec.

    Raises
    ------
    InvalidArgument
        With one field violation per invalid field.
    """
    # Imported here so that the server serves health checks before pandas and scikit-learn are loaded.
    from automl.common.datasets import dataset_format
    from services.trainer.ensembles import ensemble_parameters
    from services.trainer.pipelines import resolve_hyperparameters

    violations: list[FieldViolation] = []

    def add(field: str, description: str) -> None:
        violations.append(FieldViolation(field, description))

    _check(violations, "iteration", lambda: parse_iteration_name(request.iteration, "iteration"))
    if not request.dataset.uri:
        add("dataset.uri", "is required; give the s3://bucket/key of a CSV, Parquet or NPZ file")
    else:
        _check(violations, "dataset.uri", lambda: dataset_format(request.dataset.uri))

    task = request.task
    if task not in catalog.TASK_NAMES:
        add("task", f"{task} is not a task; use TASK_CLASSIFICATION or TASK_REGRESSION")

    scaler = request.pipeline.scaler or "None"
    if scaler not in catalog.SCALERS:
        add("pipeline.scaler", f"'{scaler}' is not a scaler; use one of {', '.join(catalog.SCALERS)}")

    estimator = request.pipeline.estimator
    hyperparameters: dict = {}
    members: tuple = ()
    if task in catalog.TASK_NAMES:
        names = catalog.ESTIMATORS[task]
        if estimator in catalog.ENSEMBLES:
            try:
                hyperparameters, members = ensemble_parameters(task, request.pipeline)
            except InvalidArgument as error:
                violations.extend(error.violations)
        elif estimator not in names:
            add("pipeline.estimator", f"'{estimator}' is not a {catalog.TASK_NAMES[task]} estimator; "
                                      f"use one of {', '.join(names)}")
        else:
            requested = json_format.MessageToDict(request.pipeline.hyperparameters)
            try:
                hyperparameters = resolve_hyperparameters(task, estimator, requested)
            except InvalidArgument as error:
                violations.extend(error.violations)

    folds = request.validation.n_cross_validations
    size = request.validation.validation_size
    if folds and size:
        add("validation", f"sets both n_cross_validations ({folds}) and validation_size ({size:g}); set one")
    if folds < 0 or folds == 1:
        add("validation.n_cross_validations", f"{folds} folds is not possible; use at least 2, or 0 for the default")
    if not 0 <= size < 1:
        add("validation.validation_size", f"{size:g} is not a fraction; use a value between 0 and 1 exclusive")

    if not request.output_uri:
        add("output_uri", "is required; give the s3://bucket/prefix/ under which to store the results")
    else:
        _check(violations, "output_uri", lambda: parse_uri(request.output_uri, "output_uri"))

    timeout = request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else 0.0
    if timeout < 0:
        add("timeout", f"{timeout:g} s is negative; use a positive duration or leave it unset for 30 minutes")

    if not 0 <= request.subsample <= 1:
        add("subsample", f"{request.subsample:g} is not a fraction; use a value in (0, 1], or 0 for every row")

    if violations:
        raise InvalidArgument(violations)

    return IterationSpec(
        iteration=request.iteration,
        dataset_uri=request.dataset.uri,
        label_column=request.dataset.label_column,
        task=task,
        scaler=scaler,
        estimator=estimator,
        hyperparameters=hyperparameters,
        description=request.pipeline.description or f"{scaler} {estimator}",
        n_cross_validations=folds,
        validation_size=size,
        output_uri=request.output_uri,
        timeout_seconds=timeout or DEFAULT_TIMEOUT_SECONDS,
        seed=request.seed,
        preprocess=request.preprocess,
        subsample=request.subsample or 1.0,
        ensemble_members=members,
    )


__all__ = ["IterationSpec", "spec_from_request"]
