"""AcquireNode and ReleaseNode calls of an experiment, retried while the compute service is unavailable.

The compute service keeps its targets and leases across a restart, so a
runner waits for it instead of failing the experiment: a call that fails with
UNAVAILABLE is retried after a pause that doubles from
`RETRY_INITIAL_SECONDS` up to `RETRY_MAX_SECONDS`. The experiment fails only
when the service stays unavailable for `UNAVAILABLE_LIMIT_SECONDS`.
"""

from __future__ import annotations

import threading
import time

import grpc
import structlog

from automl.v1 import compute_pb2
from services.orchestrator.clients import Clients
from services.orchestrator.records import duration

ACQUIRE_WAIT_SECONDS = 5
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
# Time the compute service may stay unavailable before AcquireNode fails the
# experiment, and before ReleaseNode gives up on a lease.
UNAVAILABLE_LIMIT_SECONDS = 300.0


class TargetUnusable(Exception):
    """The compute target is gone or cannot lend nodes."""


class NodeLeases:
    """Leases nodes of one compute target for one experiment.

    Parameters
    ----------
    clients : Clients
        Contains the ComputeService stub.
    holder : str
        Name of the experiment, sent as the lease holder.
    cancelled : threading.Event
        Set when the experiment is canceled; it cuts the pauses between AcquireNode retries short.
    log : structlog.BoundLogger
        Logger bound to the experiment.
    """

    def __init__(self, clients: Clients, holder: str, cancelled: threading.Event, log):
        self.clients = clients
        self.holder = holder
        self.cancelled = cancelled
        self.log = log
        self._lock = threading.Lock()
        # time.monotonic() of the first UNAVAILABLE in a row of AcquireNode failures, None after a success.
        self._unavailable_since: float | None = None
        self._failures = 0

    def acquire(self, compute_target: str) -> compute_pb2.NodeLease | None:
        """Lease a node, or return None when none became free or the call should be made again.

        Raises
        ------
        TargetUnusable
            When the target does not exist or cannot lend nodes, or the
            compute service stayed unavailable for `UNAVAILABLE_LIMIT_SECONDS`.
        """
        request = compute_pb2.AcquireNodeRequest(compute_target=compute_target, holder=self.holder,
                                                 wait_timeout=duration(ACQUIRE_WAIT_SECONDS))
        try:
            lease = self.clients.compute.AcquireNode(request, timeout=ACQUIRE_WAIT_SECONDS + 10)
        except grpc.RpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise TargetUnusable(f"compute target {compute_target} cannot run iterations: "
                                     f"{error.details()}") from error
            if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED):
                return None
            self._pause_after_failure(compute_target, error)
            return None
        with self._lock:
            if self._failures:
                self.log.info("acquire_node_recovered", failures=self._failures)
            self._unavailable_since = None
            self._failures = 0
        return lease

    def _pause_after_failure(self, compute_target: str, error: grpc.RpcError) -> None:
        now = time.monotonic()
        with self._lock:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                self._unavailable_since = None
            elif self._unavailable_since is None:
                self._unavailable_since = now
            self._failures += 1
            failures, since = self._failures, self._unavailable_since
        if since is not None and now - since > UNAVAILABLE_LIMIT_SECONDS:
            raise TargetUnusable(f"the compute service for {compute_target} stayed unavailable for "
                                 f"{now - since:.0f} s: {error.details()}") from error
        pause = min(RETRY_INITIAL_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
        self.log.warning("acquire_node_failed", code=error.code().name, error=error.details(), failures=failures,
                         retry_in_seconds=pause)
        self.cancelled.wait(pause)

    def release(self, lease: compute_pb2.NodeLease, node_failed: bool = False) -> None:
        """Return a leased node, retrying while the compute service is unavailable.

        `node_failed` tells the compute service that a call to the node failed,
        so it replaces the node instead of lending it again.

        Failures are logged and never raised, because the iteration's result
        does not depend on them. A lease that the service no longer has
        (NOT_FOUND) is logged and dropped, for example when its target was
        deleted or the service restarted twice after its node was lost.
        """
        deadline = time.monotonic() + UNAVAILABLE_LIMIT_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                self.clients.compute.ReleaseNode(
                    compute_pb2.ReleaseNodeRequest(name=lease.name, node_failed=node_failed), timeout=10)
                if attempt > 1:
                    self.log.info("release_node_recovered", lease=lease.name, attempts=attempt)
                return
            except ValueError as error:  # The channel was closed because this service is stopping.
                self.log.info("release_node_skipped", lease=lease.name, error=str(error))
                return
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    self.log.info("release_node_unknown_lease", lease=lease.name, error=error.details())
                    return
                retry = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and \
                    time.monotonic() < deadline
                pause = min(RETRY_INITIAL_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS)
                self.log.warning("release_node_failed", lease=lease.name, code=code.name, error=error.details(),
                                 attempt=attempt, retry_in_seconds=pause if retry else None)
                if not retry:
                    return
                # A cancel does not cut this pause short, because a lease left behind would keep its node busy.
                time.sleep(pause)
