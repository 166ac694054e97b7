"""The ExperimentService's logic, independent of gRPC.

`Orchestrator` creates experiments after validating them, starts an
`ExperimentRunner` per running experiment, serves reads from SQLite and
streams events to watchers. On start it resumes every experiment that a
previous process left unfinished.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Callable, Iterator

import grpc
import structlog

from automl.common import catalog, config, paging
from automl.common.data_checks import CheckedData, budget_validation, check_table, check_validation, prefix_fields
from automl.common.datasets import download_table
from automl.common.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable,
                                  from_rpc_error, invalid_field)
from automl.common.storage import ObjectStore
from automl.v1 import compute_pb2, experiment_pb2, explainer_pb2
from services.orchestrator import validation
from services.orchestrator.clients import Clients
from services.orchestrator.records import TERMINAL_STATES, Records, now
from services.orchestrator.runner import ExperimentRunner
from services.orchestrator.search import TPEProposer
from services.orchestrator.store import ExperimentStore

log = structlog.get_logger(__name__)

WATCH_POLL_SECONDS = 1.0
# Time runner threads get to end on shutdown, once their outgoing calls are cancelled.
RUNNER_JOIN_SECONDS = 2.0


class Orchestrator:
    """Experiments and their runners.

    Parameters
    ----------
    store : ExperimentStore
        SQLite records.
    clients : Clients
        Stubs of the compute service, explainer and trainers.
    object_store : ObjectStore
        Where data sets are checked and iteration outputs go.
    max_dataset_bytes : int, optional
        Largest data set object CreateExperiment accepts; default from
        `AUTOML_MAX_DATASET_MB`.
    """

    def __init__(self, store: ExperimentStore, clients: Clients, object_store: ObjectStore,
                 max_dataset_bytes: int | None = None):
        self.max_dataset_bytes = max_dataset_bytes or config.max_dataset_bytes()
        self.records = Records(store)
        self.store = store
        self.clients = clients
        self.object_store = object_store
        self._runners: dict[str, ExperimentRunner] = {}
        self._runners_lock = threading.Lock()
        self._stopping = threading.Event()

    # Lifecycle

    def resume(self) -> None:
        """Restart the runners of experiments that were not finished when the last process stopped."""
        offset = 0
        while True:
            page = self.store.list_experiments(offset, 200)
            if not page:
                break
            offset += len(page)
            for experiment in page:
                if experiment.state not in TERMINAL_STATES:
                    experiment_id = experiment.name.removeprefix("experiments/")
                    log.info("experiment_resumed", experiment=experiment.name)
                    self._start_runner(experiment_id, experiment)
                    if experiment.state == experiment_pb2.EXPERIMENT_STATE_CANCELING:
                        self._runners[experiment_id].cancel()

    def suspend(self) -> None:
        """Stop the runners without recording an end, and end watch streams with UNAVAILABLE.

        Experiments and the iterations in flight stay as stored, so they resume
        when the service starts again.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._runners_lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.suspend()
        log.info("experiments_suspended", runners=len(runners))

    def shutdown(self) -> None:
        """Suspend the runners, close the clients and give the runner threads a moment to end."""
        self.suspend()
        self.clients.close()
        with self._runners_lock:
            runners = list(self._runners.values())
        deadline = time.monotonic() + RUNNER_JOIN_SECONDS
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))

    # Experiments

    def create_experiment(self, experiment_id: str, experiment: experiment_pb2.Experiment) -> experiment_pb2.Experiment:
        """Validate, store and start an experiment."""
        validation.validate_experiment(experiment_id, experiment)
        validation.apply_defaults(experiment)
        experiment_id = experiment_id or f"exp-{uuid.uuid4().hex[:10]}"
        if self.store.get_experiment(experiment_id) is not None:
            raise AlreadyExists(f"experiment 'experiments/{experiment_id}' already exists; choose another "
                                "experiment_id or leave it empty to get a generated one", "EXPERIMENT_EXISTS")
        checked = self._check_dataset(experiment)
        self._check_compute_target(experiment.compute_target)
        self._choose_validation(experiment, checked)

        experiment.name = f"experiments/{experiment_id}"
        experiment.state = experiment_pb2.EXPERIMENT_STATE_QUEUED
        experiment.best_iteration = -1
        experiment.create_time.CopyFrom(now())
        if experiment.model_explainability:
            experiment.explanation_state = experiment_pb2.EXPLANATION_STATE_PENDING
        with self.records.lock:
            self.store.put_experiment(experiment_id, experiment)
            self.records.set_state(experiment_id, experiment_pb2.EXPERIMENT_STATE_QUEUED)
        log.info("experiment_created", experiment=experiment.name, task=catalog.TASK_NAMES[experiment.task],
                 metric=experiment.primary_metric, iterations=experiment.iterations)
        created = self.records.experiment(experiment_id)
        self._start_runner(experiment_id, experiment)
        return created

    def _check_dataset(self, experiment) -> CheckedData:
        """Read the data set and run the shared data checks, so bad data fails here and not in an iteration."""
        uri = experiment.dataset.uri
        try:
            info = self.object_store.stat(uri, "experiment.dataset.uri")
        except NotFound:
            raise NotFound(f"data set {uri} does not exist; upload it first (automl data upload FILE)",
                           "DATASET_NOT_FOUND", {"uri": uri}) from None
        if info.size > self.max_dataset_bytes:
            raise invalid_field("experiment.dataset.uri",
                                f"'{uri}' is {info.size / 2**20:.3g} MB, above the limit of "
                                f"{self.max_dataset_bytes / 2**20:.3g} MB; upload a sample of the rows or raise "
                                "AUTOML_MAX_DATASET_MB of the ExperimentService", "DATASET_TOO_LARGE")
        started = time.monotonic()
        validation_settings = experiment.validation
        try:
            table = download_table(self.object_store, uri, experiment.dataset.label_column, "experiment.dataset.uri")
            checked = check_table(table, experiment.task, experiment.preprocess,
                                  validation_settings.n_cross_validations, validation_settings.validation_size, uri)
        except InvalidArgument as error:
            raise prefix_fields(error, "experiment.") from None
        for warning in checked.warnings:
            log.info("dataset_warning", uri=uri, warning=warning.name, description=warning.description)
        log.info("dataset_checked", uri=uri, rows=len(checked.labels), columns=checked.features.shape[1],
                 bytes=info.size, seconds=round(time.monotonic() - started, 3))
        return checked

    @staticmethod
    def _choose_validation(experiment, checked: CheckedData) -> None:
        """Store a holdout in `experiment` when no validation is requested and its time budget is short for CV.

        The row-count rule of the trainers applies otherwise, and also when
        the holdout would not leave every class on both sides.
        """
        settings = experiment.validation
        if settings.n_cross_validations or settings.validation_size:
            return
        rows, columns = len(checked.labels), checked.features.shape[1]
        size = budget_validation(rows, columns, experiment.experiment_timeout_minutes)
        if not size:
            return
        try:
            check_validation(experiment.task, checked.labels.to_numpy(), 0, size)
        except InvalidArgument as error:
            log.info("validation_holdout_skipped", uri=experiment.dataset.uri, validation_size=size,
                     reason=str(error))
            return
        settings.validation_size = size
        log.info("validation_chosen", uri=experiment.dataset.uri, rows=rows, columns=columns,
                 budget_minutes=experiment.experiment_timeout_minutes, validation_size=size)

    def _check_compute_target(self, name: str) -> None:
        try:
            target = self.clients.compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=name), timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"compute target {name} does not exist; create it first "
                               "(automl compute create)", "COMPUTE_TARGET_NOT_FOUND", {"compute_target": name}) from None
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"the ComputeService did not respond ({error.details()}); try again",
                                  "COMPUTE_UNAVAILABLE") from None
            raise from_rpc_error(error) from None
        if target.provisioning_state in (compute_pb2.PROVISIONING_STATE_DELETING, compute_pb2.PROVISIONING_STATE_FAILED):
            state = compute_pb2.ProvisioningState.Name(target.provisioning_state).removeprefix("PROVISIONING_STATE_")
            raise FailedPrecondition(f"compute target {name} is {state} and cannot run experiments; "
                                     "use or create another target", "COMPUTE_TARGET_UNUSABLE")

    def _start_runner(self, experiment_id: str, experiment) -> None:
        proposer = TPEProposer(experiment.task, validation.candidate_estimators(experiment), experiment.seed,
                               experiment.primary_metric)
        runner = ExperimentRunner(experiment_id, self.records, self.clients, self.object_store, proposer)
        with self._runners_lock:
            self._runners[experiment_id] = runner
            # An experiment created during the stop waits, QUEUED, for the next start.
            if self._stopping.is_set():
                runner.suspend()
        runner.start()

    def get_experiment(self, experiment_id: str) -> experiment_pb2.Experiment:
        return self.records.experiment(experiment_id)

    def list_experiments(self, page_size: int, page_token: str) -> tuple[list, str]:
        size = paging.page_size(page_size)
        offset = paging.decode_token(page_token, "experiments")
        page = self.store.list_experiments(offset, size + 1)
        token = paging.encode_token(offset + size, "experiments") if len(page) > size else ""
        return page[:size], token

    def delete_experiment(self, experiment_id: str) -> None:
        experiment = self.records.experiment(experiment_id)
        if experiment.state not in TERMINAL_STATES:
            raise FailedPrecondition(f"experiment {experiment.name} is still running; cancel it first",
                                     "EXPERIMENT_RUNNING")
        self.store.delete_experiment(experiment_id)
        log.info("experiment_deleted", experiment=experiment.name)

    def cancel_experiment(self, experiment_id: str) -> experiment_pb2.Experiment:
        experiment = self.records.experiment(experiment_id)
        if experiment.state in TERMINAL_STATES:
            return experiment
        self.records.set_state(experiment_id, experiment_pb2.EXPERIMENT_STATE_CANCELING)
        runner = self._runners.get(experiment_id)
        if runner is not None:
            runner.cancel()
        log.info("experiment_cancel_requested", experiment=experiment.name)
        return self.records.experiment(experiment_id)

    def continue_experiment(self, experiment_id: str, additional: int) -> experiment_pb2.Experiment:
        with self.records.lock:
            experiment = self.records.experiment(experiment_id)
            if experiment.state == experiment_pb2.EXPERIMENT_STATE_CANCELING:
                raise FailedPrecondition(f"experiment {experiment.name} is being canceled; wait until it is "
                                         "CANCELED, then continue it", "EXPERIMENT_CANCELING")
            validation.validate_additional_iterations(experiment.iterations, additional)

            def add(record):
                record.iterations += additional
                if record.state in TERMINAL_STATES:
                    record.state = experiment_pb2.EXPERIMENT_STATE_QUEUED
                    record.ClearField("end_time")
                    record.error = ""
            experiment = self.records.update_experiment(experiment_id, add,
                                                        experiment_pb2.EVENT_TYPE_EXPERIMENT_STATE_CHANGED,
                                                        f"{additional} iterations added")
            runner = self._runners.get(experiment_id)
            if runner is None or not runner.is_alive():
                self._start_runner(experiment_id, experiment)
        log.info("experiment_continued", experiment=experiment.name, additional_iterations=additional)
        return experiment

    def watch(self, experiment_id: str, start_index: int, is_active: Callable[[], bool]
              ) -> Iterator[experiment_pb2.ExperimentEvent]:
        """Yield events from `start_index` until the experiment ends or the client leaves."""
        if start_index < 0:
            raise invalid_field("start_index", f"{start_index} is negative; use 0 or the index after the last "
                                               "event received")
        self.records.experiment(experiment_id)
        next_index = start_index
        while is_active():
            if self._stopping.is_set():
                raise Unavailable(f"the ExperimentService is stopping; watch experiments/{experiment_id} again with "
                                  f"start_index={next_index} once it serves", "SERVICE_STOPPING",
                                  {"start_index": str(next_index)})
            experiment = self.store.get_experiment(experiment_id)
            events = self.store.list_events(experiment_id, next_index)
            for event in events:
                yield event
                next_index = event.index + 1
            if events:
                continue
            if experiment is None or experiment.state in TERMINAL_STATES:
                return
            self.records.wait_for_change(WATCH_POLL_SECONDS)

    # Iterations

    def get_iteration(self, experiment_id: str, index: int) -> experiment_pb2.Iteration:
        return self.records.iteration(experiment_id, index)

    def list_iterations(self, experiment_id: str, page_size: int, page_token: str) -> tuple[list, str]:
        self.records.experiment(experiment_id)
        size = paging.page_size(page_size, default=100)
        offset = paging.decode_token(page_token, f"experiments/{experiment_id}/iterations")
        page = self.store.list_iterations(experiment_id, offset, size + 1)
        token = paging.encode_token(offset + size, f"experiments/{experiment_id}/iterations") if len(page) > size else ""
        return page[:size], token

    def cancel_iteration(self, experiment_id: str, index: int) -> experiment_pb2.Iteration:
        iteration = self.records.iteration(experiment_id, index)
        if iteration.state != experiment_pb2.ITERATION_STATE_RUNNING:
            state = experiment_pb2.IterationState.Name(iteration.state).removeprefix("ITERATION_STATE_")
            raise FailedPrecondition(f"iteration {iteration.name} is {state}, not RUNNING; only running "
                                     "iterations can be canceled", "ITERATION_NOT_RUNNING")
        runner = self._runners.get(experiment_id)
        if runner is None or not runner.cancel_iteration(index):
            raise FailedPrecondition(f"iteration {iteration.name} is not running on a node right now; try again",
                                     "ITERATION_NOT_RUNNING")
        log.info("iteration_cancel_requested", iteration=iteration.name)
        return self.records.iteration(experiment_id, index)

    def best_iteration(self, experiment_id: str, metric: str) -> experiment_pb2.Iteration:
        experiment = self.records.experiment(experiment_id)
        metric = metric or experiment.primary_metric
        if metric not in catalog.METRICS[experiment.task]:
            raise invalid_field("metric", f"'{metric}' is not a {catalog.TASK_NAMES[experiment.task]} metric; "
                                          f"use one of {', '.join(catalog.METRICS[experiment.task])}")
        best = None
        for iteration in self.store.list_iterations(experiment_id):
            value = iteration.metrics.get(metric)
            if iteration.state != experiment_pb2.ITERATION_STATE_SUCCEEDED or value is None or math.isnan(value):
                continue
            if best is None or catalog.is_better(metric, value, best.metrics[metric]):
                best = iteration
        if best is None:
            raise FailedPrecondition(f"experiment {experiment.name} has no succeeded iteration yet",
                                     "NO_SUCCEEDED_ITERATION")
        return best

    def get_explanation(self, experiment_id: str) -> explainer_pb2.Explanation:
        experiment = self.records.experiment(experiment_id)
        explanation = self.store.get_explanation(experiment_id)
        if explanation is not None:
            return explanation
        if not experiment.model_explainability:
            raise FailedPrecondition(f"experiment {experiment.name} was created with model_explainability off",
                                     "EXPLAINABILITY_OFF")
        state = experiment_pb2.ExplanationState.Name(experiment.explanation_state).removeprefix("EXPLANATION_STATE_")
        detail = f": {experiment.explanation_error}" if experiment.explanation_error else ""
        raise FailedPrecondition(f"the explanation of {experiment.name} is {state}{detail}", "EXPLANATION_NOT_READY")
