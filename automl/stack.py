"""Start and stop the local stack: embedded S3 and the services, as processes.

`make up` / `make down` use the command line below; tests, the demo and the
benchmarks use the `Stack` class, which can pick free ports so that several
stacks run side by side.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from automl.common import config
from automl.common.server import wait_until_serving

# Module run for each part of the stack, in start order. Trainer nodes are not
# listed: the compute service starts them.
MODULES = {
    "s3": "automl.common.s3server",
    "compute": "services.compute",
    "explainer": "services.explainer",
    "experiment": "services.orchestrator",
}


def _die_with_parent() -> None:
    # Runs in the child before exec: Linux sends it SIGTERM when the process
    # that started it exits, so a killed test run leaves no services behind.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class Stack:
    """The local stack as child processes.

    Parameters
    ----------
    workdir : Path
        Holds logs (`logs/{part}.log`), the SQLite files of the orchestrator and the compute service,
        and node caches.
    free_ports : bool
        Pick free ports instead of the defaults (50051.., 9000), for tests.
    s3_endpoint : str, optional
        Use this S3 server instead of starting the embedded one. By default
        `$S3_ENDPOINT` when set; an empty string always starts the embedded one.
    detached : bool
        Keep the processes running after this process exits (`make up`).
        Otherwise, on Linux, they get SIGTERM when it exits.
    """

    def __init__(self, workdir: Path, free_ports: bool = False, s3_endpoint: str | None = None,
                 detached: bool = False):
        self.workdir = Path(workdir)
        self.detached = detached
        self.processes: dict[str, subprocess.Popen] = {}
        if free_ports:
            self.ports = {name: free_port() for name in MODULES}
            # Trainer nodes take ports upwards of this one; a random high base
            # keeps parallel stacks apart.
            self.ports["trainer"] = free_port()
        else:
            self.ports = {name: config.port(name) for name in (*MODULES, "trainer")}
        # None: use $S3_ENDPOINT when set; "": always start the embedded server.
        self.external_s3 = (os.environ.get("S3_ENDPOINT") if s3_endpoint is None else s3_endpoint) or None
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, variable in config.PORT_VARIABLES.items():
            env[variable] = str(self.ports[name])
        for name, variable in config.ADDRESS_VARIABLES.items():
            env[variable] = f"127.0.0.1:{self.ports[name]}"
        env["S3_ENDPOINT"] = self.external_s3 or f"127.0.0.1:{self.ports['s3']}"
        env.setdefault("AUTOML_DATABASE", str(self.workdir / "orchestrator.sqlite"))
        env.setdefault("AUTOML_COMPUTE_DATABASE", str(self.workdir / "compute.sqlite"))
        env.setdefault("AUTOML_NODE_CACHE", str(self.workdir / "node-cache"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def address(self, name: str) -> str:
        """Return `127.0.0.1:port` of a service."""
        return f"127.0.0.1:{self.ports[name]}"

    def start(self, parts: tuple[str, ...] = tuple(MODULES), timeout: float = 60.0) -> None:
        """Start `parts` in order, each once the previous one serves."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for part in parts:
            if part == "s3" and self.external_s3:
                continue
            self.start_part(part, timeout)

    def start_part(self, part: str, timeout: float = 60.0) -> subprocess.Popen:
        """Start one part and wait until it serves."""
        log_file = open(self.workdir / "logs" / f"{part}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", MODULES[part], "--port", str(self.ports[part])],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=None if self.detached or sys.platform != "linux" else _die_with_parent,
        )
        log_file.close()
        self.processes[part] = process
        try:
            if part == "s3":
                wait_for_port(self.ports[part], timeout)
            else:
                wait_until_serving(self.address(part), timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{part} did not start; see {self.workdir / 'logs' / f'{part}.log'}") from None
        return process

    def stop_part(self, part: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send `sig` to one part and wait for it to exit (SIGKILL after `timeout`)."""
        process = self.processes.pop(part, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop every part, last started first."""
        for part in reversed(list(self.processes)):
            self.stop_part(part)

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


STATE_FILE = Path(".stack") / "stack.json"


def _up(args) -> None:
    stack = Stack(Path(".stack"), detached=True)
    stack.start()
    STATE_FILE.write_text(json.dumps({part: p.pid for part, p in stack.processes.items()}))
    print("stack is up; logs in .stack/logs/")
    for part in MODULES:
        print(f"  {part:<11} {stack.address(part)}")
    print("stop it with `make down`")


def _down(args) -> None:
    if not STATE_FILE.exists():
        print("no stack is running (no .stack/stack.json)")
        return
    pids = json.loads(STATE_FILE.read_text())
    for part in reversed(list(pids)):
        try:
            os.kill(pids[part], signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pids[part], 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        print(f"stopped {part}")
    STATE_FILE.unlink()


def _status(args) -> None:
    if not STATE_FILE.exists():
        print("no stack is running")
        return
    for part, pid in json.loads(STATE_FILE.read_text()).items():
        try:
            os.kill(pid, 0)
            state = "running"
        except ProcessLookupError:
            state = "exited"
        print(f"{part:<11} pid {pid:<8} {state}")


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m automl.stack up|down|status`."""
    parser = argparse.ArgumentParser(description="Run the local stack in the background.")
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    {"up": _up, "down": _down, "status": _status}[args.command](args)


if __name__ == "__main__":
    main()
