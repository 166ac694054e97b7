"""Validation of a CreateExperiment request, in one place.

Every field rule is listed in `_RULES`; `validate_experiment` runs them all
and reports every violation at once, so a bad experiment fails in
milliseconds instead of after its first iteration. Checks that need another
service (does the data set exist, does the compute target exist) follow in
`Orchestrator.create_experiment`, after these pass.
"""

from __future__ import annotations

import math
from typing import Callable

from automl.common import catalog
from automl.common.datasets import FORMATS
from automl.common.errors import FieldViolation, InvalidArgument
from automl.common.names import id_violation
from automl.common.storage import parse_uri
from automl.v1 import experiment_pb2

MAX_ITERATIONS = 1000
MAX_CONCURRENT_ITERATIONS = 100
MAX_FOLDS = 50
MAX_ITERATION_TIMEOUT_MINUTES = 7 * 24 * 60
DEFAULT_ITERATION_TIMEOUT_MINUTES = 30.0

Rule = Callable[[experiment_pb2.Experiment], str | None]


def _task_name(experiment) -> str:
    return catalog.TASK_NAMES.get(experiment.task, "unspecified")


def _check_task(experiment) -> str | None:
    if experiment.task not in catalog.TASK_NAMES:
        return "is required; use TASK_CLASSIFICATION or TASK_REGRESSION"
    return None


def _check_dataset_uri(experiment) -> str | None:
    uri = experiment.dataset.uri
    if not uri:
        return "is required; upload a file and pass its s3://bucket/key URI"
    try:
        _, key = parse_uri(uri)
    except InvalidArgument as error:
        return error.violations[0].description
    suffix = key[key.rfind("."):].lower() if "." in key else ""
    if suffix not in FORMATS:
        return f"'{uri}' has extension '{suffix}'; use a .csv, .parquet or .npz file"
    return None


def _check_label_column(experiment) -> str | None:
    if experiment.dataset.label_column or experiment.dataset.uri.lower().endswith(".npz"):
        return None
    return "is required for CSV and Parquet data sets; name the column to predict"


def _check_compute_target(experiment) -> str | None:
    if not experiment.compute_target:
        return "is required; name a compute target, for example computeTargets/automl-cluster"
    target_id = experiment.compute_target.removeprefix("computeTargets/")
    violation = id_violation("compute_target", target_id)
    return violation.description if violation else None


def _check_primary_metric(experiment) -> str | None:
    metric = experiment.primary_metric
    if not metric or experiment.task not in catalog.TASK_NAMES:
        return None
    allowed = catalog.PRIMARY_METRICS[experiment.task]
    if metric in allowed:
        return None
    other_tasks = [name for task, name in catalog.TASK_NAMES.items() if metric in catalog.PRIMARY_METRICS[task]]
    if other_tasks:
        return (f"'{metric}' is a {other_tasks[0]} metric but the task is {_task_name(experiment)}; "
                f"use one of {', '.join(allowed)}")
    return f"'{metric}' is not a primary metric; use one of {', '.join(allowed)}"


def _check_iterations(experiment) -> str | None:
    if not 1 <= experiment.iterations <= MAX_ITERATIONS:
        return f"{experiment.iterations} is out of range; use 1 to {MAX_ITERATIONS}"
    return None


def _check_iteration_timeout(experiment) -> str | None:
    if not experiment.HasField("iteration_timeout_minutes"):
        return None
    value = experiment.iteration_timeout_minutes
    if not (math.isfinite(value) and 0 < value <= MAX_ITERATION_TIMEOUT_MINUTES):
        return f"{value} is out of range; use minutes above 0 and at most {MAX_ITERATION_TIMEOUT_MINUTES}"
    return None


def _check_experiment_timeout(experiment) -> str | None:
    if not experiment.HasField("experiment_timeout_minutes"):
        return None
    value = experiment.experiment_timeout_minutes
    if not (math.isfinite(value) and value > 0):
        return f"{value} is out of range; use minutes above 0, or leave it unset for no limit"
    return None


def _check_folds(experiment) -> str | None:
    validation = experiment.validation
    if not validation.HasField("n_cross_validations"):
        return None
    if validation.HasField("validation_size"):
        return "set either n_cross_validations or validation_size, not both"
    if not 2 <= validation.n_cross_validations <= MAX_FOLDS:
        return f"{validation.n_cross_validations} is out of range; use 2 to {MAX_FOLDS} folds"
    return None


def _check_validation_size(experiment) -> str | None:
    validation = experiment.validation
    if not validation.HasField("validation_size"):
        return None
    value = validation.validation_size
    if not (math.isfinite(value) and 0 < value < 1):
        return f"{value} is out of range; use a fraction between 0 and 1, for example 0.2"
    return None


