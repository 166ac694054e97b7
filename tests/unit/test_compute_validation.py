"""ComputeService request validation, over gRPC against an in-process server.

No test here starts a node: every target has `min_nodes` 0 and nothing
acquires a node.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.common.server import ServiceServer
from automl.v1 import compute_pb2, compute_pb2_grpc
from services.compute.local_provider import LocalProvider
from services.compute.manager import ComputeManager
from services.compute.servicer import ComputeServicer


@pytest.fixture(scope="module")
def compute(tmp_path_factory):
    manager = ComputeManager({"local": LocalProvider(root=tmp_path_factory.mktemp("nodes"))})
    server = ServiceServer("compute-test", 0)
    server.add_service(compute_pb2_grpc.add_ComputeServiceServicer_to_server, ComputeServicer(manager),
                       "automl.v1.ComputeService")
    port = server.start()
    manager.start_autoscaler()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield compute_pb2_grpc.ComputeServiceStub(channel)
    channel.close()
    server.stop()
    manager.close()


def details(error: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """Return the ErrorInfo reason and the BadRequest violations ({field: description}) of an error."""
    status = rpc_status.from_call(error)
    reason, violations = "", {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = {v.field: v.description for v in bad_request.field_violations}
    return reason, violations


def valid_target(**changes) -> compute_pb2.ComputeTarget:
    fields = dict(vm_size="STANDARD_D1_V2", min_nodes=0, max_nodes=2)
    fields.update(changes)
    return compute_pb2.ComputeTarget(**fields)


BAD_IDS = [
    ("", "is required"),
    ("a", "has 1 characters"),
    ("x" * 64, "has 64 characters"),
    ("1cluster", "starts with '1'"),
    ("cluster-", "ends with a hyphen"),
    ("my_cluster", "'_'"),
    ("my~cluster", "'~'"),
    ("my!cluster", "'!'"),
    ("my@cluster", "'@'"),
    ("my#cluster", "'#'"),
    ("my$cluster", "'$'"),
    ("my%cluster", "'%'"),
    ("my cluster", "' '"),
    ("my'cluster", "\"'\""),
    ('my"cluster', "'\"'"),
    ("my/cluster", "'/'"),
    ("my\\cluster", "'\\\\'"),
]


@pytest.mark.parametrize("target_id, expected", BAD_IDS)
def test_create_rejects_bad_id(compute, target_id, expected):
    with pytest.raises(grpc.RpcError) as caught:
        compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
            compute_target_id=target_id, compute_target=valid_target()))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = details(caught.value)
    assert list(violations) == ["compute_target_id"]
    assert expected in violations["compute_target_id"]


BAD_FIELDS = [
    (dict(vm_size=""), "compute_target.vm_size", "is required"),
    (dict(vm_size="STANDARD_X9"), "compute_target.vm_size", "STANDARD_DS2_V2"),
    (dict(min_nodes=-1), "compute_target.min_nodes", "use 0 or more"),
    (dict(min_nodes=3, max_nodes=2), "compute_target.min_nodes", "more than max_nodes 2"),
    (dict(max_nodes=0), "compute_target.max_nodes", "at least 1"),
    (dict(max_nodes=-4), "compute_target.max_nodes", "at least 1"),
    (dict(max_nodes=101), "compute_target.max_nodes", "at most 100"),
    (dict(idle_seconds_before_scaledown=-5), "compute_target.idle_seconds_before_scaledown", "0 or more"),
    (dict(provider="azure"), "compute_target.provider", "'azure' is not a known provider"),
    (dict(vm_priority=7), "compute_target.vm_priority", "VM_PRIORITY_DEDICATED"),
]


@pytest.mark.parametrize("changes, field, expected", BAD_FIELDS)
def test_create_rejects_bad_field(compute, changes, field, expected):
    with pytest.raises(grpc.RpcError) as caught:
        compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
            compute_target_id="bad-field", compute_target=valid_target(**changes)))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = details(caught.value)
    assert list(violations) == [field]
    assert expected in violations[field]


def test_create_reports_every_bad_field(compute):
    request = compute_pb2.CreateComputeTargetRequest(
        compute_target_id="bad id", compute_target=valid_target(vm_size="huge", min_nodes=-1, max_nodes=0))

    with pytest.raises(grpc.RpcError) as caught:
        compute.CreateComputeTarget(request)

    _, violations = details(caught.value)
    assert set(violations) == {"compute_target_id", "compute_target.vm_size", "compute_target.min_nodes",
                               "compute_target.max_nodes"}


def test_create_requires_target(compute):
    with pytest.raises(grpc.RpcError) as caught:
        compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(compute_target_id="no-target"))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(details(caught.value)[1]) == ["compute_target"]


def test_create_fills_defaults(compute):
    created = compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
        compute_target_id="defaults", compute_target=valid_target(vm_size="Standard_DS2_v2")))

    assert created.name == "computeTargets/defaults"
    assert created.vm_size == "STANDARD_DS2_V2"
    assert created.provider == "local"
    assert created.idle_seconds_before_scaledown == 120
    assert created.vm_priority == compute_pb2.VM_PRIORITY_DEDICATED
    assert created.cores_per_node == 2
    assert created.memory_mb_per_node == 7168
    assert created.provisioning_state == compute_pb2.PROVISIONING_STATE_CREATING
    fetched = compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=created.name))
    assert fetched.provisioning_state == compute_pb2.PROVISIONING_STATE_SUCCEEDED
    assert fetched.current_node_count == 0


def test_create_duplicate_id(compute):
    request = compute_pb2.CreateComputeTargetRequest(compute_target_id="twice", compute_target=valid_target())
    compute.CreateComputeTarget(request)

    with pytest.raises(grpc.RpcError) as caught:
        compute.CreateComputeTarget(request)

    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "computeTargets/twice" in caught.value.details()


@pytest.mark.parametrize("call, request_message", [
    ("GetComputeTarget", compute_pb2.GetComputeTargetRequest(name="computeTargets/missing")),
    ("DeleteComputeTarget", compute_pb2.DeleteComputeTargetRequest(name="computeTargets/missing")),
    ("WaitComputeTarget", compute_pb2.WaitComputeTargetRequest(name="computeTargets/missing")),
    ("AcquireNode", compute_pb2.AcquireNodeRequest(compute_target="computeTargets/missing", holder="experiments/x")),
])
def test_unknown_target_not_found(compute, call, request_message):
    with pytest.raises(grpc.RpcError) as caught:
        getattr(compute, call)(request_message)

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "computeTargets/missing" in caught.value.details()


@pytest.mark.parametrize("call, request_message, field", [
    ("GetComputeTarget", compute_pb2.GetComputeTargetRequest(name="clusters/x"), "name"),
    ("ReleaseNode", compute_pb2.ReleaseNodeRequest(name="computeTargets/x/nodes/y"), "name"),
    ("AcquireNode", compute_pb2.AcquireNodeRequest(compute_target="x", holder="h"), "compute_target"),
    ("AcquireNode", compute_pb2.AcquireNodeRequest(compute_target="computeTargets/x", holder=""), "holder"),
    ("AcquireNode", compute_pb2.AcquireNodeRequest(compute_target="computeTargets/x", holder="h",
                                                   wait_timeout=duration_pb2.Duration(seconds=61)), "wait_timeout"),
    ("WaitComputeTarget", compute_pb2.WaitComputeTargetRequest(name="computeTargets/x",
                                                               timeout=duration_pb2.Duration(seconds=-1)), "timeout"),
    ("WaitComputeTarget", compute_pb2.WaitComputeTargetRequest(name="computeTargets/x",
                                                               timeout=duration_pb2.Duration(seconds=3601)), "timeout"),
    ("ListComputeTargets", compute_pb2.ListComputeTargetsRequest(page_size=-1), "page_size"),
    ("ListComputeTargets", compute_pb2.ListComputeTargetsRequest(page_token="not-a-token"), "page_token"),
])
def test_bad_request_field(compute, call, request_message, field):
    with pytest.raises(grpc.RpcError) as caught:
        getattr(compute, call)(request_message)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(details(caught.value)[1]) == [field]


def test_release_unknown_lease(compute):
    with pytest.raises(grpc.RpcError) as caught:
        compute.ReleaseNode(compute_pb2.ReleaseNodeRequest(name="computeTargets/defaults/leases/nope"))

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(caught.value)[0] == "LEASE_NOT_FOUND"


def test_wait_more_than_max_nodes(compute):
    compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
        compute_target_id="small", compute_target=valid_target(max_nodes=1)))

    with pytest.raises(grpc.RpcError) as caught:
        compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(name="computeTargets/small",
                                                                        min_node_count=2))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_nodes 1" in details(caught.value)[1]["min_node_count"]


def test_list_pages(compute):
    for index in range(5):
        compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
            compute_target_id=f"page-{index}", compute_target=valid_target()))

    names, token, pages = [], "", 0
    while True:
        response = compute.ListComputeTargets(compute_pb2.ListComputeTargetsRequest(page_size=2, page_token=token))
        assert len(response.compute_targets) <= 2
        names.extend(t.name for t in response.compute_targets)
        pages += 1
        token = response.next_page_token
        if not token:
            break

    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert {f"computeTargets/page-{i}" for i in range(5)} <= set(names)
    assert pages == (len(names) + 1) // 2


def test_vm_sizes_smallest_first(compute):
    sizes = compute.ListVmSizes(compute_pb2.ListVmSizesRequest()).vm_sizes

    assert {"STANDARD_D1_V2", "STANDARD_DS2_V2", "STANDARD_D4_V2"} <= {s.name for s in sizes}
    assert [s.cores for s in sizes] == sorted(s.cores for s in sizes)
    ds2 = next(s for s in sizes if s.name == "STANDARD_DS2_V2")
    assert (ds2.cores, ds2.memory_mb) == (2, 7168)


def test_delete_idle_target(compute):
    compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
        compute_target_id="short-lived", compute_target=valid_target()))

    compute.DeleteComputeTarget(compute_pb2.DeleteComputeTargetRequest(name="computeTargets/short-lived"))

    with pytest.raises(grpc.RpcError) as caught:
        compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name="computeTargets/short-lived"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
