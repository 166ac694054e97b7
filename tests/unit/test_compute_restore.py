"""ComputeManager.restore: targets, nodes and leases read back from the SQLite store.

A scripted provider replaces node processes: it reports which stored
nodes still serve, so each case of the restore rules runs without starting
trainers. `tests/integration/test_compute_restart.py` covers real processes.
"""

from __future__ import annotations

import time

import pytest

from automl.common.errors import NotFound
from services.compute.manager import ComputeManager
from services.compute.models import NodeState, ProvisioningState, TargetSpec
from services.compute.provider import NodeHandle, NodeProvider, NodeStartError
from services.compute.store import ComputeStore
from services.compute.vm_sizes import VmSize


class ScriptedProvider(NodeProvider):
    """Provider whose nodes start at once.

    `running` names the stored nodes whose process still runs, and `hung` those that fail their health check.
    """

    name = "local"

    def __init__(self, running: set[str] = frozenset(), hung: set[str] = frozenset()):
        self.running = set(running)
        self.hung = set(hung)
        self.adopt_calls: list[str] = []
        self.stopped: list[str] = []

    def start_node(self, node_name: str, size: VmSize) -> NodeHandle:
        return NodeHandle(node_name=node_name, address=f"127.0.0.1:{60000 + len(node_name)}", log_path="node.log",
                          pid=4242, pid_start_time=7)

    def wait_until_ready(self, handle: NodeHandle, timeout: float) -> None:
        if handle.node_name in self.hung:
            raise NodeStartError(f"node {handle.node_name} timed out")

    def exit_code(self, handle: NodeHandle) -> int | None:
        return 0 if handle.node_name in self.stopped else None

    def stop_node(self, handle: NodeHandle, grace_seconds: float) -> None:
        self.stopped.append(handle.node_name)

    def adopt_node(self, handle: NodeHandle) -> bool:
        self.adopt_calls.append(handle.node_name)
        return handle.node_name in self.running

    def close(self, grace_seconds: float) -> None:
        return None


def crashed_manager(database, provider: NodeProvider) -> ComputeManager:
    """Return a manager whose state is in `database`; it never starts its autoscaler, like a killed process."""
    return ComputeManager({"local": provider}, store=ComputeStore(database))


def restarted_manager(database, provider: NodeProvider) -> ComputeManager:
    manager = ComputeManager({"local": provider}, store=ComputeStore(database))
    manager.restore(adopt_timeout=1.0)
    return manager


def spec(**fields) -> TargetSpec:
    values = {"vm_size": "STANDARD_DS2_V2", "min_nodes": 0, "max_nodes": 3, "idle_seconds_before_scaledown": 300}
    values.update(fields)
    return TargetSpec(**values)


