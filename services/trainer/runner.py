"""Running iterations in worker processes, with timeouts and cancellation.

The server process downloads the data set once per node (`DatasetCache`) and
starts one worker per iteration from a forkserver that has already imported
numpy, pandas and scikit-learn. The worker does the training (see
`training.run_worker`) and sends a result dict back over a pipe. Killing the
worker's process group is how timeouts and CancelRun stop an iteration.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

import structlog
import urllib3
from minio.error import S3Error

from automl.common.config import S3Settings
from automl.common.errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition,
                                  FieldViolation, InvalidArgument, NotFound, ResourceExhausted,
                                  ServiceError, Unavailable)
from automl.common.storage import ObjectStore
from services.trainer.procfs import group_rss_mib
from services.trainer.spec import IterationSpec
from services.trainer.outputs import output_store

log = structlog.get_logger(__name__)

# Imported once by the forkserver, so every worker starts with them loaded.
PRELOAD = ["numpy", "pandas", "scipy", "sklearn", "services.trainer.training"]

# How often a waiting RunIteration checks whether its caller went away.
POLL_SECONDS = 0.2

# Finished iterations remembered so that a late CancelRun succeeds quietly.
FINISHED_MEMORY = 1000

ERROR_CLASSES = {cls.__name__: cls for cls in (FailedPrecondition, NotFound, ResourceExhausted, Unavailable,
                                               DeadlineExceeded, Cancelled, AlreadyExists)}


@dataclass(frozen=True)
class NodeSettings:
    """Name, cores, memory and cache folder of this node."""

    name: str
    cores: int
    # The memory limit of one iteration: a worker whose process group's resident memory exceeds it is stopped.
    memory_mb: int
    cache_dir: Path


@dataclass
class IterationResult:
    """Outcome of a successful iteration, as the worker reports it."""

    metrics: dict[str, float]
    model_uri: str
    log_uri: str
    metrics_uri: str
    duration_seconds: float
    validation_strategy: str
    node: str
    oof_predictions_uri: str = ""
    # Featurizer summary_ (None without preprocess) and guardrail dicts; see guardrails.py.
    featurization: list | None = None
    guardrails: list = field(default_factory=list)


@dataclass
class _Run:
    """One running iteration: its worker and why it was stopped, if it was."""

    iteration: str
    process: multiprocessing.Process | None = None
    stop_reason: str = ""
    # Resident memory in MiB when the memory limit stopped the worker.
    memory_used_mib: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self, reason: str) -> None:
        """Kill the worker's process group (the worker and anything it started)."""
        with self.lock:
            if not self.stop_reason:
                self.stop_reason = reason
            process = self.process
        if process is not None and process.pid is not None:
            _kill_group(process)


