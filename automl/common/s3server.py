"""Embedded S3 endpoint for the local stack: moto's server on loopback.

It keeps every object in memory, so everything is lost when it stops. Point
`S3_ENDPOINT`, `S3_ACCESS_KEY` and `S3_SECRET_KEY` at a real server such as
MinIO to keep data.
"""

from __future__ import annotations

import argparse
import signal
import threading

from automl.common import config
from automl.common.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    """Run moto's S3 server until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=config.port("s3"),
                        help="port to listen on (default $AUTOML_S3_PORT or 9000)")
    args = parser.parse_args(argv)

    log = configure_logging("s3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    log.warning("embedded_s3_started", address=f"{args.host}:{args.port}",
                warning="objects are kept in memory and lost when this process stops; "
                        "set S3_ENDPOINT to a real S3 server such as MinIO to keep them")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    log.info("embedded_s3_stopped")


if __name__ == "__main__":
    main()
