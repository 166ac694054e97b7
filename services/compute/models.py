"""Domain types of the compute service: target specs, targets, nodes and read-only views.

`Target` and `Node` are mutable and belong to `ComputeManager`, which changes
them only while it holds its lock. Callers outside the manager get frozen
`TargetView`, `NodeView` and `LeaseView` snapshots.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from services.compute.vm_sizes import VmSize

TARGET_COLLECTION = "computeTargets"
DEFAULT_IDLE_SECONDS = 120
DEFAULT_PROVIDER = "local"


class VmPriority(enum.Enum):
    DEDICATED = "dedicated"
    LOW_PRIORITY = "low_priority"


class ProvisioningState(enum.Enum):
    CREATING = "creating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DELETING = "deleting"


class NodeState(enum.Enum):
    PREPARING = "preparing"
    IDLE = "idle"
    RUNNING = "running"
    LEAVING = "leaving"
    UNUSABLE = "unusable"


# Nodes that count towards `max_nodes` and the autoscaler's node count.
ACTIVE_STATES = (NodeState.PREPARING, NodeState.IDLE, NodeState.RUNNING)
# Nodes that serve: WaitComputeTarget counts these.
READY_STATES = (NodeState.IDLE, NodeState.RUNNING)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def target_name(target_id: str) -> str:
    return f"{TARGET_COLLECTION}/{target_id}"


@dataclass
class TargetSpec:
    """Settings of a compute target as the caller sent them.

    `validation.validate_create` checks them and returns a normalized copy, in
    which `vm_priority` is a `VmPriority`, `provider` is never empty and
    `idle_seconds_before_scaledown` is never 0. Before that, `vm_priority` is
    None when the request carried an unknown value.
    """

    vm_size: str
    min_nodes: int = 0
    max_nodes: int = 0
    idle_seconds_before_scaledown: int = 0
    vm_priority: VmPriority | None = VmPriority.DEDICATED
    provider: str = ""


@dataclass
class Node:
    """One trainer node; `handle` is the provider's record of its process, None until started."""

    node_id: str
    target_id: str
    state: NodeState
    state_time: datetime
    address: str = ""
    handle: object | None = None
    lease: str = ""
    holder: str = ""
    # time.monotonic() when the node last became IDLE; the autoscaler compares it
    # with `idle_seconds_before_scaledown`.
    idle_since: float = 0.0

    @property
    def name(self) -> str:
        return f"{target_name(self.target_id)}/nodes/{self.node_id}"

    def set_state(self, state: NodeState) -> None:
        self.state = state
        self.state_time = utc_now()


@dataclass
class Target:
    """A compute target and the bookkeeping the autoscaler and the lease queue need."""

    target_id: str
    spec: TargetSpec
    size: VmSize
    create_time: datetime
    state: ProvisioningState = ProvisioningState.CREATING
    provisioning_error: str = ""
    nodes: dict[str, Node] = field(default_factory=dict)
    # AcquireNode calls in arrival order; only the head may take an idle node.
    waiters: deque[object] = field(default_factory=deque)
    # min_node_count of each WaitComputeTarget call in progress.
    wait_demands: list[int] = field(default_factory=list)
    # Leases whose node exited while leased, so that ReleaseNode on them succeeds.
    lost_leases: set[str] = field(default_factory=set)
    start_failures: int = 0
    last_start_error: str = ""
    # time.monotonic() before which the autoscaler starts no node, after a failed start.
    next_start_time: float = 0.0

    @property
    def name(self) -> str:
        return target_name(self.target_id)

    def nodes_in(self, *states: NodeState) -> list[Node]:
        return [node for node in self.nodes.values() if node.state in states]


@dataclass(frozen=True)
class NodeView:
    name: str
    address: str
    state: NodeState
    lease: str
    holder: str
    state_time: datetime


@dataclass(frozen=True)
class TargetView:
    """Snapshot of a target, as GetComputeTarget returns it."""

    name: str
    spec: TargetSpec
    size: VmSize
    state: ProvisioningState
    provisioning_error: str
    current_node_count: int
    target_node_count: int
    nodes: tuple[NodeView, ...]
    queued_lease_requests: int
    create_time: datetime


@dataclass(frozen=True)
class LeaseView:
    name: str
    node: str
    address: str
    holder: str
    cores: int
    memory_mb: int
