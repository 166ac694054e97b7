"""Node lifecycle and autoscaling of every compute target.

`NodePool` owns the targets and one condition variable that guards them. It
starts nodes when a target needs more (its minimum, waiting AcquireNode calls,
WaitComputeTarget calls), stops nodes that stayed idle too long above the
minimum, and removes nodes whose process exited. Slow provider calls (start,
health wait, stop) run in their own threads without the lock.

Every change of a target or of a started node is written to a
`ComputeStore`, which `RestoringPool.restore` reads back after a restart.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import structlog

from services.compute.models import (
    ACTIVE_STATES, READY_STATES, Node, NodeState, ProvisioningState, Target, utc_now,
)
from services.compute.provider import NodeProvider, NodeStartError
from services.compute.store import ComputeStore

log = structlog.get_logger(__name__)

# Failed node starts a CREATING target tolerates before it turns FAILED.
MAX_CREATE_ATTEMPTS = 3
# Maximum pause between node starts after repeated failures, in seconds.
MAX_START_BACKOFF_SECONDS = 30.0


class NodePool:
    """Targets, their nodes and the autoscaler thread.

    Parameters
    ----------
    providers : dict[str, NodeProvider]
        Provider of each `provider` name a target may use.
    node_start_timeout : float
        Seconds a new node gets to serve before it counts as failed.
    stop_grace_seconds : float
        Seconds a stopping node gets after SIGTERM before it is killed.
    autoscale_interval : float
        Seconds between autoscaler rounds.
    store : ComputeStore, optional
        Where targets and nodes are kept across restarts; by default an in-memory database.
    """

    def __init__(self, providers: dict[str, NodeProvider], node_start_timeout: float = 60.0,
                 stop_grace_seconds: float = 10.0, autoscale_interval: float = 1.0,
                 store: ComputeStore | None = None):
        self._providers = providers
        self._store = store or ComputeStore()
        self.node_start_timeout = node_start_timeout
        self.stop_grace_seconds = stop_grace_seconds
        self.autoscale_interval = autoscale_interval
        self._cond = threading.Condition()
        self._targets: dict[str, Target] = {}
        self._stopping = False
        self._stop_event = threading.Event()
        self._autoscaler = threading.Thread(target=self._autoscale_loop, name="autoscaler", daemon=True)

    def start_autoscaler(self) -> None:
        """Start the thread that scales targets every `autoscale_interval` seconds."""
        self._autoscaler.start()

    def close(self) -> None:
        """Stop the autoscaler and every node process, adopted ones included; later node starts fail.

        The stored targets stay, and their nodes are forgotten because none runs any more.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._stop_event.set()
        if self._autoscaler.is_alive():
            self._autoscaler.join()
        for provider in self._providers.values():
            provider.close(self.stop_grace_seconds)
        try:
            self._store.delete_nodes()
        except sqlite3.Error as error:
            log.error("state_save_failed", error=str(error), path=self._store.path)

    def _provider(self, target: Target) -> NodeProvider:
        return self._providers[target.spec.provider]

    # Demand and scaling. Every method from here on expects the caller to hold self._cond.

    def _demand(self, target: Target) -> int:
        """Return the node count the target should move towards."""
        if self._stopping or target.state in (ProvisioningState.DELETING, ProvisioningState.FAILED):
            return 0
        running = len(target.nodes_in(NodeState.RUNNING))
        demand = max(target.spec.min_nodes, running + len(target.waiters), max(target.wait_demands, default=0))
        return min(demand, target.spec.max_nodes)

    def _reconcile(self, target: Target) -> None:
        """Start the nodes the target lacks, unless a failed start asked for a pause."""
        missing = self._demand(target) - len(target.nodes_in(*ACTIVE_STATES))
        if missing <= 0 or time.monotonic() < target.next_start_time:
            return
        for _ in range(missing):
            self._start_node(target)

    def _scale_down(self, target: Target) -> None:
        """Stop the longest-idle nodes above the demand once they were idle long enough."""
        if target.state is ProvisioningState.DELETING:
            return
        surplus = len(target.nodes_in(*ACTIVE_STATES)) - max(self._demand(target), target.spec.min_nodes)
        now = time.monotonic()
        for node in sorted(target.nodes_in(NodeState.IDLE), key=lambda n: n.idle_since):
            if surplus <= 0:
                break
            if now - node.idle_since >= target.spec.idle_seconds_before_scaledown:
                self._begin_stop(target, node, reason="idle")
                surplus -= 1

    def _check_exits(self, target: Target) -> None:
        """Remove serving nodes whose process exited; `_reconcile` then replaces them."""
        provider = self._provider(target)
        for node in target.nodes_in(*READY_STATES):
            code = provider.exit_code(node.handle)
            if code is None:
                continue
            log.error("node_lost", node=node.name, exit_code=code, lease=node.lease, holder=node.holder,
                      log=node.handle.log_path)
            node.set_state(NodeState.UNUSABLE)
            if node.lease:
                target.lost_leases.add(node.lease)
            self._remove_node(target, node)
            # Frees the node's port and cache folder; the process is already gone.
            threading.Thread(target=self._stop_process, args=(target, node, 0.0), daemon=True).start()

    def _update_provisioning(self, target: Target) -> None:
        if target.state is ProvisioningState.CREATING and \
                len(target.nodes_in(*READY_STATES)) >= target.spec.min_nodes:
            target.state = ProvisioningState.SUCCEEDED
            log.info("target_ready", compute_target=target.name, nodes=len(target.nodes))

    def _persist(self, target: Target) -> None:
        """Write the target and its started nodes to the store, or delete them once the target is gone.

        A failed write is logged and the service goes on with its state in
        memory, so only a later restart is affected.
        """
        try:
            # The identity check keeps the rows of a new target that reuses the ID.
            current = self._targets.get(target.target_id)
            if current is target:
                self._store.save_target(target)
            elif current is None:
                self._store.delete_target(target.target_id)
        except sqlite3.Error as error:
            log.error("state_save_failed", compute_target=target.name, error=str(error), path=self._store.path)

    def _remove_node(self, target: Target, node: Node) -> None:
        target.nodes.pop(node.node_id, None)
        # The identity check keeps a new target that reuses the ID.
        if target.state is ProvisioningState.DELETING and not target.nodes and \
                self._targets.get(target.target_id) is target:
            del self._targets[target.target_id]
            log.info("target_deleted", compute_target=target.name)
        self._persist(target)
        self._cond.notify_all()

    def _autoscale_loop(self) -> None:
        while not self._stop_event.is_set():
            with self._cond:
                if self._stopping:
                    return
                for target in list(self._targets.values()):
                    self._check_exits(target)
                    self._reconcile(target)
                    self._scale_down(target)
            self._stop_event.wait(self.autoscale_interval)

    # Starting nodes.

    def _start_node(self, target: Target) -> None:
        node = Node(node_id=f"node-{uuid.uuid4().hex[:8]}", target_id=target.target_id,
                    state=NodeState.PREPARING, state_time=utc_now())
        target.nodes[node.node_id] = node
        log.info("node_starting", node=node.name, vm_size=target.size.name)
        threading.Thread(target=self._run_start, args=(target, node), name=f"start-{node.node_id}",
                         daemon=True).start()

    def _run_start(self, target: Target, node: Node) -> None:
        provider = self._provider(target)
        try:
            handle = provider.start_node(node.name, target.size)
        except NodeStartError as error:
            self._start_failed(target, node, str(error))
            return
        except Exception as error:
            log.exception("node_start_crashed", node=node.name)
            self._start_failed(target, node, f"{type(error).__name__}: {error}")
            return

        with self._cond:
            node.handle = handle
            node.address = handle.address
            leaving = node.state is NodeState.LEAVING
            # Stored before the health wait, so a restart in between finds the process.
            # NOTE: a compute process killed between the process start and this write leaves that node unrecorded.
            self._persist(target)
        if leaving:
            # The target was deleted while the process started, and no other thread has the handle yet.
            self._stop_process(target, node, self.stop_grace_seconds)
            return

        try:
            provider.wait_until_ready(handle, self.node_start_timeout)
        except NodeStartError as error:
            with self._cond:
                leaving = node.state is NodeState.LEAVING
            if not leaving:
                provider.stop_node(handle, self.stop_grace_seconds)
                self._start_failed(target, node, str(error))
            return

        with self._cond:
            if node.state is not NodeState.PREPARING:
                return
            node.set_state(NodeState.IDLE)
            node.idle_since = time.monotonic()
            target.start_failures = 0
            log.info("node_ready", node=node.name, address=node.address)
            self._update_provisioning(target)
            self._persist(target)
            self._cond.notify_all()

    def _start_failed(self, target: Target, node: Node, message: str) -> None:
        with self._cond:
            if node.state is NodeState.LEAVING:
                self._remove_node(target, node)
                return
            node.set_state(NodeState.UNUSABLE)
            self._remove_node(target, node)
            target.start_failures += 1
            target.last_start_error = message
            backoff = min(2.0 ** (target.start_failures - 1), MAX_START_BACKOFF_SECONDS)
            target.next_start_time = time.monotonic() + backoff
            log.error("node_start_failed", node=node.name, error=message, failures=target.start_failures,
                      retry_in_seconds=backoff)
            if target.state is ProvisioningState.CREATING and target.start_failures >= MAX_CREATE_ATTEMPTS:
                target.state = ProvisioningState.FAILED
                target.provisioning_error = (f"{target.start_failures} node starts failed; last error: {message}")
                log.error("target_failed", compute_target=target.name, error=target.provisioning_error)
                self._persist(target)

    # Stopping nodes.

    def _begin_stop(self, target: Target, node: Node, reason: str) -> None:
        """Mark a node LEAVING and stop its process in the background."""
        node.set_state(NodeState.LEAVING)
        node.lease = ""
        node.holder = ""
        log.info("node_stopping", node=node.name, reason=reason)
        self._persist(target)
        # Without a handle the start thread is still starting the process. It
        # stops the process once it finds the node LEAVING.
        if node.handle is not None:
            threading.Thread(target=self._stop_process, args=(target, node, self.stop_grace_seconds),
                             name=f"stop-{node.node_id}", daemon=True).start()

    def _stop_process(self, target: Target, node: Node, grace_seconds: float) -> None:
        try:
            self._provider(target).stop_node(node.handle, grace_seconds)
        except Exception:
            log.exception("node_stop_failed", node=node.name)
        with self._cond:
            if node.state is NodeState.LEAVING:
                log.info("node_stopped", node=node.name)
            self._remove_node(target, node)