def _kill_group(process: multiprocessing.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        # The worker may not have become a group leader yet; kill it alone.
        try:
            process.kill()
        except (ProcessLookupError, AttributeError):
            pass


class IterationRunner:
    """Run iterations on this node, one worker process each.

    Parameters
    ----------
    node : NodeSettings
        Name, cores, memory and cache folder of the node.
    s3 : S3Settings
        Object store with the data sets and the iteration outputs.
    """

    def __init__(self, node: NodeSettings, s3: S3Settings):
        self.node = node
        self.s3 = s3
        self._cache = None
        self.work_dir = Path(node.cache_dir) / "runs"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._runs: dict[str, _Run] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        # Separate from _lock: creating the cache imports pandas, which must not hold up CancelRun.
        self._cache_lock = threading.Lock()

    @property
    def cache(self):
        """The node's DatasetCache, created on first use (it loads pandas)."""
        with self._cache_lock:
            if self._cache is None:
                from automl.common.datasets import DatasetCache

                self._cache = DatasetCache(ObjectStore(self.s3), Path(self.node.cache_dir) / "datasets")
            return self._cache

    def warm_up(self) -> None:
        """Load pandas and scikit-learn and start the forkserver now rather than in the first iteration."""
        started = time.monotonic()
        from services.trainer import pipelines, training  # noqa: F401  (imported for their side effect)

        self.cache  # creates the DatasetCache, which loads pandas
        process = self._context.Process(target=_noop, name="trainer-warm-up", daemon=True)
        process.start()
        process.join()
        log.info("trainer_warmed_up", node=self.node.name, seconds=round(time.monotonic() - started, 2))

    def run(self, spec: IterationSpec, caller_active: Callable[[], bool] = lambda: True) -> IterationResult:
        """Run one iteration and block until it ends.

        Parameters
        ----------
        spec : IterationSpec
            The validated request.
        caller_active : callable
            Returns False once the caller has gone away; the worker is then killed.

        Raises
        ------
        DeadlineExceeded
            When the iteration takes longer than `spec.timeout_seconds`.
        Cancelled
            When CancelRun stops it or the caller goes away.
        ServiceError
            Whatever the worker reports (InvalidArgument for unusable data, ...).
        """
        deadline = time.monotonic() + spec.timeout_seconds
        run = self._register(spec.iteration)
        run_dir = self.work_dir / uuid.uuid4().hex
        run_dir.mkdir(parents=True)
        log_path = run_dir / "log.txt"
        try:
            with structlog.contextvars.bound_contextvars(iteration=spec.iteration):
                return self._run(spec, run, log_path, deadline, caller_active)
        finally:
            self._unregister(run)
            shutil.rmtree(run_dir, ignore_errors=True)

    def cancel(self, iteration: str) -> None:
        """Kill the worker of a running iteration.

        Raises
        ------
        NotFound
            When this node neither runs nor recently ran the iteration.
        """
        with self._lock:
            run = self._runs.get(iteration)
            recently_finished = iteration in self._finished
        if run is None:
            if recently_finished:
                return
            raise NotFound(f"iteration {iteration} is not running on node {self.node.name}",
                           "ITERATION_NOT_RUNNING", {"iteration": iteration})
        run.stop("cancelled")
        log.info("iteration_cancel_requested", iteration=iteration)

    def shutdown(self) -> None:
        """Kill every running worker; their iterations fail with UNAVAILABLE (reason NODE_SHUTTING_DOWN)."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop("shutdown")

    def _run(self, spec: IterationSpec, run: _Run, log_path: Path, deadline: float,
             caller_active: Callable[[], bool]) -> IterationResult:
        log.info("iteration_started", estimator=spec.estimator, scaler=spec.scaler,
                 timeout_seconds=spec.timeout_seconds)
        try:
            dataset_path = self._download(spec, deadline, run)
            result = self._run_worker(spec, dataset_path, log_path, deadline, run, caller_active)
        except ServiceError as error:
            self._upload_failure_log(spec, log_path, error)
            log.info("iteration_failed", code=type(error).__name__, error=error.message)
            raise
        log.info("iteration_finished", seconds=round(result.duration_seconds, 3),
                 validation=result.validation_strategy)
        return result

    def _register(self, iteration: str) -> _Run:
        with self._lock:
            if iteration in self._runs:
                raise AlreadyExists(f"iteration {iteration} is already running on node {self.node.name}",
                                    "ITERATION_RUNNING", {"iteration": iteration})
            run = _Run(iteration)
            self._runs[iteration] = run
            self._finished.pop(iteration, None)
            return run

    def _unregister(self, run: _Run) -> None:
        with self._lock:
            self._runs.pop(run.iteration, None)
            self._finished[run.iteration] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)

    def _download(self, spec: IterationSpec, deadline: float, run: _Run) -> Path:
        try:
            path = self.cache.local_path(spec.dataset_uri)
        except Unavailable as error:
            raise Unavailable(f"data set {spec.dataset_uri} could not be downloaded: {error.message}",
                              "STORAGE_UNAVAILABLE", {"uri": spec.dataset_uri}) from error
        except (S3Error, urllib3.exceptions.HTTPError, OSError) as error:
            raise Unavailable(f"data set {spec.dataset_uri} could not be downloaded from object storage at "
                              f"{self.s3.endpoint}: {error}; retry when the store is reachable",
                              "STORAGE_UNAVAILABLE", {"uri": spec.dataset_uri}) from error
        self._raise_if_stopped(spec, run, deadline)
        return path

    def _run_worker(self, spec: IterationSpec, dataset_path: Path, log_path: Path, deadline: float, run: _Run,
                    caller_active: Callable[[], bool]) -> IterationResult:
        from automl.common.datasets import dataset_format
        from services.trainer import training

        receiver, sender = self._context.Pipe(duplex=False)
        job = training.WorkerJob(spec=spec, dataset_path=str(dataset_path),
                                 dataset_format=dataset_format(spec.dataset_uri), log_path=str(log_path),
                                 s3=self.s3, node=self.node.name, cores=self.node.cores, server_pid=os.getpid())
        process = self._context.Process(target=training.run_worker, args=(job, sender),
                                        name=f"trainer-{spec.iteration}", daemon=True)
        with run.lock:
            if not run.stop_reason:
                process.start()
                run.process = process
        sender.close()
        try:
            self._raise_if_stopped(spec, run, deadline)
            log.info("worker_started", pid=process.pid)
            message = self._wait(spec, receiver, process, deadline, run, caller_active)
        finally:
            receiver.close()
            if process.pid is not None:
                process.join(timeout=2)
                if process.is_alive():
                    _kill_group(process)
                    process.join(timeout=2)
        return _result_from_message(message)

    def _wait(self, spec: IterationSpec, receiver, process, deadline: float, run: _Run,
              caller_active: Callable[[], bool]) -> dict:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                run.stop("timeout")
            elif not caller_active():
                run.stop("caller_gone")
            else:
                self._check_memory(process, run)
            ready = wait([receiver, process.sentinel], timeout=max(0.0, min(POLL_SECONDS, remaining)))
            self._raise_if_stopped(spec, run, deadline)
            if receiver in ready:
                try:
                    return receiver.recv()
                except EOFError:
                    # The worker closed the pipe without a result, so it is exiting.
                    process.join(timeout=1)
            if process.sentinel in ready or not process.is_alive():
                process.join(timeout=1)
                self._raise_if_stopped(spec, run, deadline)
                raise _crash_error(spec, process.exitcode, self.node.memory_mb)

    def _check_memory(self, process, run: _Run) -> None:
        used = group_rss_mib(process.pid) if process.pid is not None else None
        if used is not None and used > self.node.memory_mb:
            run.memory_used_mib = used
            log.warning("worker_memory_limit_exceeded", iteration=run.iteration, pid=process.pid,
                        used_mib=round(used), limit_mib=self.node.memory_mb)
            run.stop("memory")

    def _raise_if_stopped(self, spec: IterationSpec, run: _Run, deadline: float) -> None:
        if not run.stop_reason and time.monotonic() >= deadline:
            run.stop("timeout")
        reason = run.stop_reason
        if reason == "timeout":
            raise DeadlineExceeded(
                f"iteration {spec.iteration} timed out after {spec.timeout_seconds:g} s; its worker was stopped. "
                "Raise the iteration timeout or choose a faster pipeline", "ITERATION_TIMEOUT",
                {"iteration": spec.iteration, "timeout_seconds": f"{spec.timeout_seconds:g}"})
        if reason == "memory":
            raise ResourceExhausted(
                f"iteration {spec.iteration} used {run.memory_used_mib:.0f} MiB, over the node's memory limit of "
                f"{self.node.memory_mb} MiB; its worker was stopped and the node keeps running. Use a VM size "
                "with more memory, fewer rows or a lighter pipeline", "ITERATION_MEMORY_LIMIT",
                {"iteration": spec.iteration, "memory_limit_mib": str(self.node.memory_mb),
                 "memory_used_mib": f"{run.memory_used_mib:.0f}"})
        if reason == "shutdown":
            # UNAVAILABLE, as for a lost node, makes the orchestrator run the iteration again on another node.
            raise Unavailable(f"node {self.node.name} is shutting down and stopped iteration {spec.iteration}; "
                              "run it again on another node", "NODE_SHUTTING_DOWN", {"iteration": spec.iteration})
        if reason:
            raise Cancelled(f"iteration {spec.iteration} was cancelled ({reason.replace('_', ' ')})",
                            "ITERATION_CANCELLED", {"iteration": spec.iteration})

    def _upload_failure_log(self, spec: IterationSpec, log_path: Path, error: ServiceError) -> None:
        # The worker uploads its own log when it fails cleanly; a killed worker cannot.
        if getattr(error, "log_uploaded", False):
            return
        try:
            text = log_path.read_text() if log_path.exists() else ""
            text += f"{time.strftime('%Y-%m-%dT%H:%M:%S')} iteration failed: {error.message}\n"
            store, key = output_store(self.s3, spec.output_uri, "log.txt")
            store.put_bytes(key, text.encode(), "text/plain; charset=utf-8")
        except Exception as upload_error:  # A failed log upload must not hide the iteration's error.
            log.warning("failure_log_upload_failed", error=str(upload_error))


class WorkerError(RuntimeError):
    """The worker failed in an unexpected way; details are in the iteration log."""


def _noop() -> None:
    return None


def _crash_error(spec: IterationSpec, exitcode: int | None, memory_mb: int) -> ServiceError:
    if exitcode is not None and exitcode < 0 and -exitcode == signal.SIGKILL:
        return ResourceExhausted(
            f"the worker of iteration {spec.iteration} was killed (SIGKILL), most likely for running out of "
            f"memory; the node has {memory_mb} MiB. Use a smaller data set or a lighter pipeline",
            "WORKER_KILLED", {"iteration": spec.iteration})
    return Unavailable(f"the worker of iteration {spec.iteration} exited unexpectedly with code {exitcode}; "
                       "retry the iteration", "WORKER_CRASHED", {"iteration": spec.iteration})


def _result_from_message(message: dict) -> IterationResult:
    if message.get("status") == "ok":
        return IterationResult(**message["result"])
    error = message["error"]
    if error["kind"] == "Internal":
        # Not a ServiceError, so the servicer's decorator logs it and returns INTERNAL.
        raise WorkerError(error["message"])
    if error["kind"] == "InvalidArgument":
        exception: ServiceError = InvalidArgument([FieldViolation(f, d) for f, d in error["violations"]],
                                                  error["reason"])
    else:
        cls = ERROR_CLASSES.get(error["kind"], ServiceError)
        exception = cls(error["message"], error["reason"], error.get("metadata", {}))
    exception.log_uploaded = error.get("log_uploaded", False)
    raise exception
