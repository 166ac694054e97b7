"""gRPC servicer of ComputeService: converts protos to domain types and back.

All logic lives in `ComputeManager`; each method here reads the request,
calls the manager and builds the response.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2

from automl.common.errors import Cancelled, ServiceError, grpc_errors
from automl.v1 import compute_pb2, compute_pb2_grpc
from services.compute.manager import ComputeManager
from services.compute.models import LeaseView, TargetSpec, TargetView, VmPriority
from services.compute.validation import (
    DEFAULT_ACQUIRE_WAIT_SECONDS, DEFAULT_WAIT_SECONDS, MAX_ACQUIRE_WAIT_SECONDS, MAX_WAIT_SECONDS, validate_seconds,
)
from services.compute.vm_sizes import VM_SIZES

log = structlog.get_logger(__name__)

_PRIORITY_FROM_PROTO = {
    compute_pb2.VM_PRIORITY_UNSPECIFIED: VmPriority.DEDICATED,
    compute_pb2.VM_PRIORITY_DEDICATED: VmPriority.DEDICATED,
    compute_pb2.VM_PRIORITY_LOW_PRIORITY: VmPriority.LOW_PRIORITY,
}
_PRIORITY_TO_PROTO = {
    VmPriority.DEDICATED: compute_pb2.VM_PRIORITY_DEDICATED,
    VmPriority.LOW_PRIORITY: compute_pb2.VM_PRIORITY_LOW_PRIORITY,
}


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _seconds(request, field: str) -> float | None:
    """Return a Duration field in seconds, or None when the request leaves it unset."""
    if not request.HasField(field):
        return None
    duration: duration_pb2.Duration = getattr(request, field)
    return duration.seconds + duration.nanos / 1e9


def target_to_proto(view: TargetView) -> compute_pb2.ComputeTarget:
    spec = view.spec
    return compute_pb2.ComputeTarget(
        name=view.name,
        vm_size=spec.vm_size,
        min_nodes=spec.min_nodes,
        max_nodes=spec.max_nodes,
        idle_seconds_before_scaledown=spec.idle_seconds_before_scaledown,
        vm_priority=_PRIORITY_TO_PROTO[spec.vm_priority],
        provider=spec.provider,
        provisioning_state=compute_pb2.ProvisioningState.Value(f"PROVISIONING_STATE_{view.state.name}"),
        provisioning_error=view.provisioning_error,
        current_node_count=view.current_node_count,
        target_node_count=view.target_node_count,
        nodes=[
            compute_pb2.Node(name=node.name, address=node.address,
                             state=compute_pb2.NodeState.Value(f"NODE_STATE_{node.state.name}"),
                             lease=node.lease, holder=node.holder, state_time=_timestamp(node.state_time))
            for node in view.nodes
        ],
        cores_per_node=view.size.cores,
        memory_mb_per_node=view.size.memory_mb,
        queued_lease_requests=view.queued_lease_requests,
        create_time=_timestamp(view.create_time),
    )


def lease_to_proto(lease: LeaseView) -> compute_pb2.NodeLease:
    return compute_pb2.NodeLease(name=lease.name, node=lease.node, address=lease.address, holder=lease.holder,
                                 cores=lease.cores, memory_mb=lease.memory_mb)


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    """ComputeService over gRPC, backed by a `ComputeManager`."""

    def __init__(self, manager: ComputeManager):
        self.manager = manager

    @grpc_errors
    def CreateComputeTarget(self, request, context):
        spec = None
        if request.HasField("compute_target"):
            target = request.compute_target
            spec = TargetSpec(
                vm_size=target.vm_size, min_nodes=target.min_nodes, max_nodes=target.max_nodes,
                idle_seconds_before_scaledown=target.idle_seconds_before_scaledown,
                vm_priority=_PRIORITY_FROM_PROTO.get(target.vm_priority), provider=target.provider,
            )
        return target_to_proto(self.manager.create(request.compute_target_id, spec))

    @grpc_errors
    def GetComputeTarget(self, request, context):
        return target_to_proto(self.manager.get(request.name))

    @grpc_errors
    def ListComputeTargets(self, request, context):
        views, next_token = self.manager.list(request.page_size, request.page_token)
        return compute_pb2.ListComputeTargetsResponse(compute_targets=[target_to_proto(v) for v in views],
                                                      next_page_token=next_token)

    @grpc_errors
    def DeleteComputeTarget(self, request, context):
        self.manager.delete(request.name)
        return empty_pb2.Empty()

    @grpc_errors
    def WaitComputeTarget(self, request, context):
        timeout = validate_seconds("timeout", _seconds(request, "timeout"), DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS)
        view = self.manager.wait(request.name, request.min_node_count, timeout,
                                 is_cancelled=lambda: not context.is_active())
        return target_to_proto(view)

    @grpc_errors
    def ListVmSizes(self, request, context):
        return compute_pb2.ListVmSizesResponse(
            vm_sizes=[compute_pb2.VmSize(name=s.name, cores=s.cores, memory_mb=s.memory_mb) for s in VM_SIZES])

    @grpc_errors
    def AcquireNode(self, request, context):
        wait_timeout = validate_seconds("wait_timeout", _seconds(request, "wait_timeout"),
                                        DEFAULT_ACQUIRE_WAIT_SECONDS, MAX_ACQUIRE_WAIT_SECONDS)
        lease = self.manager.acquire(request.compute_target, request.holder, wait_timeout,
                                     is_cancelled=lambda: not context.is_active())
        if not context.is_active():
            # The caller gave up (deadline or cancel) just as the node was
            # granted; it never learns the lease, so return the node now.
            log.warning("lease_abandoned", lease=lease.name, holder=lease.holder)
            try:
                self.manager.release(lease.name)
            except ServiceError:
                log.exception("lease_abandon_release_failed", lease=lease.name)
            raise Cancelled(f"AcquireNode on {request.compute_target} ended before the node was leased",
                            reason="CANCELLED")
        return lease_to_proto(lease)

    @grpc_errors
    def ReleaseNode(self, request, context):
        self.manager.release(request.name, node_failed=request.node_failed)
        return empty_pb2.Empty()
