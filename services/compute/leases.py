"""Node leases: AcquireNode and ReleaseNode on top of the node pool.

Callers wait in FIFO order per target: only the oldest waiting AcquireNode
call may take an idle node, and every waiting call counts as demand, so the
autoscaler starts nodes for it up to `max_nodes`.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable

import structlog

from automl.common.errors import Cancelled, FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from services.compute.models import LeaseView, Node, NodeState, ProvisioningState, Target
from services.compute.restore import RestoringPool
from services.compute.validation import parse_lease_name, parse_target_name, validate_holder

log = structlog.get_logger(__name__)

# Maximum sleep between checks of a waiting call's cancellation, in seconds.
CANCEL_CHECK_SECONDS = 0.5


def never_cancelled() -> bool:
    return False


class LeasingPool(RestoringPool):
    """A node pool that lends idle nodes to holders."""

    def _require(self, target_id: str) -> Target:
        target = self._targets.get(target_id)
        if target is None:
            name = f"computeTargets/{target_id}"
            raise NotFound(f"compute target '{name}' not found; ListComputeTargets shows the existing ones",
                           reason="COMPUTE_TARGET_NOT_FOUND", metadata={"compute_target": name})
        return target

    def _check_running(self) -> None:
        if self._stopping:
            raise Unavailable("the compute service is stopping; retry once it is back", reason="SERVICE_STOPPING")

    def acquire(self, compute_target: str, holder: str, wait_timeout: float,
                is_cancelled: Callable[[], bool] = never_cancelled) -> LeaseView:
        """Lease an idle node of `compute_target`, waiting up to `wait_timeout` seconds.

        Raises
        ------
        NotFound
            When the target does not exist.
        FailedPrecondition
            When the target is being deleted or failed to provision.
        ResourceExhausted
            When no node became free in time; the caller should call again.
        Cancelled
            When `is_cancelled` turns true while waiting.
        """
        target_id = parse_target_name(compute_target, "compute_target")
        holder = validate_holder(holder)
        deadline = time.monotonic() + wait_timeout
        waiter = object()

        with self._cond:
            self._check_running()
            target = self._require(target_id)
            self._check_leasable(target)
            target.waiters.append(waiter)
            try:
                while True:
                    if target.waiters[0] is waiter:
                        # A node that died since the autoscaler's last pass must not be leased again.
                        self._check_exits(target)
                        node = self._idle_node(target)
                        if node is not None:
                            return self._lease(target, node, holder)
                    self._reconcile(target)

                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._exhausted(target, wait_timeout)
                    if is_cancelled():
                        raise Cancelled(f"AcquireNode on {target.name} was cancelled while waiting", reason="CANCELLED")
                    self._cond.wait(min(remaining, CANCEL_CHECK_SECONDS))
                    self._check_running()
                    self._check_leasable(target)
            finally:
                target.waiters.remove(waiter)
                # The next waiter may now be at the head of the queue.
                self._cond.notify_all()

    def release(self, lease_name: str, node_failed: bool = False) -> None:
        """Return a leased node to its target, or stop it when the target is being deleted or it failed.

        A holder sets `node_failed` when its call to the node failed. Such a
        node may still run for a while as it shuts down, and leasing it again
        would fail the next call too, so it is stopped and the autoscaler
        replaces it.

        Raises
        ------
        NotFound
            When no node holds the lease.
        """
        target_id = parse_lease_name(lease_name)
        with self._cond:
            target = self._targets.get(target_id)
            node = None
            if target is not None:
                node = next((n for n in target.nodes.values() if n.lease == lease_name), None)
                if node is None and lease_name in target.lost_leases:
                    # The node exited while leased; releasing it has nothing left to do.
                    target.lost_leases.discard(lease_name)
                    log.info("lease_released", lease=lease_name, node_lost=True)
                    return
            if node is None or node.state is not NodeState.RUNNING:
                raise NotFound(f"lease '{lease_name}' not found; it was released already or its target was deleted",
                               reason="LEASE_NOT_FOUND", metadata={"lease": lease_name})

            log.info("lease_released", lease=lease_name, node=node.name, holder=node.holder, node_failed=node_failed)
            if target.state is ProvisioningState.DELETING:
                self._begin_stop(target, node, reason="target_deleted")
                return
            if node_failed:
                self._begin_stop(target, node, reason="reported_failed")
                self._cond.notify_all()
                return
            node.lease = ""
            node.holder = ""
            node.set_state(NodeState.IDLE)
            node.idle_since = time.monotonic()
            self._persist(target)
            self._cond.notify_all()

    def _check_leasable(self, target: Target) -> None:
        if self._targets.get(target.target_id) is not target or target.state is ProvisioningState.DELETING:
            raise FailedPrecondition(f"compute target '{target.name}' is being deleted; use another target",
                                     reason="COMPUTE_TARGET_DELETING", metadata={"compute_target": target.name})
        if target.state is ProvisioningState.FAILED:
            raise FailedPrecondition(
                f"compute target '{target.name}' failed to provision ({target.provisioning_error}); "
                "delete it and create it again", reason="COMPUTE_TARGET_FAILED",
                metadata={"compute_target": target.name})

    @staticmethod
    def _idle_node(target: Target) -> Node | None:
        # The most recently idle node first, so the others reach their
        # scale-down time.
        idle = target.nodes_in(NodeState.IDLE)
        return max(idle, key=lambda n: n.idle_since) if idle else None

    def _lease(self, target: Target, node: Node, holder: str) -> LeaseView:
        node.lease = f"{target.name}/leases/{uuid.uuid4()}"
        node.holder = holder
        node.set_state(NodeState.RUNNING)
        log.info("lease_granted", lease=node.lease, node=node.name, holder=holder)
        self._persist(target)
        return LeaseView(name=node.lease, node=node.name, address=node.address, holder=holder,
                         cores=target.size.cores, memory_mb=target.size.memory_mb)

    def _exhausted(self, target: Target, wait_timeout: float) -> ResourceExhausted:
        active = len([n for n in target.nodes.values() if n.state is not NodeState.LEAVING])
        message = (f"no node of {target.name} became free within {wait_timeout:g} s "
                   f"({active} of max_nodes {target.spec.max_nodes} exist, "
                   f"{len(target.nodes_in(NodeState.RUNNING))} leased); call AcquireNode again")
        if target.last_start_error and target.start_failures:
            message += f"; the last node start failed: {target.last_start_error}"
        return ResourceExhausted(message, reason="NO_NODE_AVAILABLE",
                                 metadata={"compute_target": target.name, "max_nodes": str(target.spec.max_nodes)})
