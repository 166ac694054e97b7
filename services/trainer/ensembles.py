"""VotingEnsemble and StackEnsemble iterations, built from earlier iterations.

Neither refits a member: both work on the members' out-of-fold predictions
(see `oof`) and reuse the members' fitted models.

- VotingEnsemble: ensemble selection of Caruana et al., "Ensemble Selection
  from Libraries of Models" (ICML 2004). Greedy forward selection with
  replacement: each round adds the member that most improves the metric of
  the averaged out-of-fold predictions; a member's weight is the number of
  rounds that picked it divided by the number of rounds.
- StackEnsemble: a linear meta-learner (LogisticRegression, RidgeCV) fitted
  on the out-of-fold outputs of the members that ensemble selection picks;
  its metrics come from `cross_val_predict` on the same folds the members
  were validated on.

Metrics are averaged over those folds, as the members' metrics are.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from google.protobuf import json_format
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, PredefinedSplit, StratifiedKFold, cross_val_predict

from automl.common import catalog
from automl.common.ensembles import StackEnsembleModel, VotingEnsembleModel
from automl.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from automl.common.models import StoredModel, dumps_model, loads_model
from automl.common.storage import ObjectStore, parse_uri
from services.trainer import metrics as metric_functions
from services.trainer.oof import OutOfFold, load_oof
from services.trainer.outputs import METRICS_FILE, MODEL_FILE, output_store

VOTING = "VotingEnsemble"
STACK = "StackEnsemble"
DEFAULT_ROUNDS = 25
MAX_ROUNDS = 1000
MIN_MEMBERS = 2
# Folds of the meta-learner's own cross-validation when the members used a holdout.
STACK_FOLDS = 5


@dataclass(frozen=True)
class Member:
    """One member of an ensemble request."""

    iteration: int
    model_uri: str
    oof_predictions_uri: str


def ensemble_parameters(task: int, pipeline) -> tuple[dict, tuple[Member, ...]]:
    """Validate the hyperparameters and members of an ensemble pipeline.

    Hyperparameters: `metric`, the metric ensemble selection optimizes (the
    task's default primary metric when unset), and `rounds`, the number of
    selection rounds (default 25). Both ensembles use them: the
    StackEnsemble stacks the members that selection picks.

    Raises
    ------
    InvalidArgument
        Naming `pipeline.hyperparameters.*` or `pipeline.ensemble_members`.
    """
    violations: list[FieldViolation] = []
    requested = json_format.MessageToDict(pipeline.hyperparameters)
    metric = requested.pop("metric", catalog.DEFAULT_PRIMARY_METRIC[task])
    rounds = requested.pop("rounds", DEFAULT_ROUNDS)
    if metric not in catalog.METRICS[task]:
        violations.append(FieldViolation("pipeline.hyperparameters.metric",
                                         f"'{metric}' is not a {catalog.TASK_NAMES[task]} metric; use one of "
                                         + ", ".join(catalog.METRICS[task])))
    if not isinstance(rounds, (int, float)) or rounds != int(rounds) or not 1 <= rounds <= MAX_ROUNDS:
        violations.append(FieldViolation("pipeline.hyperparameters.rounds",
                                         f"{rounds!r} is not a round count; use an integer from 1 to {MAX_ROUNDS}"))
    for name in requested:
        violations.append(FieldViolation(f"pipeline.hyperparameters.{name}",
                                         f"is not a parameter of {pipeline.estimator}; use metric or rounds"))

    members = []
    if len(pipeline.ensemble_members) < MIN_MEMBERS:
        violations.append(FieldViolation("pipeline.ensemble_members",
                                         f"has {len(pipeline.ensemble_members)} members; an ensemble needs at "
                                         f"least {MIN_MEMBERS}"))
    for position, member in enumerate(pipeline.ensemble_members):
        for name in ("model_uri", "oof_predictions_uri"):
            field = f"pipeline.ensemble_members[{position}].{name}"
            value = getattr(member, name)
            if not value:
                violations.append(FieldViolation(field, "is required; give the s3:// URI the member's iteration "
                                                        "returned"))
                continue
            try:
                parse_uri(value, field)
            except InvalidArgument as error:
                violations.extend(error.violations)
        members.append(Member(member.iteration, member.model_uri, member.oof_predictions_uri))

    if violations:
        raise InvalidArgument(violations)
    return {"metric": metric, "rounds": int(rounds)}, tuple(members)


def align(outputs: list[OutOfFold]) -> tuple[list[np.ndarray], OutOfFold]:
    """Restrict every member's predictions to the rows all members predicted.

    Returns the members' predictions on those rows and the first member's
    record on them (labels, classes, folds) as the reference.

    Raises
    ------
    FailedPrecondition
        When the members share no row, disagree on labels, or have different classes.
    """
    shared = outputs[0].row_indices
    for output in outputs[1:]:
        shared = np.intersect1d(shared, output.row_indices)
    if len(shared) == 0:
        raise FailedPrecondition("the ensemble members have no validated row in common; they must come from one "
                                 "experiment", "ENSEMBLE_MEMBERS_INCOMPATIBLE")
    predictions = []
    reference = None
    for output in outputs:
        positions = np.searchsorted(output.row_indices, shared)
        labels = output.labels[positions]
        if reference is None:
            reference = OutOfFold(output.predictions[positions], labels, shared, output.classes,
                                  output.folds[positions], output.label_range, output.validation_strategy)
        elif not np.array_equal(labels, reference.labels) or \
                (output.classes is not None and not np.array_equal(output.classes, reference.classes)):
            raise FailedPrecondition("the ensemble members disagree on the labels or classes of their rows; they "
                                     "must come from one experiment", "ENSEMBLE_MEMBERS_INCOMPATIBLE")
        predictions.append(np.asarray(output.predictions[positions], dtype=float))
    return predictions, reference


def task_metrics(task: int, reference: OutOfFold, predictions: np.ndarray) -> dict[str, float]:
    """Return every metric of the task, averaged over the validation folds of `reference`."""
    per_fold = []
    for fold in np.unique(reference.folds):
        rows = reference.folds == fold
        per_fold.append(_metrics(task, reference, predictions, rows))
    return metric_functions.average(per_fold)


def _metrics(task: int, reference: OutOfFold, predictions: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    if task == catalog.REGRESSION:
        return metric_functions.regression_metrics(reference.labels[rows], predictions[rows], reference.label_range)
    positions = np.arange(len(reference.classes))
    y = np.searchsorted(reference.classes, reference.labels[rows])
    probabilities = predictions[rows]
    return metric_functions.classification_metrics(y, np.argmax(probabilities, axis=1), probabilities, positions)


def metric_value(task: int, metric: str, reference: OutOfFold, predictions: np.ndarray) -> float:
    """Return one metric of pooled predictions; NaN counts as the worst value.

    The primary metrics of classification are computed directly, because
    selection evaluates members x rounds candidates and the full metric set
    computes 15 metrics for each.
    """
    if task == catalog.REGRESSION:
        value = metric_functions.regression_metrics(reference.labels, predictions, reference.label_range)[metric]
    else:
        n_classes = len(reference.classes)
        y = np.searchsorted(reference.classes, reference.labels)
        predicted = np.argmax(predictions, axis=1)
        indicator = (y.reshape(-1, 1) == np.arange(n_classes).reshape(1, -1)).astype(int)
        present = indicator.sum(axis=0) > 0
        if metric == "accuracy":
            value = float(np.mean(predicted == y))
        elif metric == "norm_macro_recall":
            recall = skm.recall_score(y, predicted, labels=np.arange(n_classes), average="macro", zero_division=0)
            value = (recall - 1.0 / n_classes) / (1.0 - 1.0 / n_classes)
        elif metric == "AUC_weighted" and present.sum() > 1:
            value = skm.roc_auc_score(indicator[:, present], predictions[:, present], average="weighted")
        elif metric == "average_precision_score_weighted" and present.sum() > 1:
            value = skm.average_precision_score(indicator[:, present], predictions[:, present], average="weighted")
        elif metric == "precision_score_weighted":
            value = skm.precision_score(y, predicted, labels=np.arange(n_classes), average="weighted",
                                        zero_division=0)
        else:
            value = _metrics(task, reference, predictions, np.ones(len(y), dtype=bool))[metric]
    if not math.isfinite(value):
        return -math.inf if catalog.higher_is_better(metric) else math.inf
    return float(value)


def select_weights(task: int, metric: str, reference: OutOfFold, predictions: list[np.ndarray],
                   rounds: int = DEFAULT_ROUNDS) -> np.ndarray:
    """Return Caruana ensemble selection weights of the members; they sum to 1.

    Each of `rounds` rounds adds, with replacement, the member whose addition
    gives the best `metric` of the averaged predictions. Ties go to the
    earlier member, so the caller's order (best member first) breaks them.
    """
    counts = np.zeros(len(predictions), dtype=int)
    total = np.zeros_like(predictions[0])
    better = catalog.higher_is_better(metric)
    for round_number in range(1, rounds + 1):
        scores = [metric_value(task, metric, reference, (total + candidate) / round_number)
                  for candidate in predictions]
        chosen = int(np.argmax(scores) if better else np.argmin(scores))
        counts[chosen] += 1
        total = total + predictions[chosen]
    return counts / rounds


def weighted_average(predictions: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Return the weighted sum of member predictions (weights sum to 1)."""
    return sum(weight * prediction for weight, prediction in zip(weights, predictions))


def fit_meta_learner(task: int, reference: OutOfFold, predictions: list[np.ndarray], seed: int):
    """Fit the stacking meta-learner; return it and its cross-validated predictions.

    Classification targets are positions in `reference.classes`.
    """
    stacked = np.column_stack([p.reshape(len(p), -1) for p in predictions])
    random_state = seed % 2**32
    classification = task == catalog.CLASSIFICATION
    if classification:
        target = np.searchsorted(reference.classes, reference.labels)
        # Fixed C rather than LogisticRegressionCV: its large-C fits on separable
        # probabilities took 12 s on iris, 100 times the member selection's time.
        learner = LogisticRegression(C=1.0, max_iter=1000)
    else:
        target = np.asarray(reference.labels, dtype=float)
        learner = RidgeCV(alphas=np.logspace(-3, 3, 13))

    # The members' own folds, so that the stack's metrics average over the same folds as theirs.
    if len(np.unique(reference.folds)) >= 2:
        splitter = PredefinedSplit(reference.folds)
    elif classification:
        splitter = StratifiedKFold(STACK_FOLDS, shuffle=True, random_state=random_state)
    else:
        splitter = KFold(STACK_FOLDS, shuffle=True, random_state=random_state)
    method = "predict_proba" if classification else "predict"
    validated = cross_val_predict(learner, stacked, target, cv=splitter, method=method)
    if classification and validated.shape[1] != len(reference.classes):
        full = np.zeros((len(target), len(reference.classes)))
        full[:, np.unique(target)] = validated
        validated = full
    return learner.fit(stacked, target), validated


def load_outputs(store: ObjectStore, members: tuple[Member, ...]) -> list[OutOfFold]:
    """Download each member's out-of-fold predictions."""
    return [load_oof(store.get_bytes(member.oof_predictions_uri,
                                     f"pipeline.ensemble_members[{position}].oof_predictions_uri"))
            for position, member in enumerate(members)]


def load_models(store: ObjectStore, members: tuple[Member, ...], positions) -> list[StoredModel]:
    """Download the models of the members at `positions`."""
    return [loads_model(store.get_bytes(members[position].model_uri,
                                        f"pipeline.ensemble_members[{position}].model_uri"))
            for position in positions]


def train_ensemble(job, log) -> dict:
    """Build, score and store the ensemble of `job.spec`; return the fields of an IterationResult."""
    spec = job.spec
    started = time.monotonic()
    store = ObjectStore(job.s3)
    iterations = [member.iteration for member in spec.ensemble_members]
    predictions, reference = align(load_outputs(store, spec.ensemble_members))
    log.write(f"out-of-fold predictions of {len(predictions)} members (iterations "
              f"{', '.join(map(str, iterations))}) on {len(reference.row_indices)} shared rows "
              f"({reference.validation_strategy or 'validation unknown'})")

    if spec.estimator == VOTING:
        weights = select_weights(spec.task, spec.hyperparameters["metric"], reference, predictions,
                                 spec.hyperparameters["rounds"])
        used = np.flatnonzero(weights)
        log.write(f"ensemble selection on {spec.hyperparameters['metric']} over "
                  f"{spec.hyperparameters['rounds']} rounds: "
                  + ", ".join(f"iteration {iterations[i]} weight {weights[i]:.2f}" for i in used))
        combined = weighted_average(predictions, weights)
    else:
        # The meta-learner stacks the members that ensemble selection picks: fewer inputs over-fit less, and
        # the stored model contains fewer (possibly large) member models.
        selected = np.flatnonzero(select_weights(spec.task, spec.hyperparameters["metric"], reference, predictions,
                                                 spec.hyperparameters["rounds"]))
        used = selected if len(selected) >= MIN_MEMBERS else np.arange(len(predictions))
        try:
            meta_learner, combined = fit_meta_learner(spec.task, reference, [predictions[i] for i in used],
                                                      spec.seed)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
            raise FailedPrecondition(f"the StackEnsemble meta-learner could not be fitted: {error}",
                                     "PIPELINE_FIT_FAILED", {"iteration": spec.iteration}) from error
        log.write(f"meta-learner {type(meta_learner).__name__} fitted on {len(used)} members (iterations "
                  f"{', '.join(str(iterations[i]) for i in used)})")

    # Only the members an ensemble uses are downloaded: forest models can take hundreds of megabytes.
    models = load_models(store, spec.ensemble_members, used)
    log.write(f"loaded the models of {len(models)} members")
    if len({tuple(model.feature_names) for model in models}) > 1:
        raise FailedPrecondition("the ensemble members were fitted on different feature columns; they must come "
                                 "from one experiment", "ENSEMBLE_MEMBERS_INCOMPATIBLE")
    task_name = catalog.TASK_NAMES[spec.task]
    classes = models[0].pipeline.classes_ if spec.task == catalog.CLASSIFICATION else []
    if spec.task == catalog.CLASSIFICATION and len(classes) != len(reference.classes):
        raise FailedPrecondition("the ensemble members' models and out-of-fold predictions have different classes",
                                 "ENSEMBLE_MEMBERS_INCOMPATIBLE")
    common = dict(task=task_name, classes=np.asarray(classes).tolist(), feature_names=list(models[0].feature_names))
    if spec.estimator == VOTING:
        fitted = VotingEnsembleModel(members=[model.pipeline for model in models],
                                     weights=[float(weights[i]) for i in used], **common)
        details = {"members": [iterations[i] for i in used], "weights": [float(weights[i]) for i in used]}
    else:
        fitted = StackEnsembleModel(members=[model.pipeline for model in models], meta_learner=meta_learner, **common)
        details = {"members": [iterations[i] for i in used], "meta_learner": type(meta_learner).__name__}

    averaged = task_metrics(spec.task, reference, combined)
    log.write("ensemble metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in averaged.items()))
    duration = time.monotonic() - started
    strategy = f"out-of-fold predictions of {len(used)} members"
    if reference.validation_strategy:
        strategy += f" ({reference.validation_strategy})"

    model = StoredModel(pipeline=fitted, task=task_name, feature_names=list(models[0].feature_names),
                        class_labels=list(classes), label_column=models[0].label_column,
                        description=spec.description)
    output, model_key = output_store(job.s3, spec.output_uri, MODEL_FILE)
    model_uri = output.put_bytes(model_key, dumps_model(model))
    _, metrics_key = output_store(job.s3, spec.output_uri, METRICS_FILE)
    metrics_uri = output.put_json(metrics_key, {
        "iteration": spec.iteration, "task": task_name, "node": job.node,
        "pipeline": {"estimator": spec.estimator, "description": spec.description,
                     "hyperparameters": spec.hyperparameters, "ensemble": details},
        "validation_strategy": strategy, "rows": len(reference.row_indices), "duration_seconds": duration,
        "metrics": averaged,
    })
    log.write(f"stored {model_uri} and {metrics_uri}")
    return {"metrics": averaged, "model_uri": model_uri, "metrics_uri": metrics_uri,
            "duration_seconds": duration, "validation_strategy": strategy, "node": job.node}
