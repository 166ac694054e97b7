"""Scheduling of one experiment: lease nodes, run iterations, explain the best model.

An `ExperimentRunner` owns a thread that loops: while the budget allows, lease
a node from the compute target (the compute service queues requests when all
nodes are busy), ask the proposer for the next pipeline, and hand the
iteration to a worker thread that calls the node's TrainerService. Proposals
are made only once a node is free, so they see the latest results.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from concurrent import futures

import grpc
import structlog

from automl.common.errors import from_rpc_error
from automl.common.storage import ObjectStore, iteration_prefix
from automl.v1 import compute_pb2, experiment_pb2, trainer_pb2
from services.orchestrator import budget, ensembles
from services.orchestrator.clients import Clients
from services.orchestrator.conversions import copy_data_report, pipeline_of, trial_of
from services.orchestrator.explaining import explain_best
from services.orchestrator.leasing import NodeLeases, TargetUnusable
from services.orchestrator.records import ENDED_ITERATION_STATES, Records, duration, now
from services.orchestrator.search import Proposer, SearchContext

log = structlog.get_logger(__name__)

# A trainer gets this long past the iteration timeout to report before the
# orchestrator gives up on the call.
RPC_MARGIN_SECONDS = 30
# Attempts of an iteration whose node vanished (UNAVAILABLE) before it is failed.
MAX_ATTEMPTS = 3
# Pause before an iteration that lost its node runs again, doubled per attempt. A node killed a moment ago
# can still look alive to the compute service, which would lease it again.
RETRY_BACKOFF_SECONDS = 1.0

STATE_BY_CODE = {
    grpc.StatusCode.CANCELLED: experiment_pb2.ITERATION_STATE_CANCELED,
    grpc.StatusCode.DEADLINE_EXCEEDED: experiment_pb2.ITERATION_STATE_TIMED_OUT,
}


def node_lost(error: grpc.RpcError) -> bool:
    """Return True when a trainer call failed because its node stopped or could not be reached."""
    # A trainer that reports STORAGE_UNAVAILABLE has retried the object store for its whole retry window,
    # and another node would reach the same store, so that error is not the node's.
    return error.code() == grpc.StatusCode.UNAVAILABLE and from_rpc_error(error).reason != "STORAGE_UNAVAILABLE"


class Suspended(Exception):
    """The service is stopping: the runner ends and leaves the experiment as stored, to resume later."""


class ExperimentRunner:
    """Runs one experiment's iterations on its compute target in a background thread."""

    def __init__(self, experiment_id: str, records: Records, clients: Clients, object_store: ObjectStore,
                 proposer: Proposer):
        self.experiment_id = experiment_id
        self.name = f"experiments/{experiment_id}"
        self.records = records
        self.clients = clients
        self.object_store = object_store
        self.proposer = proposer
        self.log = log.bind(experiment=self.name)
        self._started = time.monotonic()
        # Rows of the data set, read from the first succeeded iteration's metrics document.
        self._rows: int | None = None
        self._cancel = threading.Event()
        self._suspended = threading.Event()
        self._canceled_iterations: set[int] = set()
        self._running: dict[int, str] = {}  # iteration index -> trainer address
        self._retries: collections.deque[int] = collections.deque()
        self._lock = threading.Lock()
        self._leases = NodeLeases(clients, self.name, self._cancel, self.log)
        self._thread = threading.Thread(target=self._main, name=f"runner-{experiment_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # Requests from other threads

    def cancel(self) -> None:
        """Stop starting iterations and stop the running ones."""
        self._cancel.set()
        with self._lock:
            running = dict(self._running)
        for index in running:
            self.cancel_iteration(index)

    def suspend(self) -> None:
        """Stop starting iterations and record nothing more that the stop causes; see `Suspended`."""
        self._suspended.set()

    def cancel_iteration(self, index: int) -> bool:
        """Ask the node running iteration `index` to stop it; False when it is not running here."""
        with self._lock:
            address = self._running.get(index)
            self._canceled_iterations.add(index)
        if address is None:
            return False
        try:
            self.clients.trainer(address).CancelRun(
                trainer_pb2.CancelRunRequest(iteration=f"{self.name}/iterations/{index}"), timeout=10)
        except grpc.RpcError as error:
            self.log.warning("cancel_run_failed", iteration=index, node=address, error=error.details())
        return True

    # The runner thread

    def _main(self) -> None:
        try:
            self._run()
        except Suspended:
            self.log.info("experiment_suspended")
            pool = getattr(self, "_pool", None)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        except TargetUnusable as error:
            self.log.warning("experiment_stopped", reason=str(error))
            self._wait_running()
            self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_FAILED, str(error))
        except Exception as error:
            self.log.exception("experiment_runner_failed")
            self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_FAILED,
                                   f"the orchestrator failed while running the experiment: {error}")

    def _run(self) -> None:
        experiment = self.records.experiment(self.experiment_id)
        # Iterations left QUEUED or RUNNING by a previous orchestrator process run again first.
        for iteration in self.records.store.list_iterations(self.experiment_id):
            if iteration.state in (experiment_pb2.ITERATION_STATE_QUEUED, experiment_pb2.ITERATION_STATE_RUNNING):
                self._retries.append(iteration.index)
        if experiment.state != experiment_pb2.EXPERIMENT_STATE_RUNNING:
            self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_RUNNING)
        self._started = time.monotonic()
        self._pool = futures.ThreadPoolExecutor(max_workers=experiment.max_concurrent_iterations,
                                                thread_name_prefix=f"iter-{self.experiment_id}")
        in_flight: set[futures.Future] = set()

        while True:
            self._raise_if_suspended()
            in_flight = {future for future in in_flight if not future.done()}
            experiment = self.records.experiment(self.experiment_id)
            stop_reason = self._stop_reason(experiment)
            has_work = bool(self._retries) or self.records.store.count_iterations(self.experiment_id) < experiment.iterations
            if stop_reason or not has_work:
                if in_flight:
                    futures.wait(in_flight, timeout=1, return_when=futures.FIRST_COMPLETED)
                    continue
                # Re-check under the records lock: ContinueExperiment may have added work.
                with self.records.lock:
                    experiment = self.records.experiment(self.experiment_id)
                    has_work = bool(self._retries) or self.records.store.count_iterations(
                        self.experiment_id) < experiment.iterations
                    if stop_reason or not has_work:
                        self.log.info("search_finished", reason=stop_reason or "iteration budget used")
                        break
                continue
            if len(in_flight) >= experiment.max_concurrent_iterations:
                futures.wait(in_flight, timeout=1, return_when=futures.FIRST_COMPLETED)
                continue

            lease = self._acquire(experiment)
            if lease is None:
                continue
            iteration = self._next_iteration(experiment)
            if iteration is None:
                self._release(lease)
                continue
            in_flight.add(self._pool.submit(self._run_iteration, experiment, iteration, lease))

        if ensembles.runs_after_stop(stop_reason):
            self._run_skipped_ensembles()
        self._pool.shutdown(wait=True)
        self._finish()

    def _run_skipped_ensembles(self) -> None:
        """Run the ensembles that a time budget or early stopping kept from their slots.

        They run side by side when `max_concurrent_iterations` and free nodes
        allow it, because one after the other they often took longer than the
        budget's reserve and were timed out.
        """
        # NOTE: a node lost during these runs fails the ensemble; it is not retried like searched iterations.
        running: list[futures.Future] = []
        while not self._cancel.is_set():
            self._raise_if_suspended()
            experiment = self.records.experiment(self.experiment_id)
            if sum(not future.done() for future in running) >= experiment.max_concurrent_iterations:
                futures.wait(running, timeout=1, return_when=futures.FIRST_COMPLETED)
                continue
            lease = self._acquire(experiment)
            if lease is None:
                continue
            with self.records.lock:
                iterations = self.records.store.list_iterations(self.experiment_id)
                pipeline = ensembles.skipped_ensemble(experiment, iterations)
                if pipeline is not None:
                    index = len(iterations)
                    iteration = experiment_pb2.Iteration(
                        name=f"{self.name}/iterations/{index}", index=index,
                        state=experiment_pb2.ITERATION_STATE_QUEUED, pipeline=pipeline)
                    self.records.put_iteration(self.experiment_id, iteration)
            if pipeline is None:
                self._release(lease)
                break
            running.append(self._pool.submit(self._run_iteration, experiment, iteration, lease))
        for future in running:
            future.result()

    def _raise_if_suspended(self) -> None:
        if self._suspended.is_set():
            raise Suspended()

    def _stop_reason(self, experiment) -> str:
        if self._cancel.is_set():
            return "canceled"
        remaining = self._remaining(experiment)
        if remaining is not None and remaining < budget.MIN_START_SECONDS:
            return "experiment timeout reached"
        if experiment.enable_early_stopping and budget.should_stop_early(
                experiment.primary_metric, self._ended_iterations()):
            return "early stopping: the best score stopped improving"
        if experiment.HasField("experiment_exit_score") and experiment.best_iteration >= 0 and \
                budget.exit_score_reached(experiment.primary_metric, experiment.best_score, experiment.experiment_exit_score):
            return "exit score reached"
        return ""

    def _acquire(self, experiment) -> compute_pb2.NodeLease | None:
        return self._leases.acquire(experiment.compute_target)

    def _release(self, lease, node_failed: bool = False) -> None:
        self._leases.release(lease, node_failed)

    def _next_iteration(self, experiment) -> experiment_pb2.Iteration | None:
        """Return a retried iteration, or a new one from the proposer; None when the budget is used."""
        if self._retries:
            return self.records.store.get_iteration(self.experiment_id, self._retries.popleft())
        with self.records.lock:
            index = self.records.store.count_iterations(self.experiment_id)
            if index >= self.records.experiment(self.experiment_id).iterations or self._cancel.is_set():
                return None
            iterations = self.records.store.list_iterations(self.experiment_id)
            pipeline = ensembles.next_ensemble(self.records.experiment(self.experiment_id), index, iterations)
            subsample = 1.0
            if pipeline is None:
                history = [trial_of(it) for it in iterations if not ensembles.is_ensemble(it)]
                proposal = self.proposer.propose(index, history, self._search_context(experiment))
                pipeline, subsample = pipeline_of(proposal), proposal.subsample
            if pipeline is not ensembles.WAIT:
                iteration = experiment_pb2.Iteration(
                    name=f"{self.name}/iterations/{index}", index=index,
                    state=experiment_pb2.ITERATION_STATE_QUEUED, pipeline=pipeline, subsample=subsample,
                )
                self.records.put_iteration(self.experiment_id, iteration)
                return iteration
        # An ensemble slot waits until the searched iterations still running have ended.
        time.sleep(0.5)
        return None

    def _search_context(self, experiment) -> SearchContext:
        return SearchContext(self._remaining(experiment), self._rows)

    def _remaining(self, experiment, searched: bool = True) -> float | None:
        """Return the time left of the budget, for searched iterations without the ensembles' reserve."""
        remaining = budget.remaining_seconds(experiment, time.monotonic() - self._started)
        if remaining is None or not searched:
            return remaining
        return remaining - self._reserve(experiment)

    @staticmethod
    def _reserve(experiment) -> float:
        return budget.ensemble_reserve_seconds(experiment, len(ensembles.enabled_ensembles(experiment)))

    def _ended_iterations(self) -> list:
        ended = [it for it in self.records.store.list_iterations(self.experiment_id)
                 if it.state in ENDED_ITERATION_STATES]
        return sorted(ended, key=lambda it: it.end_time.ToNanoseconds())

    def _run_iteration(self, experiment, iteration, lease) -> None:
        index = iteration.index
        with self._lock:
            self._running[index] = lease.address
        iteration.state = experiment_pb2.ITERATION_STATE_RUNNING
        iteration.node = lease.node
        iteration.attempts += 1
        iteration.start_time.CopyFrom(now())
        iteration.error = ""
        self.records.put_iteration(self.experiment_id, iteration)
        self.log.info("iteration_started", iteration=index, pipeline=iteration.pipeline.description, node=lease.node)
        searched = not ensembles.is_ensemble(iteration)
        remaining = self._remaining(experiment, searched)
        reserved = searched and self._reserve(experiment) > 0
        timeout = budget.iteration_timeout_seconds(experiment, remaining,
                                                   margin=0.0 if reserved else budget.OVERRUN_MARGIN_SECONDS)

        request = trainer_pb2.RunIterationRequest(
            iteration=iteration.name, dataset=experiment.dataset, task=experiment.task, pipeline=iteration.pipeline,
            validation=experiment.validation, output_uri=self.object_store.uri(iteration_prefix(self.experiment_id, index)),
            timeout=duration(timeout), seed=experiment.seed,
            preprocess=experiment.preprocess, subsample=iteration.subsample,
        )
        started = time.monotonic()
        retry = node_failed = False
        try:
            try:
                response = self.clients.trainer(lease.address).RunIteration(request,
                                                                            timeout=timeout + RPC_MARGIN_SECONDS)
                self._record_success(experiment, iteration, response)
            except grpc.RpcError as error:
                if self._suspended.is_set():
                    # The call failed because this service is stopping: the iteration stays RUNNING in the
                    # store and runs again when the experiment resumes.
                    self.log.info("iteration_left_to_resume", iteration=index, error=error.details())
                    return
                node_failed = node_lost(error)
                retry = self._record_failure(iteration, error)
            finally:
                iteration.duration.CopyFrom(duration(time.monotonic() - started))
                with self._lock:
                    self._running.pop(index, None)
            if not retry:
                iteration.end_time.CopyFrom(now())
                self.records.put_iteration(self.experiment_id, iteration)
                self.log.info("iteration_finished", iteration=index,
                              state=experiment_pb2.IterationState.Name(iteration.state), metric=iteration.score,
                              duration_s=round(iteration.duration.ToNanoseconds() / 1e9, 2))
        finally:
            # Released after the result is stored, because ReleaseNode waits while the compute service is down.
            self._release(lease, node_failed)
        if retry:
            self._cancel.wait(RETRY_BACKOFF_SECONDS * 2 ** (iteration.attempts - 1))
            self._retries.append(index)

    def _record_success(self, experiment, iteration, response) -> None:
        iteration.metrics.update(response.metrics)
        iteration.score = response.metrics.get(experiment.primary_metric, float("nan"))
        iteration.model_uri = response.model_uri
        iteration.log_uri = response.log_uri
        iteration.metrics_uri = response.metrics_uri
        iteration.oof_predictions_uri = response.oof_predictions_uri
        iteration.validation_strategy = response.validation_strategy
        iteration.state = experiment_pb2.ITERATION_STATE_SUCCEEDED
        if self._rows is None:
            self._rows = self._read_rows(response.metrics_uri)
        if response.guardrails and not self.records.experiment(self.experiment_id).guardrails:
            self.records.update_experiment(self.experiment_id, lambda stored: copy_data_report(stored, response))

    def _read_rows(self, metrics_uri: str) -> int | None:
        """Return the data set's row count from an iteration's metrics document, None when unreadable."""
        try:
            return int(json.loads(self.object_store.get_bytes(metrics_uri))["rows"])
        except Exception as error:  # Only the low-fidelity search depends on it, so the search goes on.
            self.log.warning("rows_unknown", metrics_uri=metrics_uri, error=repr(error))
            return None

    def _record_failure(self, iteration, error: grpc.RpcError) -> bool:
        """Set the failed state of an iteration; return True when it should run again on another node."""
        code = error.code()
        with self._lock:
            canceled = iteration.index in self._canceled_iterations
        if node_lost(error) and not canceled and not self._cancel.is_set() and iteration.attempts < MAX_ATTEMPTS:
            self.log.warning("iteration_retrying", iteration=iteration.index, attempt=iteration.attempts,
                             error=error.details())
            iteration.state = experiment_pb2.ITERATION_STATE_QUEUED
            iteration.error = f"attempt {iteration.attempts} lost its node: {error.details()}"
            self.records.put_iteration(self.experiment_id, iteration)
            return True
        if canceled or self._cancel.is_set():
            iteration.state = experiment_pb2.ITERATION_STATE_CANCELED
            iteration.error = "canceled by request"
        else:
            iteration.state = STATE_BY_CODE.get(code, experiment_pb2.ITERATION_STATE_FAILED)
            iteration.error = f"{code.name}: {error.details()}"
        return False

    def _wait_running(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            self.cancel()
            pool.shutdown(wait=True)

    def _finish(self) -> None:
        self._raise_if_suspended()
        experiment = self.records.experiment(self.experiment_id)
        if self._cancel.is_set():
            self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_CANCELED)
            return
        if experiment.best_iteration < 0:
            counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(experiment.iteration_counts.items()))
            self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_FAILED,
                                   f"no iteration succeeded ({counts or 'none ran'}); "
                                   "see the iterations' errors and logs")
            return
        if experiment.model_explainability:
            explain_best(self.records, self.clients.explainer, self.object_store, self.experiment_id,
                         self._raise_if_suspended)
        self.records.set_state(self.experiment_id, experiment_pb2.EXPERIMENT_STATE_SUCCEEDED)
