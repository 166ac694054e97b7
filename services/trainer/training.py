"""The work of one iteration, run inside a worker process.

`run_worker` is the process target: it reads the cached data set, checks it
against the task, validates the pipeline fold by fold, fits the final model on
every row and stores model, metrics and log under the output URI. It sends a
result or an error dict back over a pipe and does not raise.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import structlog
from lightgbm.basic import LightGBMError
from minio.error import S3Error
from threadpoolctl import threadpool_limits

from automl.common import catalog
from automl.common.config import S3Settings
from automl.common.data_checks import CheckedData, check_table
from automl.common.datasets import Table, read_table
from automl.common.errors import (FailedPrecondition, InvalidArgument, ResourceExhausted, ServiceError,
                                  Unavailable, invalid_field)
from automl.common.logging import configure_logging
from automl.common.models import StoredModel, dumps_model
from services.trainer import metrics as metric_functions
from services.trainer.ensembles import train_ensemble
from services.trainer.guardrails import data_report
from services.trainer.oof import OOF_FILE, OutOfFoldCollector
from services.trainer.outputs import LOG_FILE, METRICS_FILE, MODEL_FILE, output_store
from services.trainer.pipelines import build_pipeline
from services.trainer.procfs import is_running
from services.trainer.spec import IterationSpec
from services.trainer.subsampling import subsample_rows
from services.trainer.validation import make_splits

# Errors scikit-learn, numpy and LightGBM raise when a pipeline cannot be fitted on the data
# (XGBoostError is a ValueError).
# How often a worker checks that the trainer server still runs.
SERVER_CHECK_SECONDS = 0.5

FIT_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, LightGBMError)


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs; pickled to the worker process."""

    spec: IterationSpec
    dataset_path: str
    dataset_format: str
    log_path: str
    s3: S3Settings
    node: str
    cores: int
    # The trainer server's pid: the worker stops itself when that process is gone.
    server_pid: int = 0