def _check_concurrency(experiment) -> str | None:
    if not experiment.HasField("max_concurrent_iterations"):
        return None
    value = experiment.max_concurrent_iterations
    if not 1 <= value <= MAX_CONCURRENT_ITERATIONS:
        return f"{value} is out of range; use 1 to {MAX_CONCURRENT_ITERATIONS}"
    return None


def _check_exit_score(experiment) -> str | None:
    if experiment.HasField("experiment_exit_score") and not math.isfinite(experiment.experiment_exit_score):
        return f"{experiment.experiment_exit_score} is not a finite number"
    return None


def _unknown_models(experiment, models) -> str | None:
    if experiment.task not in catalog.TASK_NAMES:
        return None
    known = catalog.ESTIMATORS[experiment.task]
    unknown = [model for model in models if model not in known]
    if unknown:
        return (f"{', '.join(repr(m) for m in unknown)} not known for {_task_name(experiment)}; "
                f"use names from {', '.join(known)}")
    return None


def _check_allowed_models(experiment) -> str | None:
    return _unknown_models(experiment, experiment.allowed_models)


def _check_blocked_models(experiment) -> str | None:
    problem = _unknown_models(experiment, experiment.blocked_models)
    if problem or experiment.task not in catalog.TASK_NAMES:
        return problem
    if not candidate_estimators(experiment):
        return "blocks every allowed model; leave at least one estimator unblocked"
    return None


def _check_experiment_id(experiment_id: str) -> str | None:
    if not experiment_id:
        return None
    violation = id_violation("experiment_id", experiment_id)
    return violation.description if violation else None


# Field path -> rule. Paths are those of CreateExperimentRequest.
_RULES: dict[str, Rule] = {
    "experiment.task": _check_task,
    "experiment.dataset.uri": _check_dataset_uri,
    "experiment.dataset.label_column": _check_label_column,
    "experiment.compute_target": _check_compute_target,
    "experiment.primary_metric": _check_primary_metric,
    "experiment.iterations": _check_iterations,
    "experiment.iteration_timeout_minutes": _check_iteration_timeout,
    "experiment.experiment_timeout_minutes": _check_experiment_timeout,
    "experiment.validation.n_cross_validations": _check_folds,
    "experiment.validation.validation_size": _check_validation_size,
    "experiment.max_concurrent_iterations": _check_concurrency,
    "experiment.experiment_exit_score": _check_exit_score,
    "experiment.allowed_models": _check_allowed_models,
    "experiment.blocked_models": _check_blocked_models,
}


def candidate_estimators(experiment) -> list[str]:
    """Return the estimators the search may use: allowed (or all of the task's) minus blocked."""
    allowed = list(experiment.allowed_models) or list(catalog.ESTIMATORS[experiment.task])
    return [model for model in allowed if model not in set(experiment.blocked_models)]


def validate_experiment(experiment_id: str, experiment: experiment_pb2.Experiment) -> None:
    """Raise InvalidArgument listing every invalid field of a CreateExperiment request."""
    violations = []
    problem = _check_experiment_id(experiment_id)
    if problem:
        violations.append(FieldViolation("experiment_id", problem))
    for field, rule in _RULES.items():
        problem = rule(experiment)
        if problem:
            violations.append(FieldViolation(field, problem))
    if violations:
        raise InvalidArgument(violations)


def validate_additional_iterations(current: int, additional: int) -> None:
    """Raise InvalidArgument unless `additional` iterations keep the total within the limit."""
    if additional < 1 or current + additional > MAX_ITERATIONS:
        raise InvalidArgument([FieldViolation(
            "additional_iterations",
            f"{additional} is out of range; use 1 to {MAX_ITERATIONS - current} "
            f"(the experiment has {current} of at most {MAX_ITERATIONS} iterations)",
        )])


def apply_defaults(experiment: experiment_pb2.Experiment) -> None:
    """Fill unset optional fields with their defaults, in place."""
    if not experiment.primary_metric:
        experiment.primary_metric = catalog.DEFAULT_PRIMARY_METRIC[experiment.task]
    if not experiment.HasField("iteration_timeout_minutes"):
        experiment.iteration_timeout_minutes = DEFAULT_ITERATION_TIMEOUT_MINUTES
    if not experiment.HasField("max_concurrent_iterations"):
        experiment.max_concurrent_iterations = 1
    if not experiment.compute_target.startswith("computeTargets/"):
        experiment.compute_target = f"computeTargets/{experiment.compute_target}"
