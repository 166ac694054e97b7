"""The `local` provider: each node is a TrainerService process on this host.

A node runs `python -m services.trainer` with the compute service's own
environment, so the S3 settings reach it. It listens on the first free port
from `config.port("trainer")` upwards, keeps its data set cache in
`<root>/<target>/<node>` and writes stdout and stderr to
`<root>/logs/<target>-<node>.log`, where `<root>` is `$AUTOML_NODE_CACHE` or a
new temporary folder.

Nodes run in their own sessions, so they outlive a compute process killed
with SIGKILL. The handle of each node records its pid and the pid's start
time, and `adopt_node` takes such a node over after a restart (Linux only,
because it reads /proc).
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

from automl.common import config, processes
from automl.common.server import wait_until_serving
from services.compute.provider import NodeHandle, NodeProvider, NodeStartError
from services.compute.vm_sizes import VmSize

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
# Ports tried above the base port before a start fails.
PORT_SEARCH_RANGE = 1000
# Exit code reported for an adopted node whose process is gone: only the parent of a process learns its code.
UNKNOWN_EXIT_CODE = -1


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
                try:
                    process = subprocess.Popen(
                        command, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=log_file,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )
                except OSError as error:
                    raise NodeStartError(f"could not run {command[0]}: {error}") from error
            self._processes[node_name] = process
            self._ports[node_name] = port

        # Read before the node could exit: a pid without start time is never adopted.
        start_time = processes.start_time(process.pid) or 0
        log.info("node_process_started", node=node_name, pid=process.pid, port=port, log=str(log_path))
        return NodeHandle(node_name=node_name, address=f"{HOST}:{port}", log_path=str(log_path), pid=process.pid,
                          pid_start_time=start_time, cache_dir=str(cache_dir))

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

    def adopt_node(self, handle: NodeHandle) -> bool:
        if not handle.pid or not handle.pid_start_time or not processes.supported():
            # NOTE: without /proc a running node cannot be distinguished from a reused pid, so it is left running.
            log.warning("node_not_adoptable", node=handle.node_name, pid=handle.pid,
                        reason="no pid start time recorded, or /proc is missing")
            return False
        process = AdoptedProcess(handle.pid, handle.pid_start_time)
        if process.poll() is not None:
            log.info("node_process_gone", node=handle.node_name, pid=handle.pid)
            return False

        port = int(handle.address.rsplit(":", 1)[1])
        with self._lock:
            closed = self._closed
            if not closed:
                self._processes[handle.node_name] = process
                self._ports[handle.node_name] = port
        if closed:
            _terminate(process, 0.0)
            return False
        log.info("node_process_adopted", node=handle.node_name, pid=handle.pid, port=port)
        return True

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
        # An adopted node may have its cache under the root of an earlier compute process.
        shutil.rmtree(handle.cache_dir or self.root / target_id / node_id, ignore_errors=True)

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


class AdoptedProcess:
    """A node process that an earlier compute process started, with the part of `Popen` that `_terminate` uses.

    It is not a child of this process, so its exit code is unknown, `init`
    reaps it, and `poll` only checks that the pid still names the same process.
    """

    def __init__(self, pid: int, start_time: int):
        self.pid = pid
        self.start_time = start_time
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not processes.is_same_process(self.pid, self.start_time):
            self.returncode = UNKNOWN_EXIT_CODE
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


def _terminate(process: subprocess.Popen | AdoptedProcess, grace_seconds: float) -> None:
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
    # NOTE: `init` may reap an adopted process at any moment. For such a
    # process the check right before the group kill narrows that race but
    # does not close it. A child's `poll` would reap it, so it is not called.
    if not isinstance(process, AdoptedProcess) or process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
