"""Command line of one trainer node.

    python -m services.trainer --port P --node-name computeTargets/x/nodes/n1 \
        --cores C --memory-mb M --cache-dir D

Object storage settings come from the environment (`S3Settings.from_env`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from pathlib import Path

import structlog

from automl.common import config
from automl.common.config import S3Settings
from automl.common.logging import configure_logging
from automl.common.server import ServiceServer
from automl.v1 import trainer_pb2_grpc


def default_cache_dir(node_name: str) -> Path:
    """Return `$AUTOML_NODE_CACHE/<target>/<node>`, or a new temporary folder when the variable is unset."""
    root = os.environ.get("AUTOML_NODE_CACHE")
    if not root:
        return Path(tempfile.mkdtemp(prefix="automl-trainer-"))
    parts = node_name.split("/")
    # computeTargets/{target}/nodes/{node}: one folder per node of each target.
    relative = Path(parts[1], parts[3]) if len(parts) == 4 else Path(node_name.replace("/", "_") or "local")
    return Path(root) / relative


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=config.port("trainer"), help="port to listen on; 0 picks one")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--node-name", default="computeTargets/local/nodes/node-1",
                        help="resource name of this node, reported in responses and logs")
    parser.add_argument("--cores", type=int, default=1, help="cores an iteration may use (n_jobs)")
    parser.add_argument("--memory-mb", type=int, default=4096,
                        help="memory limit of one iteration in MiB (the VM size's memory); a worker above it is "
                             "stopped")
    parser.add_argument("--cache-dir", type=Path, default=None, help="folder for cached data sets")
    args = parser.parse_args(argv)
    if args.cores < 1:
        parser.error(f"--cores must be at least 1, got {args.cores}")
    if args.memory_mb < 1:
        parser.error(f"--memory-mb must be at least 1, got {args.memory_mb}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("trainer")
    structlog.contextvars.bind_contextvars(node=args.node_name)
    log = structlog.get_logger()

    # Imported after logging is configured: these modules pull in scikit-learn.
    from services.trainer.runner import IterationRunner, NodeSettings
    from services.trainer.servicer import TrainerServicer

    cache_dir = args.cache_dir or default_cache_dir(args.node_name)
    node = NodeSettings(name=args.node_name, cores=args.cores, memory_mb=args.memory_mb, cache_dir=cache_dir)
    runner = IterationRunner(node, S3Settings.from_env())

    server = ServiceServer("trainer", args.port, host=args.host)
    server.add_service(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, TrainerServicer(runner),
                       "automl.v1.TrainerService")
    # Iterations outlast the grace period, so they are stopped at once and handed back to run on another node.
    server.on_stopping(runner.shutdown)
    server.start()
    log.info("trainer_ready", cores=args.cores, memory_mb=args.memory_mb, cache_dir=str(cache_dir))

    # Start the forkserver in the background so the first iteration does not pay for importing scikit-learn.
    threading.Thread(target=runner.warm_up, name="forkserver-warm-up", daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
