"""CreateExperiment validation: every bad field is named, in one response."""

import pytest

from automl.common.errors import InvalidArgument
from automl.v1 import experiment_pb2, pipeline_pb2
from services.orchestrator.validation import apply_defaults, candidate_estimators, validate_experiment


def valid_experiment(**changes) -> experiment_pb2.Experiment:
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri="s3://automl/datasets/digits.csv", label_column="digit"),
        compute_target="computeTargets/automl-cluster",
        task=pipeline_pb2.TASK_CLASSIFICATION,
        primary_metric="AUC_weighted",
        iterations=20,
    )
    for name, value in changes.items():
        if name in ("validation", "dataset"):
            getattr(experiment, name).CopyFrom(value)
        elif isinstance(value, list):
            getattr(experiment, name).extend(value)
        else:
            setattr(experiment, name, value)
    return experiment


def violations(experiment, experiment_id="") -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        validate_experiment(experiment_id, experiment)
    return {v.field: v.description for v in raised.value.violations}


def test_valid_experiment_passes():
    validate_experiment("digits-1", valid_experiment())


BAD_FIELDS = [
    ("experiment.iterations", {"iterations": 0}, "1 to 1000"),
    ("experiment.iterations", {"iterations": 1001}, "1 to 1000"),
    ("experiment.validation.n_cross_validations",
     {"validation": pipeline_pb2.Validation(n_cross_validations=1)}, "2 to 50"),
    ("experiment.validation.validation_size", {"validation": pipeline_pb2.Validation(validation_size=0)}, "between 0 and 1"),
    ("experiment.validation.validation_size", {"validation": pipeline_pb2.Validation(validation_size=1)}, "between 0 and 1"),
    ("experiment.validation.n_cross_validations",
     {"validation": pipeline_pb2.Validation(n_cross_validations=5, validation_size=0.2)}, "not both"),
    ("experiment.primary_metric", {"primary_metric": "r2_score"}, "regression metric"),
    ("experiment.primary_metric", {"primary_metric": "AUC"}, "not a primary metric"),
    ("experiment.iteration_timeout_minutes", {"iteration_timeout_minutes": 0}, "above 0"),
    ("experiment.experiment_timeout_minutes", {"experiment_timeout_minutes": 0}, "above 0"),
    ("experiment.max_concurrent_iterations", {"max_concurrent_iterations": 0}, "1 to 100"),
    ("experiment.allowed_models", {"allowed_models": ["ElasticNet"]}, "'ElasticNet' not known for classification"),
    ("experiment.blocked_models", {"allowed_models": ["SVM"], "blocked_models": ["SVM"]}, "blocks every allowed"),
    ("experiment.task", {"task": pipeline_pb2.TASK_UNSPECIFIED}, "is required"),
    ("experiment.dataset.uri", {"dataset": pipeline_pb2.Dataset(uri="digits.csv", label_column="y")}, "s3://bucket/key"),
    ("experiment.dataset.uri", {"dataset": pipeline_pb2.Dataset(uri="s3://automl/d.xlsx", label_column="y")}, ".xlsx"),
    ("experiment.dataset.label_column", {"dataset": pipeline_pb2.Dataset(uri="s3://automl/d.csv")}, "is required"),
    ("experiment.compute_target", {"compute_target": ""}, "is required"),
    ("experiment.compute_target", {"compute_target": "computeTargets/my_cluster"}, "'_'"),
]


@pytest.mark.parametrize("field,changes,expected", BAD_FIELDS, ids=[f"{f}:{c}" for f, c, _ in BAD_FIELDS])
def test_bad_field_is_named(field, changes, expected):
    found = violations(valid_experiment(**changes))

    assert field in found
    assert expected in found[field]


def test_every_violation_reported_at_once():
    found = violations(valid_experiment(iterations=0, max_concurrent_iterations=0, primary_metric="r2_score"))

    assert set(found) == {"experiment.iterations", "experiment.max_concurrent_iterations", "experiment.primary_metric"}


@pytest.mark.parametrize("experiment_id,character", [("my_exp", "'_'"), ("a b", "' '"), ("ünï", "'ü'"), ("x/y", "'/'")])
def test_bad_experiment_id_names_character(experiment_id, character):
    found = violations(valid_experiment(), experiment_id)

    assert character in found["experiment_id"]


def test_defaults_applied():
    experiment = valid_experiment(primary_metric="", compute_target="automl-cluster")
    apply_defaults(experiment)

    assert experiment.primary_metric == "accuracy"
    assert experiment.iteration_timeout_minutes == 30
    assert experiment.max_concurrent_iterations == 1
    assert experiment.compute_target == "computeTargets/automl-cluster"


def test_candidates_respect_allowed_and_blocked():
    experiment = valid_experiment(allowed_models=["SVM", "KNN", "RandomForest"], blocked_models=["KNN"])

    assert candidate_estimators(experiment) == ["SVM", "RandomForest"]