def wait_until(condition, description: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {description}"
        time.sleep(0.05)


@pytest.fixture
def database(tmp_path):
    return tmp_path / "compute.sqlite"


def test_target_settings_survive_restart(database):
    before = crashed_manager(database, ScriptedProvider())
    created = before.create("kept", spec(min_nodes=0, max_nodes=3, idle_seconds_before_scaledown=45))

    after = restarted_manager(database, ScriptedProvider())
    restored = after.get("computeTargets/kept")

    assert restored.spec == created.spec
    assert restored.create_time == created.create_time
    assert restored.state is ProvisioningState.SUCCEEDED
    assert restored.nodes == ()


def test_leased_node_adopted_with_lease(database):
    before = crashed_manager(database, ScriptedProvider())
    before.create("busy", spec(min_nodes=2))
    before.wait("computeTargets/busy", 2, timeout=5)
    lease = before.acquire("computeTargets/busy", "experiments/one", wait_timeout=5)
    idle_node = next(n.name for n in before.get("computeTargets/busy").nodes if n.name != lease.node)

    provider = ScriptedProvider(running={lease.node, idle_node})
    after = restarted_manager(database, provider)
    # The idle node is PREPARING until its health check passes.
    nodes = {n.name: n for n in after.wait("computeTargets/busy", 2, timeout=5).nodes}

    assert sorted(provider.adopt_calls) == sorted([lease.node, idle_node])
    assert set(nodes) == {lease.node, idle_node}
    assert nodes[lease.node].state is NodeState.RUNNING
    assert nodes[lease.node].lease == lease.name
    assert nodes[lease.node].holder == "experiments/one"
    assert nodes[idle_node].state is NodeState.IDLE
    # The holder releases the lease it got before the restart, as usual.
    after.release(lease.name)
    assert {n.name: n.state for n in after.get("computeTargets/busy").nodes}[lease.node] is NodeState.IDLE


def test_lost_node_forgotten_and_lease_releasable(database):
    before = crashed_manager(database, ScriptedProvider())
    before.create("lossy", spec(min_nodes=1))
    before.wait("computeTargets/lossy", 1, timeout=5)
    lease = before.acquire("computeTargets/lossy", "experiments/two", wait_timeout=5)

    after = restarted_manager(database, ScriptedProvider(running=set()))

    assert after.get("computeTargets/lossy").nodes == ()
    # The holder's ReleaseNode succeeds once; the lease is then unknown.
    after.release(lease.name)
    with pytest.raises(NotFound):
        after.release(lease.name)
    # Like the autoscaler, WaitComputeTarget starts a replacement up to min_nodes.
    replaced = after.wait("computeTargets/lossy", 1, timeout=5)
    assert len(replaced.nodes) == 1
    assert replaced.nodes[0].name != lease.node


def test_deleting_target_finishes_after_restart(database):
    before = crashed_manager(database, ScriptedProvider())
    before.create("leaving", spec(min_nodes=2))
    before.wait("computeTargets/leaving", 2, timeout=5)
    lease = before.acquire("computeTargets/leaving", "experiments/three", wait_timeout=5)
    before.delete("computeTargets/leaving")

    provider = ScriptedProvider(running={lease.node})
    after = restarted_manager(database, provider)
    restored = after.get("computeTargets/leaving")

    assert restored.state is ProvisioningState.DELETING
    assert [(n.name, n.state) for n in restored.nodes] == [(lease.node, NodeState.RUNNING)]
    # Releasing the last node stops it, and the target goes away once it has stopped.
    after.release(lease.name)
    wait_until(lambda: not after.list(10, "")[0], "the target to go away")
    with pytest.raises(NotFound):
        after.get("computeTargets/leaving")
    assert provider.stopped == [lease.node]
    assert ComputeStore(database).load() == []


def test_close_forgets_stopped_nodes(database):
    manager = crashed_manager(database, ScriptedProvider())
    manager.create("closing", spec(min_nodes=1))
    manager.wait("computeTargets/closing", 1, timeout=5)
    manager.close()

    [target] = ComputeStore(database).load()

    assert target.target_id == "closing"
    assert target.nodes == {}


def test_hung_leased_node_stopped(database):
    before = crashed_manager(database, ScriptedProvider())
    before.create("hung", spec(min_nodes=1))
    before.wait("computeTargets/hung", 1, timeout=5)
    lease = before.acquire("computeTargets/hung", "experiments/four", wait_timeout=5)

    provider = ScriptedProvider(running={lease.node}, hung={lease.node})
    after = restarted_manager(database, provider)
    # The leased node counts as ready until its health check fails.
    wait_until(lambda: provider.stopped, "the hung node to stop")
    replaced = after.wait("computeTargets/hung", 1, timeout=5)

    assert provider.adopt_calls == [lease.node]
    assert provider.stopped == [lease.node]
    assert [n.name for n in replaced.nodes] != [lease.node]
    assert len(replaced.nodes) == 1
    # The lease of the stopped node counts as lost, so its release succeeds.
    after.release(lease.name)
