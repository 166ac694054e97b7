"""ComputeManager: the transport-neutral ComputeService.

Keeps compute targets in memory and in a `ComputeStore`, from which a
restarted service restores them (see `RestoringPool.restore`). The node processes
stop with the service (see `close`).
"""

from __future__ import annotations

import time
from typing import Callable

import structlog

from automl.common import paging
from automl.common.errors import AlreadyExists, Cancelled, NotFound
from services.compute.leases import CANCEL_CHECK_SECONDS, LeasingPool, never_cancelled
from services.compute.models import (
    READY_STATES, TARGET_COLLECTION, NodeState, NodeView, ProvisioningState, Target, TargetSpec, TargetView,
    target_name, utc_now,
)
from services.compute.validation import parse_target_name, validate_create, validate_min_node_count
from services.compute.vm_sizes import find_vm_size

log = structlog.get_logger(__name__)


class ComputeManager(LeasingPool):
    """Compute targets: create, get, list, delete, wait, and node leases (see `LeasingPool`)."""

    def create(self, target_id: str, spec: TargetSpec | None) -> TargetView:
        """Create a target in CREATING and start its minimum nodes in the background.

        Raises
        ------
        InvalidArgument
            With one violation per invalid field.
        AlreadyExists
            When a target with this ID exists, including one being deleted.
        """
        spec = validate_create(target_id, spec)
        name = target_name(target_id)
        with self._cond:
            self._check_running()
            if target_id in self._targets:
                raise AlreadyExists(f"compute target '{name}' already exists; choose another compute_target_id "
                                    "or delete the existing target first", reason="COMPUTE_TARGET_EXISTS",
                                    metadata={"compute_target": name})
            target = Target(target_id=target_id, spec=spec, size=find_vm_size(spec.vm_size), create_time=utc_now())
            self._targets[target_id] = target
            log.info("target_created", compute_target=name, vm_size=spec.vm_size, min_nodes=spec.min_nodes,
                     max_nodes=spec.max_nodes, idle_seconds=spec.idle_seconds_before_scaledown,
                     provider=spec.provider)
            # The contract returns every new target in CREATING, even one
            # without minimum nodes that is SUCCEEDED a moment later.
            view = self._view(target)
            self._update_provisioning(target)
            self._reconcile(target)
            self._persist(target)
            return view

    def get(self, name: str) -> TargetView:
        """Return a snapshot of the target called `name`."""
        target_id = parse_target_name(name)
        with self._cond:
            return self._view(self._require(target_id))

    def list(self, page_size: int, page_token: str) -> tuple[list[TargetView], str]:
        """Return one page of targets ordered by name, and the token of the next page ("" on the last)."""
        size = paging.page_size(page_size)
        offset = paging.decode_token(page_token, scope=TARGET_COLLECTION)
        with self._cond:
            ids = sorted(self._targets)
            page = [self._view(self._targets[target_id]) for target_id in ids[offset:offset + size]]
        # NOTE: offsets shift when targets are created or deleted between two
        # pages, so such a listing may skip or repeat a target.
        next_token = paging.encode_token(offset + size, scope=TARGET_COLLECTION) if len(ids) > offset + size else ""
        return page, next_token

    def delete(self, name: str) -> None:
        """Mark the target DELETING and stop its idle and starting nodes; leased nodes stop on release.

        The target disappears once its last node has stopped. Deleting a
        target that is already DELETING changes nothing.
        """
        target_id = parse_target_name(name)
        with self._cond:
            target = self._require(target_id)
            if target.state is ProvisioningState.DELETING:
                return
            target.state = ProvisioningState.DELETING
            log.info("target_deleting", compute_target=target.name, nodes=len(target.nodes),
                     leased=len(target.nodes_in(NodeState.RUNNING)))
            for node in target.nodes_in(NodeState.IDLE, NodeState.PREPARING):
                self._begin_stop(target, node, reason="target_deleted")
            if not target.nodes:
                del self._targets[target_id]
                log.info("target_deleted", compute_target=target.name)
            self._persist(target)
            self._cond.notify_all()

    def wait(self, name: str, min_node_count: int, timeout: float,
             is_cancelled: Callable[[], bool] = never_cancelled) -> TargetView:
        """Block until the target has `min_node_count` ready nodes and is no longer CREATING.

        Starts nodes up to `min_node_count` while it waits. Returns the target
        as it is when the count is reached, when the timeout passes, or at
        once when the target is FAILED or DELETING.

        Raises
        ------
        InvalidArgument
            When `min_node_count` is negative or above the target's `max_nodes`.
        NotFound
            When the target does not exist or disappears while waiting.
        """
        target_id = parse_target_name(name)
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._require(target_id)
            validate_min_node_count(min_node_count, target.spec.max_nodes)
            target.wait_demands.append(min_node_count)
            try:
                while True:
                    if self._targets.get(target_id) is not target:
                        raise NotFound(f"compute target '{target.name}' was deleted while waiting",
                                       reason="COMPUTE_TARGET_NOT_FOUND", metadata={"compute_target": target.name})
                    ready = len(target.nodes_in(*READY_STATES))
                    settled = target.state is not ProvisioningState.CREATING and ready >= min_node_count
                    finished = target.state in (ProvisioningState.FAILED, ProvisioningState.DELETING)
                    remaining = deadline - time.monotonic()
                    if settled or finished or remaining <= 0 or self._stopping:
                        return self._view(target)
                    if is_cancelled():
                        raise Cancelled(f"WaitComputeTarget on {target.name} was cancelled", reason="CANCELLED")
                    self._reconcile(target)
                    self._cond.wait(min(remaining, CANCEL_CHECK_SECONDS))
            finally:
                target.wait_demands.remove(min_node_count)

    def _view(self, target: Target) -> TargetView:
        nodes = tuple(
            NodeView(name=node.name, address=node.address, state=node.state, lease=node.lease,
                     holder=node.holder, state_time=node.state_time)
            for node in sorted(target.nodes.values(), key=lambda n: n.node_id)
        )
        return TargetView(
            name=target.name, spec=target.spec, size=target.size, state=target.state,
            provisioning_error=target.provisioning_error, current_node_count=len(target.nodes),
            target_node_count=self._demand(target),
            nodes=nodes, queued_lease_requests=len(target.waiters), create_time=target.create_time,
        )
