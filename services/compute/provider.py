"""Interface between the compute manager and whatever runs nodes.

A provider starts one trainer node per call and later stops it. `local` runs
each node as a process on this host; a cloud provider would create VMs behind
the same methods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from services.compute.vm_sizes import VmSize

# Largest `max_nodes` each provider accepts. A cloud provider would take its
# quota from the cloud instead.
MAX_NODES_BY_PROVIDER = {"local": 100}


class NodeStartError(Exception):
    """Error raised when a node did not start or did not begin serving. The message gives the cause and the log path."""


@dataclass
class NodeHandle:
    """A started node as its provider tracks it: the TrainerService address, the log file and its process.

    The compute service stores handles, so that after a restart the provider
    can find the node again (`adopt_node`). `pid`, `pid_start_time` and
    `cache_dir` are set by providers that run nodes as local processes and
    stay empty otherwise.
    """

    node_name: str
    address: str
    log_path: str
    pid: int = 0
    # Start time of the process in clock ticks since boot (/proc/PID/stat field 22),
    # so that a reused pid is not taken for the node.
    pid_start_time: int = 0
    cache_dir: str = ""


class NodeProvider(abc.ABC):
    """Starts and stops trainer nodes. Every method may be called from any thread."""

    name: str

    @abc.abstractmethod
    def start_node(self, node_name: str, size: VmSize) -> NodeHandle:
        """Start the node `node_name` (`computeTargets/{id}/nodes/{node}`) without waiting for it to serve.

        Raises
        ------
        NodeStartError
            When the node cannot be started, for example after `close`.
        """

    @abc.abstractmethod
    def wait_until_ready(self, handle: NodeHandle, timeout: float) -> None:
        """Block until the node serves gRPC health checks.

        Raises
        ------
        NodeStartError
            When the node exits first or does not serve within `timeout` seconds.
        """

    @abc.abstractmethod
    def exit_code(self, handle: NodeHandle) -> int | None:
        """Return the exit code of a node that has stopped, or None while it runs."""

    @abc.abstractmethod
    def stop_node(self, handle: NodeHandle, grace_seconds: float) -> None:
        """Stop a node: ask it to shut down, force it after `grace_seconds`, and free its resources."""

    def adopt_node(self, handle: NodeHandle) -> bool:
        """Take over a node that an earlier compute process started, when its process still runs.

        Returns True when it runs. From then on the other methods, such as
        `wait_until_ready` and `stop_node`, treat it like a node this provider
        started. Returns False when it is gone or cannot be identified; a
        provider that cannot find earlier nodes always returns False.
        """
        return False

    @abc.abstractmethod
    def close(self, grace_seconds: float) -> None:
        """Stop every node this provider started and start no more."""
