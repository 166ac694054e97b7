"""ComputeService as a real process that starts real TrainerService nodes.

Node processes are found through /proc by their `--node-name` argument, so
this module runs on Linux only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.common.errors import FailedPrecondition
from automl.common.server import wait_until_serving
from automl.stack import Stack
from automl.v1 import compute_pb2, compute_pb2_grpc
from services.compute.local_provider import LocalProvider
from services.compute.manager import ComputeManager
from services.compute.models import ProvisioningState, TargetSpec
from tests.integration.helpers import alive, node_pids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds node processes through /proc"),
]

ATTEMPT = duration_pb2.Duration(seconds=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("compute"), free_ports=True, s3_endpoint="")
    running.start(("s3", "compute"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def compute(stack):
    with grpc.insecure_channel(stack.address("compute")) as channel:
        yield compute_pb2_grpc.ComputeServiceStub(channel)


def wait_for(condition, timeout: float, description: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {description}")
        time.sleep(0.2)


def create(compute, target_id: str, **fields) -> compute_pb2.ComputeTarget:
    target = compute_pb2.ComputeTarget(vm_size="STANDARD_D1_V2", **fields)
    return compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
        compute_target_id=target_id, compute_target=target))


def acquire(compute, target: str, holder: str, seconds: float = 30) -> compute_pb2.NodeLease:
    return compute.AcquireNode(compute_pb2.AcquireNodeRequest(
        compute_target=target, holder=holder, wait_timeout=duration_pb2.Duration(seconds=int(seconds))))


def release(compute, lease: str, node_failed: bool = False) -> None:
    compute.ReleaseNode(compute_pb2.ReleaseNodeRequest(name=lease, node_failed=node_failed))


def get(compute, name: str) -> compute_pb2.ComputeTarget:
    return compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=name))


def error_reason(error: grpc.RpcError) -> str:
    for detail in rpc_status.from_call(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def test_leases_and_scale_down(compute):
    target = create(compute, "shared", min_nodes=0, max_nodes=2, idle_seconds_before_scaledown=2).name

    # Two concurrent calls on an empty target start two nodes at once.
    leases: dict[str, compute_pb2.NodeLease] = {}
    callers = [threading.Thread(target=lambda h=holder: leases.__setitem__(h, acquire(compute, target, h)))
               for holder in ("experiments/one", "experiments/two")]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(40)
    first, second = leases["experiments/one"], leases["experiments/two"]

    assert first.node != second.node
    assert first.address != second.address
    assert (first.cores, first.memory_mb) == (1, 3584)
    assert first.name.startswith(f"{target}/leases/")
    wait_until_serving(first.address, timeout=5)
    wait_until_serving(second.address, timeout=5)
    pids = node_pids(f"{target}/nodes/")
    assert set(pids) == {first.node, second.node}

    with pytest.raises(grpc.RpcError) as caught:
        acquire(compute, target, "experiments/three", seconds=1)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) == "NO_NODE_AVAILABLE"

    # A waiting caller shows in queued_lease_requests and gets the released node.
    waited: list[compute_pb2.NodeLease] = []
    waiter = threading.Thread(target=lambda: waited.append(acquire(compute, target, "experiments/four", 20)))
    waiter.start()
    wait_for(lambda: get(compute, target).queued_lease_requests == 1, 10, "one queued lease request")
    release(compute, first.name)
    waiter.join(25)
    assert waited and waited[0].node == first.node
    assert waited[0].holder == "experiments/four"

    with pytest.raises(grpc.RpcError) as caught:
        release(compute, first.name)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    state = get(compute, target)
    assert state.current_node_count == 2
    assert [n.state for n in state.nodes] == [compute_pb2.NODE_STATE_RUNNING] * 2
    assert {n.holder for n in state.nodes} == {"experiments/two", "experiments/four"}
    assert state.queued_lease_requests == 0

    release(compute, second.name)
    release(compute, waited[0].name)
    idle = get(compute, target)
    assert [n.state for n in idle.nodes] == [compute_pb2.NODE_STATE_IDLE] * 2

    # idle_seconds_before_scaledown is 2 and min_nodes 0: both nodes stop.
    wait_for(lambda: get(compute, target).current_node_count == 0, 20, "idle nodes to scale down")
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 15, "node processes to exit")


def test_wait_then_delete_stops_nodes(compute):
    target = create(compute, "waited", min_nodes=0, max_nodes=3).name

    with pytest.raises(grpc.RpcError) as caught:
        compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(name=target, min_node_count=4))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    ready = compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(
        name=target, min_node_count=2, timeout=ATTEMPT))

    assert ready.provisioning_state == compute_pb2.PROVISIONING_STATE_SUCCEEDED
    assert [n.state for n in ready.nodes] == [compute_pb2.NODE_STATE_IDLE] * 2
    pids = node_pids(f"{target}/nodes/")
    assert len(pids) == 2

    lease = acquire(compute, target, "experiments/busy")
    compute.DeleteComputeTarget(compute_pb2.DeleteComputeTargetRequest(name=target))

    deleting = get(compute, target)
    assert deleting.provisioning_state == compute_pb2.PROVISIONING_STATE_DELETING
    with pytest.raises(grpc.RpcError) as caught:
        acquire(compute, target, "experiments/late", seconds=1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # The idle node stops at once; the leased one keeps running until released.
    idle_pid = next(pid for name, pid in pids.items() if name != lease.node)
    wait_for(lambda: not alive(idle_pid), 15, "the idle node to stop")
    assert alive(pids[lease.node])
    wait_until_serving(lease.address, timeout=5)

    release(compute, lease.name)
    wait_for(lambda: not alive(pids[lease.node]), 15, "the released node to stop")
    with pytest.raises(grpc.RpcError) as caught:
        wait_for(lambda: get(compute, target) and False, 10, "the target to disappear")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_node_reported_failed_is_replaced(compute):
    target = create(compute, "reported", min_nodes=1, max_nodes=1).name
    compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(name=target, timeout=ATTEMPT))
    lease = acquire(compute, target, "experiments/unlucky")
    failed_pid = node_pids(f"{target}/nodes/")[lease.node]

    # The holder's call to the node failed: the node must not be lent again.
    release(compute, lease.name, node_failed=True)

    # The node is LEAVING, or already gone when its process stopped quickly.
    states = [n.state for n in get(compute, target).nodes if n.name == lease.node]
    assert states in ([compute_pb2.NODE_STATE_LEAVING], [])
    wait_for(lambda: not alive(failed_pid), 15, "the failed node to stop")
    replacement = acquire(compute, target, "experiments/next")
    assert replacement.node != lease.node
    wait_until_serving(replacement.address, timeout=5)
    release(compute, replacement.name)


def test_lost_node_replaced_and_sigterm(stack, tmp_path):
    # A compute service of its own, so that the SIGTERM leaves the module's one running.
    own = Stack(tmp_path, free_ports=True, s3_endpoint=stack.env["S3_ENDPOINT"])
    own.start(("compute",))
    try:
        with grpc.insecure_channel(own.address("compute")) as channel:
            client = compute_pb2_grpc.ComputeServiceStub(channel)
            target = create(client, "fragile", min_nodes=1, max_nodes=1).name
            ready = client.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(name=target, timeout=ATTEMPT))
            assert ready.provisioning_state == compute_pb2.PROVISIONING_STATE_SUCCEEDED
            (lost_name, lost_pid), = node_pids(f"{target}/nodes/").items()

            os.kill(lost_pid, signal.SIGKILL)

            def replaced():
                nodes = get(client, target).nodes
                return [n.name for n in nodes if n.state == compute_pb2.NODE_STATE_IDLE and n.name != lost_name]
            replacement = wait_for(replaced, 30, "a node that replaces the lost one")
            assert [n.name for n in get(client, target).nodes] == replacement

        pids = node_pids(f"{target}/nodes/")
        assert list(pids) == replacement
        process = own.processes["compute"]

        process.send_signal(signal.SIGTERM)
        process.wait(30)

        assert process.returncode == 0
        assert not any(alive(pid) for pid in pids.values())
    finally:
        own.stop()


def test_failed_starts_fail_target(tmp_path, monkeypatch):
    # In process, so only the node processes see the broken environment:
    # with PYTHONHOME pointing nowhere, Python exits at start-up.
    manager = ComputeManager({"local": LocalProvider(root=tmp_path)})
    manager.start_autoscaler()
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "missing"))
    try:
        manager.create("broken", TargetSpec(vm_size="STANDARD_D1_V2", min_nodes=1, max_nodes=1))

        failed = manager.wait("computeTargets/broken", 0, timeout=30)

        assert failed.state is ProvisioningState.FAILED
        assert "exited with code" in failed.provisioning_error
        assert failed.current_node_count == 0
        with pytest.raises(FailedPrecondition):
            manager.acquire("computeTargets/broken", "experiments/x", wait_timeout=1)
    finally:
        manager.close()
