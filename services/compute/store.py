"""SQLite persistence of compute targets and their started nodes.

Each target is one row with its spec and provisioning state. Each node whose
process has started is one row with its state, lease and provider handle. A
restarted compute service reads them back and adopts the node processes that
still run (see `RestoringPool.restore`). Rows are JSON, so a new field needs
no schema change.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime
from pathlib import Path

from automl.common import sqlite
from services.compute.models import Node, NodeState, ProvisioningState, Target, TargetSpec, VmPriority
from services.compute.provider import NodeHandle
from services.compute.vm_sizes import find_vm_size

SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    target_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_by_target ON nodes (target_id);
"""


class ComputeStore:
    """Thread-safe SQLite store of targets and nodes; one connection guarded by a lock.

    Parameters
    ----------
    path : str or Path
        Database file; `:memory:` keeps nothing across restarts.
    """

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self._connection = sqlite.connect(path, SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def save_target(self, target: Target) -> None:
        """Replace the stored target and the set of its nodes, atomically.

        Nodes without a handle are left out: their process has not started,
        so there is nothing to adopt after a restart.
        """
        target_row = json.dumps(_target_record(target))
        node_rows = [(node.name, target.target_id, json.dumps(_node_record(node)))
                     for node in target.nodes.values() if isinstance(node.handle, NodeHandle)]
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                self._connection.execute(
                    "INSERT INTO targets (id, data) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
                    (target.target_id, target_row))
                self._connection.execute("DELETE FROM nodes WHERE target_id = ?", (target.target_id,))
                self._connection.executemany("INSERT INTO nodes (name, target_id, data) VALUES (?, ?, ?)", node_rows)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def delete_target(self, target_id: str) -> None:
        """Delete a target and its nodes, atomically."""
        with self._lock:
            self._connection.execute("BEGIN")
            self._connection.execute("DELETE FROM nodes WHERE target_id = ?", (target_id,))
            self._connection.execute("DELETE FROM targets WHERE id = ?", (target_id,))
            self._connection.execute("COMMIT")

    def delete_nodes(self) -> None:
        """Forget every node, for a service that has stopped all of them."""
        with self._lock:
            self._connection.execute("DELETE FROM nodes")

    def load(self) -> list[Target]:
        """Return every stored target with its stored nodes, ordered by ID."""
        with self._lock:
            target_rows = self._connection.execute("SELECT id, data FROM targets ORDER BY id").fetchall()
            node_rows = self._connection.execute("SELECT target_id, data FROM nodes ORDER BY name").fetchall()
        targets = {target_id: _target_from_record(target_id, json.loads(data)) for target_id, data in target_rows}
        for target_id, data in node_rows:
            target = targets.get(target_id)
            if target is not None:
                node = _node_from_record(target_id, json.loads(data))
                target.nodes[node.node_id] = node
        return list(targets.values())


def _target_record(target: Target) -> dict:
    spec = dataclasses.asdict(target.spec)
    spec["vm_priority"] = target.spec.vm_priority.value if target.spec.vm_priority else None
    return {"spec": spec, "create_time": target.create_time.isoformat(), "state": target.state.value,
            "provisioning_error": target.provisioning_error}


def _target_from_record(target_id: str, record: dict) -> Target:
    spec = dict(record["spec"])
    spec["vm_priority"] = VmPriority(spec["vm_priority"]) if spec["vm_priority"] else None
    target_spec = TargetSpec(**spec)
    return Target(target_id=target_id, spec=target_spec, size=find_vm_size(target_spec.vm_size),
                  create_time=datetime.fromisoformat(record["create_time"]),
                  state=ProvisioningState(record["state"]), provisioning_error=record["provisioning_error"])


def _node_record(node: Node) -> dict:
    return {"node_id": node.node_id, "state": node.state.value, "state_time": node.state_time.isoformat(),
            "address": node.address, "lease": node.lease, "holder": node.holder,
            "handle": dataclasses.asdict(node.handle)}


def _node_from_record(target_id: str, record: dict) -> Node:
    return Node(node_id=record["node_id"], target_id=target_id, state=NodeState(record["state"]),
                state_time=datetime.fromisoformat(record["state_time"]), address=record["address"],
                handle=NodeHandle(**record["handle"]), lease=record["lease"], holder=record["holder"])
