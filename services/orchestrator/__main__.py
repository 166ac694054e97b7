"""Run the ExperimentService: `python -m services.orchestrator --port 50051`."""

from __future__ import annotations

import argparse
import os

from automl.common import config
from automl.common.logging import configure_logging
from automl.common.server import ServiceServer
from automl.common.storage import ObjectStore
from automl.v1 import experiment_pb2_grpc
from services.orchestrator.clients import Clients
from services.orchestrator.orchestrator import Orchestrator
from services.orchestrator.servicer import ExperimentServicer
from services.orchestrator.store import ExperimentStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the ExperimentService.")
    parser.add_argument("--port", type=int, default=config.port("experiment"),
                        help="port to listen on (default $AUTOML_EXPERIMENT_PORT or 50051)")
    parser.add_argument("--database", default=os.environ.get("AUTOML_DATABASE", "orchestrator.sqlite"),
                        help="SQLite file with experiments and iterations (default $AUTOML_DATABASE "
                             "or ./orchestrator.sqlite)")
    parser.add_argument("--compute-address", default=config.address("compute"),
                        help="ComputeService address (default $AUTOML_COMPUTE_ADDRESS or 127.0.0.1:50052)")
    parser.add_argument("--explainer-address", default=config.address("explainer"),
                        help="ExplainerService address (default $AUTOML_EXPLAINER_ADDRESS or 127.0.0.1:50053)")
    args = parser.parse_args(argv)
    try:
        max_dataset_bytes = config.max_dataset_bytes()
    except ValueError as error:
        parser.error(str(error))

    log = configure_logging("orchestrator")
    object_store = ObjectStore()
    object_store.ensure_bucket()
    orchestrator = Orchestrator(ExperimentStore(args.database), Clients(args.compute_address, args.explainer_address),
                                object_store, max_dataset_bytes)

    server = ServiceServer("orchestrator", args.port)
    server.add_service(experiment_pb2_grpc.add_ExperimentServiceServicer_to_server, ExperimentServicer(orchestrator),
                       "automl.v1.ExperimentService")
    # Runners stop first, so that nothing the stop causes is recorded as an iteration's or experiment's end.
    server.on_stopping(orchestrator.suspend)
    server.on_stop(orchestrator.shutdown)
    server.start()
    log.info("orchestrator_ready", database=args.database, compute=args.compute_address,
             explainer=args.explainer_address, max_dataset_mb=round(max_dataset_bytes / 2**20, 3))
    orchestrator.resume()
    server.serve_forever()


if __name__ == "__main__":
    main()
