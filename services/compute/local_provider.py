"""The `local` provider: each node is a TrainerService process on this host.

A node runs `python -m services.trainer` with the compute service's own
environment, so the S3 settings reach it. It listens on the first free port
from `config.port("trainer")` upwards, keeps its data set cache in
`<root>/<target>/<node>` and writes stdout and stderr to
`<root>/logs/<target>-<node>.log`, where `<root>` is `$AUTOML_NODE_CACHE` or a
new temporary folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

from automl.common import config
from automl.common.server import wait_until_serving
from services.compute.provider import NodeHandle, NodeProvider, NodeStartError
from services.compute.vm_sizes import VmSize

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
# Ports tried above the base port before a start fails.
PORT_SEARCH_RANGE = 1000


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class LocalProvider(NodeProvider):
    """Starts trainer nodes as child processes, each in its own process group.

    Parameters
    ----------
    root : Path, optional
        Folder for node caches and logs; default `$AUTOML_NODE_CACHE`, else a temporary folder.
    base_port : int, optional
        First port to try; default `config.port("trainer")`.
    """

    name = "local"

    def __init__(self, root: Path | None = None, base_port: int | None = None):
        configured = os.environ.get("AUTOML_NODE_CACHE")
        self.root = Path(root or configured or tempfile.mkdtemp(prefix="automl-nodes-"))
        self.base_port = base_port or config.port("trainer")
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen] = {}
        self._ports: dict[str, int] = {}
        self._closed = False

    def start_node(self, node_name: str, size: VmSize) -> NodeHandle:
        _, target_id, _, node_id = node_name.split("/")
        cache_dir = self.root / target_id / node_id
        log_path = self.root / "logs" / f"{target_id}-{node_id}.log"
        cache_dir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)

        # The lock makes port choice and process start one step, so two nodes
        # never pick the same port, and `close` never misses a process.
        with self._lock:
            if self._closed:
                raise NodeStartError("the compute service is stopping")
            port = self._free_port()
            command = [
                sys.executable, "-m", "services.trainer",
                "--port", str(port),
                "--node-name", node_name,
                "--cores", str(size.cores),
                "--memory-mb", str(size.memory_mb),
                "--cache-dir", str(cache_dir),
            ]
            with open(log_path, "ab") as log_file:
                # NOTE: nodes run in their own sessions, so a compute process
                # killed with SIGKILL leaves them running, and nothing reclaims
                # them after a restart yet.
                try:
                    process = subprocess.Popen(
                        command, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=log_file,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )
                except OSError as error:
                    raise NodeStartError(f"could not run {command[0]}: {error}") from error
            self._processes[node_name] = process
            self._ports[node_name] = port

        log.info("node_process_started", node=node_name, pid=process.pid, port=port, log=str(log_path))
        return NodeHandle(node_name=node_name, address=f"{HOST}:{port}", log_path=str(log_path))

    def _free_port(self) -> int:
        assigned_ports = set(self._ports.values())
        for port in range(self.base_port, self.base_port + PORT_SEARCH_RANGE):
            if port not in assigned_ports and _port_is_free(port):
                return port
        raise NodeStartError(f"no free port in {self.base_port}-{self.base_port + PORT_SEARCH_RANGE - 1}; "
                             "set AUTOML_TRAINER_BASE_PORT to another range")

    def wait_until_ready(self, handle: NodeHandle, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Short health-check rounds, so a node that exits at start-up
            # fails now and not after the whole timeout.
            try:
                wait_until_serving(handle.address, timeout=1.0)
                return
            except TimeoutError:
                pass
            code = self.exit_code(handle)
            if code is not None:
                raise NodeStartError(f"node {handle.node_name} exited with code {code} before serving; "
                                     f"see {handle.log_path}")
            if time.monotonic() > deadline:
                raise NodeStartError(f"node {handle.node_name} timed out after {timeout:.0f} s waiting to serve "
                                     f"on {handle.address}; see {handle.log_path}")

    def exit_code(self, handle: NodeHandle) -> int | None:
        process = self._processes.get(handle.node_name)
        return process.poll() if process else 0

    def stop_node(self, handle: NodeHandle, grace_seconds: float) -> None:
        with self._lock:
            process = self._processes.get(handle.node_name)
        if process is not None:
            _terminate(process, grace_seconds)
        with self._lock:
            self._processes.pop(handle.node_name, None)
            self._ports.pop(handle.node_name, None)
        _, target_id, _, node_id = handle.node_name.split("/")
        shutil.rmtree(self.root / target_id / node_id, ignore_errors=True)

    def close(self, grace_seconds: float) -> None:
        with self._lock:
            self._closed = True
            processes = list(self._processes.values())
        # In parallel, so stopping many nodes takes one grace period, not one each.
        threads = [threading.Thread(target=_terminate, args=(p, grace_seconds)) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.info("local_provider_closed", stopped_processes=len(processes))


def _terminate(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM the node, then SIGKILL its whole process group after `grace_seconds`, and reap it.

    The group kill also ends the trainer's worker processes. It happens only
    while the trainer is not yet reaped, because only then its process ID
    cannot belong to an unrelated process group.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_seconds)
        return
    except subprocess.TimeoutExpired:
        log.warning("node_process_killed", pid=process.pid, grace_seconds=grace_seconds)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
