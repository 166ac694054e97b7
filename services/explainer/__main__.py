"""Command line: `python -m services.explainer --port P`.

Object storage comes from `S3_*` variables (see `automl.common.config`), the
data set cache folder from `AUTOML_EXPLAINER_CACHE` (default: a temporary
folder removed on exit) and the permutation explainer's time budget in
seconds from `AUTOML_EXPLAINER_TIME_BUDGET`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
from pathlib import Path

from automl.common import config
from automl.common.datasets import DatasetCache
from automl.common.logging import configure_logging
from automl.common.server import ServiceServer
from automl.common.storage import ObjectStore
from automl.v1 import explainer_pb2_grpc
from services.explainer.explain import DEFAULT_TIME_BUDGET, ModelExplainer
from services.explainer.servicer import ExplainerServicer


def main(argv: list[str] | None = None) -> None:
    """Parse flags, then serve ExplainerService until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m services.explainer", description="Run the explainer service.")
    parser.add_argument("--port", type=int, default=config.port("explainer"),
                        help="TCP port to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    args = parser.parse_args(argv)

    log = configure_logging("explainer")
    store = ObjectStore(config.S3Settings.from_env())
    cache_dir = os.environ.get("AUTOML_EXPLAINER_CACHE")
    temporary_cache = not cache_dir
    if temporary_cache:
        cache_dir = tempfile.mkdtemp(prefix="automl-explainer-")
    time_budget = float(os.environ.get("AUTOML_EXPLAINER_TIME_BUDGET", DEFAULT_TIME_BUDGET))

    explainer = ModelExplainer(store, DatasetCache(store, Path(cache_dir)), time_budget)
    server = ServiceServer("explainer", args.port, host=args.host)
    server.add_service(explainer_pb2_grpc.add_ExplainerServiceServicer_to_server, ExplainerServicer(explainer),
                       "automl.v1.ExplainerService")
    if temporary_cache:
        server.on_stop(lambda: shutil.rmtree(cache_dir, ignore_errors=True))

    # Compile SHAP's Numba kernels in the background, so that the service
    # serves at once and the first permutation explanation does not pay for it.
    threading.Thread(target=_warm_up, args=(explainer, log), name="shap-warm-up", daemon=True).start()
    log.info("explainer_configured", cache_dir=cache_dir, time_budget=time_budget, bucket=store.bucket)
    server.serve_forever()


def _warm_up(explainer: ModelExplainer, log) -> None:
    try:
        explainer.warm_up()
    except Exception:
        log.exception("shap_warm_up_failed")
    else:
        log.info("shap_warm_up_finished")


if __name__ == "__main__":
    main()
