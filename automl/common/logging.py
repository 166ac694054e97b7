"""structlog set-up shared by every service and the CLI.

JSON lines when the stream is not a TTY (files, pipes, log collectors), the
console renderer when a person watches a terminal. Event names are static
snake_case strings; values go in key-value fields.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(service: str, level: str | None = None, stream=None) -> structlog.stdlib.BoundLogger:
    """Configure structlog and the standard library logging for one process.

    Parameters
    ----------
    service : str
        Name bound to every event as `service`.
    level : str, optional
        Log level name; default from `AUTOML_LOG_LEVEL`, else `INFO`.
    stream : file, optional
        Where logs go; default standard output.

    Returns
    -------
    structlog.stdlib.BoundLogger
        A logger with `service` bound.
    """
    stream = stream or sys.stdout
    level_name = (level or os.environ.get("AUTOML_LOG_LEVEL", "INFO")).upper()
    numeric_level = logging.getLevelName(level_name)
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if stream.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

    # Libraries that log through the standard library (grpc, urllib3) go to
    # the same stream at WARNING and above.
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")

    structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger()
