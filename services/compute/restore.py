"""Restore stored targets after a restart and adopt the node processes that still run.

Node processes outlive a compute process killed with SIGKILL. A restarted
service reads its targets and their started nodes from the `ComputeStore`.
Nodes whose process is gone are forgotten. The others are adopted: the
provider watches and stops them like nodes it started, and each must pass a
health check before it counts as ready. A node that fails the check in time
is stopped, and the autoscaler starts replacements up to each target's
demand.

Leases held at the restart stay valid: a leased node stays leased to its
holder, which may still be running an iteration on it and releases it as
usual. The lease of a node that is forgotten or stopped counts as lost, so
that ReleaseNode on it succeeds once.
"""

from __future__ import annotations

import threading
import time

import structlog

from services.compute.models import Node, NodeState, ProvisioningState, Target
from services.compute.pool import NodePool
from services.compute.provider import NodeStartError

log = structlog.get_logger(__name__)

# Seconds an adopted node that served before the restart gets to pass a
# health check before it is stopped. A node that was still starting gets the
# pool's `node_start_timeout` instead.
ADOPT_TIMEOUT_SECONDS = 5.0


class RestoringPool(NodePool):
    """A node pool that restores its targets and nodes from its store."""

    def restore(self, adopt_timeout: float = ADOPT_TIMEOUT_SECONDS) -> None:
        """Load the stored targets and adopt their running node processes; call once, before serving.

        It returns once every target is back, without waiting for health
        checks, so that no call finds a stored target missing. Adopted nodes
        are PREPARING until they pass the check, except leased ones, which stay
        RUNNING with their lease.
        """
        for target in self._store.load():
            if target.spec.provider not in self._providers or target.size is None:
                log.error("target_not_restored", compute_target=target.name, provider=target.spec.provider,
                          vm_size=target.spec.vm_size, reason="unknown provider or VM size")
                continue
            with self._cond:
                self._targets[target.target_id] = target
                self._restore_nodes(target, adopt_timeout)
                log.info("target_restored", compute_target=target.name, state=target.state.value,
                         nodes=len(target.nodes), leased=len(target.nodes_in(NodeState.RUNNING)))
                self._cond.notify_all()

    def _restore_nodes(self, target: Target, adopt_timeout: float) -> None:
        provider = self._provider(target)
        for node in list(target.nodes.values()):
            try:
                adopted = provider.adopt_node(node.handle)
            except Exception:
                log.exception("node_adopt_crashed", node=node.name)
                adopted = False
            if not adopted:
                log.warning("node_forgotten", node=node.name, state=node.state.value, lease=node.lease)
                if node.lease:
                    target.lost_leases.add(node.lease)
                target.nodes.pop(node.node_id)
                continue

            was_starting = node.state is NodeState.PREPARING
            if node.state is not NodeState.RUNNING or not node.lease:
                # Idle, starting and stopping nodes alike are leasable once they pass the health check.
                node.lease = ""
                node.holder = ""
                node.set_state(NodeState.PREPARING)
            timeout = self.node_start_timeout if was_starting else adopt_timeout
            log.info("node_adopting", node=node.name, state=node.state.value, lease=node.lease,
                     timeout_seconds=timeout)
            threading.Thread(target=self._check_adopted, args=(target, node, timeout),
                             name=f"adopt-{node.node_id}", daemon=True).start()

        self._update_provisioning(target)
        if target.state is ProvisioningState.DELETING:
            # Deleting goes on: unleased nodes stop now, leased ones when released.
            for node in target.nodes_in(NodeState.PREPARING):
                self._begin_stop(target, node, reason="target_deleted")
            if not target.nodes:
                del self._targets[target.target_id]
                log.info("target_deleted", compute_target=target.name)
        self._persist(target)

    def _check_adopted(self, target: Target, node: Node, timeout: float) -> None:
        """Wait until an adopted node passes a health check; stop and forget it when it fails."""
        provider = self._provider(target)
        try:
            provider.wait_until_ready(node.handle, timeout)
        except NodeStartError as error:
            with self._cond:
                # A node that was lost or stopped meanwhile has been handled already.
                current = target.nodes.get(node.node_id) is node and node.state is not NodeState.LEAVING
                if current:
                    log.error("node_adopt_failed", node=node.name, error=str(error), lease=node.lease)
                    if node.lease:
                        target.lost_leases.add(node.lease)
                    node.set_state(NodeState.UNUSABLE)
                    self._remove_node(target, node)
            if current:
                self._stop_process(target, node, 0.0)
            return

        with self._cond:
            if node.state is NodeState.PREPARING:
                node.set_state(NodeState.IDLE)
                node.idle_since = time.monotonic()
                self._update_provisioning(target)
                self._persist(target)
                self._cond.notify_all()
            if node.state in (NodeState.IDLE, NodeState.RUNNING):
                log.info("node_adopted", node=node.name, address=node.address, state=node.state.value)
