"""The compute service killed with SIGKILL and started again, with real trainer processes.

Each test runs its own stack under `tmp_path`, so trainer processes are found
through /proc by their `--cache-dir` under it (Linux only), and each test
stops its stack to check that no trainer process is left.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from automl.stack import Stack
from automl.v1 import compute_pb2, experiment_pb2, pipeline_pb2
from tests.integration.helpers import (alive, compute_stub, ensure_target, experiment_stub, node_pids_under,
                                       slow_frame, upload_frame, wait_for, wait_terminal)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds node processes through /proc"),
]

READY_TIMEOUT = duration_pb2.Duration(seconds=40)


def start_target(stack: Stack, target_id: str, ready_nodes: int, **settings) -> None:
    """Start the stack's compute service, create a target with `settings` and wait for `ready_nodes` nodes."""
    stack.start(("compute",))
    compute = compute_stub(stack)
    compute.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
        compute_target_id=target_id, compute_target=compute_pb2.ComputeTarget(vm_size="STANDARD_D1_V2", **settings)))
    compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(
        name=f"computeTargets/{target_id}", min_node_count=ready_nodes, timeout=READY_TIMEOUT))


@pytest.fixture
def own_stack(tmp_path, s3_stack):
    """A stack of its own on the session's S3 server; the test starts the parts it needs."""
    running = Stack(tmp_path, free_ports=True, s3_endpoint=s3_stack.env["S3_ENDPOINT"])
    yield running
    running.stop()
    # A test that failed while the compute service was down leaves its nodes running.
    # Each node leads its own process group, so killing the group also ends its workers.
    for pid in node_pids_under(tmp_path).values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def get(compute, name: str) -> compute_pb2.ComputeTarget:
    return compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=name))


def test_killed_mid_experiment_adopts_nodes(own_stack, store):
    own_stack.start()
    stub = experiment_stub(own_stack)
    target = ensure_target(own_stack, "restart-cluster", max_nodes=2)
    uri = upload_frame(store, "datasets/restart-adopt.csv", slow_frame(rows=4000))
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="label"), compute_target=target,
        task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="AUC_weighted", seed=1, iterations=2,
        max_concurrent_iterations=2, validation=pipeline_pb2.Validation(n_cross_validations=3),
        allowed_models=["GradientBoosting"], enable_voting_ensemble=False, enable_stack_ensemble=False)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="restart-adopt", experiment=experiment))
    name = "experiments/restart-adopt"

    def iteration(index: int) -> experiment_pb2.Iteration:
        return stub.GetIteration(experiment_pb2.GetIterationRequest(name=f"{name}/iterations/{index}"))

    first = wait_for(lambda: next((it for it in stub.ListIterations(experiment_pb2.ListIterationsRequest(
        parent=name)).iterations if it.state == experiment_pb2.ITERATION_STATE_RUNNING), None), 60,
        what="a running iteration")
    before = get(compute_stub(own_stack), target)
    pids_before = node_pids_under(own_stack.workdir)
    assert first.node in pids_before

    own_stack.stop_part("compute", signal.SIGKILL)
    # The iteration ends while the compute service is down, so its ReleaseNode call waits for the restart.
    ended_first = wait_for(lambda: (it := iteration(first.index)).state != experiment_pb2.ITERATION_STATE_RUNNING
                           and it, 60, what="the running iteration to end")
    assert ended_first.state == experiment_pb2.ITERATION_STATE_SUCCEEDED, ended_first.error
    assert all(alive(pid) for pid in pids_before.values())
    own_stack.start_part("compute")
    after = get(compute_stub(own_stack), target)

    # The target keeps its settings, and the same node processes serve it.
    assert after.vm_size == before.vm_size
    assert after.max_nodes == before.max_nodes == 2
    assert after.idle_seconds_before_scaledown == before.idle_seconds_before_scaledown == 600
    assert after.create_time == before.create_time
    assert {n.name for n in after.nodes} == set(pids_before)
    assert node_pids_under(own_stack.workdir) == pids_before

    ended = wait_terminal(stub, name, timeout=120)
    iterations = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=name)).iterations

    assert ended.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, [(it.attempts, it.error) for it in iterations]
    assert [it.index for it in iterations] == [0, 1]
    assert all(it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED for it in iterations)
    # No iteration lost its node, so none ran twice.
    assert [it.attempts for it in iterations] == [1, 1]
    # Every lease was released, including the one released while the service was down.
    released = get(compute_stub(own_stack), target)
    assert [n.state for n in released.nodes] == [compute_pb2.NODE_STATE_IDLE] * len(released.nodes)
    assert set(node_pids_under(own_stack.workdir).values()) >= set(pids_before.values())

    own_stack.stop()
    wait_for(lambda: not any(alive(pid) for pid in pids_before.values()), 15, what="adopted nodes to stop")
    assert node_pids_under(own_stack.workdir) == {}


def test_dead_and_hung_nodes_replaced(own_stack):
    start_target(own_stack, "restart-lost", 2, min_nodes=2, max_nodes=3)
    pids_before = node_pids_under(own_stack.workdir)
    assert len(pids_before) == 2
    (dead_node, dead_pid), (hung_node, hung_pid) = sorted(pids_before.items())

    own_stack.stop_part("compute", signal.SIGKILL)
    # The nodes outlive the killed service; then one dies and one stops responding.
    assert all(alive(pid) for pid in pids_before.values())
    os.kill(dead_pid, signal.SIGKILL)
    os.kill(hung_pid, signal.SIGSTOP)
    try:
        wait_for(lambda: not alive(dead_pid), 10, what="the killed node to exit")
        own_stack.start_part("compute")
        # The hung node fails its health check and is killed.
        wait_for(lambda: not alive(hung_pid), 20, what="the hung node to be killed")
    finally:
        if alive(hung_pid):
            os.kill(hung_pid, signal.SIGCONT)
    compute = compute_stub(own_stack)
    ready = compute.WaitComputeTarget(compute_pb2.WaitComputeTargetRequest(
        name="computeTargets/restart-lost", min_node_count=2, timeout=READY_TIMEOUT))
    names = {n.name for n in ready.nodes}

    assert ready.min_nodes == 2
    assert len(names) == 2
    assert names.isdisjoint({dead_node, hung_node})
    assert set(node_pids_under(own_stack.workdir)) == names

    # A graceful stop stops the new nodes too.
    own_stack.stop()
    assert node_pids_under(own_stack.workdir) == {}


def test_adopted_idle_node_scaled_down(own_stack):
    # Starts one node, which is idle above min_nodes 0 from then on.
    start_target(own_stack, "restart-idle", 1, min_nodes=0, max_nodes=1, idle_seconds_before_scaledown=3)
    [(node, pid)] = node_pids_under(own_stack.workdir).items()

    own_stack.stop_part("compute", signal.SIGKILL)
    own_stack.start_part("compute")
    compute = compute_stub(own_stack)
    adopted = get(compute, "computeTargets/restart-idle")

    assert [n.name for n in adopted.nodes] == [node]
    assert node_pids_under(own_stack.workdir) == {node: pid}
    # The adopted node is not a child of the new service, which stops it all the same.
    wait_for(lambda: get(compute, "computeTargets/restart-idle").current_node_count == 0, 20,
             what="the idle node to scale down")
    wait_for(lambda: not alive(pid), 15, what="the adopted node's process to exit")
    assert node_pids_under(own_stack.workdir) == {}