class IterationLog:
    """The iteration's human-readable log, appended line by line to a local file.

    Lines are flushed at once, so the server can still upload them when it
    kills the worker.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._handle.write(f"{stamp}Z {message}\n")
        self._handle.flush()

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def _exit_without_server(server_pid: int) -> None:
    """Kill this worker's process group once the trainer server is gone.

    The worker's parent is the forkserver, which outlives a trainer killed by
    SIGKILL, so without this check the fit would run on as an orphan.
    """
    while is_running(server_pid):
        time.sleep(SERVER_CHECK_SECONDS)
    os.killpg(0, signal.SIGKILL)


def run_worker(job: WorkerJob, sender) -> None:
    """Process target: run the iteration and send `{"status": "ok", "result": ...}` or an error."""
    try:
        # Own process group, so the server can kill anything this worker starts along with it.
        os.setpgid(0, 0)
    except OSError:
        pass
    # The forkserver never configured logging, so without this the worker's events (object store retries)
    # would reach the node log in structlog's console format instead of JSON lines.
    configure_logging("trainer")
    structlog.contextvars.bind_contextvars(node=job.node, iteration=job.spec.iteration)
    if job.server_pid:
        threading.Thread(target=_exit_without_server, args=(job.server_pid,), name="server-watch",
                         daemon=True).start()
    log = IterationLog(job.log_path)
    try:
        try:
            with threadpool_limits(job.cores):
                result = train(job, log)
        except MemoryError as error:
            raise ResourceExhausted(f"iteration {job.spec.iteration} ran out of memory ({error!r}); use a smaller "
                                    "data set or a lighter pipeline", "OUT_OF_MEMORY",
                                    {"iteration": job.spec.iteration}) from error
        except S3Error as error:
            if error.code == "NoSuchBucket":
                raise invalid_field("output_uri", f"the bucket of '{job.spec.output_uri}' does not exist; "
                                                  "create it or use an existing bucket") from error
            raise Unavailable(f"iteration {job.spec.iteration} could not store its results under "
                              f"{job.spec.output_uri}: {error}; retry when object storage is reachable",
                              "STORAGE_UNAVAILABLE", {"iteration": job.spec.iteration}) from error
        except Unavailable as error:
            # The object store has already retried for its whole window (S3Settings.retry_seconds).
            if error.reason != "STORAGE_UNAVAILABLE":
                raise
            raise Unavailable(f"iteration {job.spec.iteration} failed: {error.message}", "STORAGE_UNAVAILABLE",
                              {"iteration": job.spec.iteration, **error.metadata}) from error
        sender.send({"status": "ok", "result": result})
    except ServiceError as error:
        log.write(f"iteration failed: {error.message}")
        sender.send({"status": "error", "error": _error_dict(error, _upload_log(job, log))})
    except Exception as error:  # Reported as INTERNAL by the server; the traceback stays in the log.
        log.write(f"iteration failed with an internal error: {error!r}\n{traceback.format_exc()}")
        sender.send({"status": "error", "error": {
            "kind": "Internal", "message": f"iteration {job.spec.iteration} failed: {error!r}",
            "reason": "INTERNAL", "violations": [], "log_uploaded": _upload_log(job, log)}})
    finally:
        sender.close()


def train(job: WorkerJob, log: IterationLog) -> dict:
    """Validate, fit and store one pipeline; return the fields of an IterationResult."""
    spec = job.spec
    log.write(f"iteration {spec.iteration} on node {job.node}: {spec.description} "
              f"({spec.task_name}, scaler {spec.scaler}, estimator {spec.estimator}, "
              f"hyperparameters {spec.hyperparameters}, seed {spec.seed}, preprocess {spec.preprocess})")
    if spec.estimator in catalog.ENSEMBLES:
        return dict(train_ensemble(job, log), log_uri=_upload_log(job, log, required=True), oof_predictions_uri="")
    table = read_table(Path(job.dataset_path), job.dataset_format, spec.label_column, spec.dataset_uri)
    checked = prepare_table(spec, table, log)
    features, labels = checked.features, checked.labels
    log.write(f"data set {spec.dataset_uri}: {len(features)} rows, {features.shape[1]} feature columns")

    started = time.monotonic()
    y = labels.to_numpy()
    splits = make_splits(spec.task, y, spec.n_cross_validations, spec.validation_size, spec.seed)
    log.write(f"validation: {splits.strategy}")
    classes = np.unique(y) if spec.task == catalog.CLASSIFICATION else np.array([])
    label_range = float(np.max(y) - np.min(y)) if spec.task == catalog.REGRESSION else 0.0
    out_of_fold = OutOfFoldCollector(spec.task, classes, label_range)

    classification = spec.task == catalog.CLASSIFICATION
    if spec.subsample < 1.0:
        log.write(f"low fidelity: each fit uses {spec.subsample:.0%} of its training rows")

    fold_metrics = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Known and accepted: see the SVM entry of pipelines.ESTIMATORS.
        warnings.filterwarnings("ignore", "The `probability` parameter was deprecated", FutureWarning)
        for number, (train_rows, test_rows) in enumerate(splits.folds, start=1):
            train_rows = subsample_rows(train_rows, y, spec.subsample, spec.seed, classification)
            pipeline = _fit(spec, job.cores, features.iloc[train_rows], y[train_rows])
            scores = _score(spec, pipeline, features.iloc[test_rows], y[test_rows], classes, label_range)
            fold_metrics.append(scores)
            out_of_fold.add(number, pipeline, features.iloc[test_rows], test_rows, y[test_rows])
            log.write(f"fold {number}/{len(splits.folds)}: "
                      + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        averaged = metric_functions.average(fold_metrics)
        final_rows = subsample_rows(np.arange(len(y)), y, spec.subsample, spec.seed, classification)
        final = _fit(spec, job.cores, features.iloc[final_rows], y[final_rows])
    _log_warnings(log, caught)
    duration = time.monotonic() - started
    log.write(f"final model fitted on {len(final_rows)} rows; validation and fit took {duration:.2f} s")
    featurization, guardrails = data_report(spec.task, spec.preprocess, final, features, y, splits.strategy,
                                            checked.warnings)
    for guardrail in guardrails:
        log.write(f"guardrail {guardrail['name']}: {guardrail['status']}: {guardrail['description']}")

    model = StoredModel(pipeline=final, task=spec.task_name, feature_names=[str(c) for c in features.columns],
                        class_labels=list(classes), label_column=table.label_column, description=spec.description)
    store, model_key = output_store(job.s3, spec.output_uri, MODEL_FILE)
    model_uri = store.put_bytes(model_key, dumps_model(model))
    _, metrics_key = output_store(job.s3, spec.output_uri, METRICS_FILE)
    metrics_uri = store.put_json(metrics_key, {
        "iteration": spec.iteration, "task": spec.task_name, "node": job.node,
        "pipeline": {"scaler": spec.scaler, "estimator": spec.estimator, "description": spec.description,
                     "hyperparameters": spec.hyperparameters},
        "validation_strategy": splits.strategy, "rows": len(features), "duration_seconds": duration,
        "metrics": averaged, "fold_metrics": fold_metrics,
    })
    _, oof_key = output_store(job.s3, spec.output_uri, OOF_FILE)
    oof_uri = store.put_bytes(oof_key, out_of_fold.to_bytes(splits.strategy))
    log.write(f"stored {model_uri}, {metrics_uri} and {oof_uri}")
    log_uri = _upload_log(job, log, required=True)
    return {"metrics": averaged, "model_uri": model_uri, "log_uri": log_uri, "metrics_uri": metrics_uri,
            "oof_predictions_uri": oof_uri,
            "featurization": featurization, "guardrails": guardrails,
            "duration_seconds": duration, "validation_strategy": splits.strategy, "node": job.node}


def prepare_table(spec: IterationSpec, table: Table, log: IterationLog) -> CheckedData:
    """Run the shared data checks on the iteration's table.

    The ExperimentService ran the same checks at CreateExperiment. They run
    again here because a trainer also takes requests from other clients and
    the object may have changed since.

    Raises
    ------
    InvalidArgument
        Naming the field to change, the value and the fix.
    """
    checked = check_table(table, spec.task, spec.preprocess, spec.n_cross_validations, spec.validation_size,
                          spec.dataset_uri)
    for warning in checked.warnings:
        log.write(f"data warning {warning.name}: {warning.description}")
    return checked


def _fit(spec: IterationSpec, cores: int, features: pd.DataFrame, y: np.ndarray):
    pipeline = build_pipeline(spec.task, spec.scaler, spec.estimator, spec.hyperparameters, spec.seed, cores,
                              features if spec.preprocess else None)
    try:
        return pipeline.fit(features, y)
    except FIT_ERRORS as error:
        raise FailedPrecondition(f"{spec.description} could not be fitted on {spec.dataset_uri}: {error}",
                                 "PIPELINE_FIT_FAILED", {"iteration": spec.iteration}) from error


def _score(spec: IterationSpec, pipeline, features: pd.DataFrame, y: np.ndarray, classes: np.ndarray,
           label_range: float) -> dict[str, float]:
    predictions = pipeline.predict(features)
    if spec.task == catalog.REGRESSION:
        return metric_functions.regression_metrics(y, predictions, label_range)
    # predict_proba has a column per class seen in training; place them among all classes.
    fold_probabilities = pipeline.predict_proba(features)
    probabilities = np.zeros((len(y), len(classes)))
    positions = np.searchsorted(classes, pipeline.classes_)
    probabilities[:, positions] = fold_probabilities
    return metric_functions.classification_metrics(y, predictions, probabilities, classes)


def _log_warnings(log: IterationLog, caught: list) -> None:
    for message in sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:20]:
        log.write(f"warning: {message}")


def _upload_log(job: WorkerJob, log: IterationLog, required: bool = False) -> str | bool:
    """Store the log; return its URI, or False when storing failed and `required` is not set."""
    try:
        store, key = output_store(job.s3, job.spec.output_uri, LOG_FILE)
        return store.put_bytes(key, log.text().encode("utf-8"), "text/plain; charset=utf-8")
    except Exception:
        if required:
            raise
        return False


def _error_dict(error: ServiceError, log_uploaded) -> dict:
    violations = [(v.field, v.description) for v in error.violations] if isinstance(error, InvalidArgument) else []
    return {"kind": type(error).__name__, "message": error.message, "reason": error.reason,
            "metadata": dict(error.metadata), "violations": violations, "log_uploaded": bool(log_uploaded)}


__all__ = ["WorkerJob", "run_worker", "train", "prepare_table"]
