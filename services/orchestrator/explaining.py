"""Explanation of an experiment's best model by the ExplainerService, with retries."""

from __future__ import annotations

import time
from typing import Callable

import grpc
import structlog

from automl.common.storage import ObjectStore, explanation_prefix
from automl.v1 import experiment_pb2, explainer_pb2, explainer_pb2_grpc
from services.orchestrator.records import Records

log = structlog.get_logger(__name__)

# Calls of ExplainModel before the explanation is reported FAILED, and the deadline of each.
EXPLAIN_ATTEMPTS = 3
EXPLAIN_TIMEOUT_SECONDS = 1800


def explain_best(records: Records, explainer: explainer_pb2_grpc.ExplainerServiceStub, object_store: ObjectStore,
                 experiment_id: str, raise_if_stopping: Callable[[], None]) -> None:
    """Request the explanation of the experiment's best iteration and store it.

    The experiment is EXPLAINING meanwhile. An UNAVAILABLE explainer is
    called again after a pause, up to `EXPLAIN_ATTEMPTS` calls. Any other
    error, or the last failed call, sets the explanation state to FAILED
    with the error. The experiment's results stay as they are.

    Parameters
    ----------
    raise_if_stopping : callable
        Called after a failed call; raises when the orchestrator is stopping,
        so that a call cut by the stop is not recorded as a failure.
    """
    experiment = records.experiment(experiment_id)
    logger = log.bind(experiment=experiment.name)
    best = records.store.get_iteration(experiment_id, experiment.best_iteration)

    def explanation_state(state, error=""):
        def change(record):
            record.explanation_state = state
            record.explanation_error = error

        records.update_experiment(experiment_id, change, experiment_pb2.EVENT_TYPE_EXPLANATION_STATE_CHANGED, error)

    records.set_state(experiment_id, experiment_pb2.EXPERIMENT_STATE_EXPLAINING)
    explanation_state(experiment_pb2.EXPLANATION_STATE_RUNNING)
    request = explainer_pb2.ExplainModelRequest(
        model_uri=best.model_uri, dataset=experiment.dataset, task=experiment.task,
        output_uri=object_store.uri(explanation_prefix(experiment_id)), seed=experiment.seed,
    )

    error_text = ""
    for attempt in range(1, EXPLAIN_ATTEMPTS + 1):
        try:
            explanation = explainer.ExplainModel(request, timeout=EXPLAIN_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            raise_if_stopping()
            error_text = f"{error.code().name}: {error.details()}"
            logger.warning("explanation_failed", attempt=attempt, error=error_text)
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                break
            time.sleep(2 * attempt)
            continue
        records.store.put_explanation(experiment_id, explanation)
        explanation_state(experiment_pb2.EXPLANATION_STATE_SUCCEEDED)
        logger.info("explanation_stored", iteration=best.index, explainer=explanation.explainer)
        return
    explanation_state(experiment_pb2.EXPLANATION_STATE_FAILED, error_text)
