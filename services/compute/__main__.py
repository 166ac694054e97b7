"""Command line of the compute service: `python -m services.compute --port P`.

Trainer nodes take ports from `AUTOML_TRAINER_BASE_PORT` upwards and keep
caches and logs under `AUTOML_NODE_CACHE`; object storage settings pass
through to them in the environment. Targets and nodes are kept in the SQLite
file `--database`, so a restarted service restores its targets and adopts the
nodes that still run.
"""

from __future__ import annotations

import argparse
import os

from automl.common import config
from automl.common.logging import configure_logging
from automl.common.server import ServiceServer
from automl.v1 import compute_pb2_grpc
from services.compute.local_provider import LocalProvider
from services.compute.manager import ComputeManager
from services.compute.servicer import ComputeServicer
from services.compute.store import ComputeStore


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.compute", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=config.port("compute"), help="port to listen on; 0 picks one")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--database", default=os.environ.get("AUTOML_COMPUTE_DATABASE", "compute.sqlite"),
                        help="SQLite file with compute targets and their nodes (default $AUTOML_COMPUTE_DATABASE "
                             "or ./compute.sqlite)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("compute")

    manager = ComputeManager({"local": LocalProvider()}, store=ComputeStore(args.database))
    # Before serving, so that no call finds a stored target missing.
    manager.restore()
    # Blocking AcquireNode and WaitComputeTarget calls each hold a thread.
    server = ServiceServer("compute", args.port, host=args.host, max_workers=64)
    server.add_service(compute_pb2_grpc.add_ComputeServiceServicer_to_server, ComputeServicer(manager),
                       "automl.v1.ComputeService")
    # Runs after the server stops taking calls: stops every trainer node.
    server.on_stop(manager.close)
    manager.start_autoscaler()
    server.serve_forever()


if __name__ == "__main__":
    main()
