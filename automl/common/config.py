"""Ports, addresses and object-store settings, from flags or the environment.

Each setting has one environment variable; command-line flags of a service
override it. Defaults suit the local stack on one host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PORTS = {
    "experiment": 50051,
    "compute": 50052,
    "explainer": 50053,
    "trainer": 50100,
    "s3": 9000,
}

# Environment variable that overrides each port.
PORT_VARIABLES = {
    "experiment": "AUTOML_EXPERIMENT_PORT",
    "compute": "AUTOML_COMPUTE_PORT",
    "explainer": "AUTOML_EXPLAINER_PORT",
    "trainer": "AUTOML_TRAINER_BASE_PORT",
    "s3": "AUTOML_S3_PORT",
}

# Environment variable that points clients at each service, `host:port`.
ADDRESS_VARIABLES = {
    "experiment": "AUTOML_EXPERIMENT_ADDRESS",
    "compute": "AUTOML_COMPUTE_ADDRESS",
    "explainer": "AUTOML_EXPLAINER_ADDRESS",
}


# Largest data set object CreateExperiment accepts, in MB (2**20 bytes). The ExperimentService reads the
# whole data set to check it, and every trainer node keeps it in memory as a DataFrame, which takes
# several times the file's size.
DEFAULT_MAX_DATASET_MB = 1024.0


def max_dataset_bytes() -> int:
    """Return the data set size limit from `AUTOML_MAX_DATASET_MB` (fractions allowed), in bytes.

    Raises
    ------
    ValueError
        When the variable is not a positive number.
    """
    text = os.environ.get("AUTOML_MAX_DATASET_MB", "")
    try:
        megabytes = float(text) if text else DEFAULT_MAX_DATASET_MB
    except ValueError:
        megabytes = float("nan")
    if not megabytes > 0 or megabytes == float("inf"):
        raise ValueError(f"AUTOML_MAX_DATASET_MB is {text!r}; set it to a positive number of megabytes, such as 1024")
    return int(megabytes * 2**20)


def port(service: str) -> int:
    """Return the port a service listens on: its environment variable or the default."""
    return int(os.environ.get(PORT_VARIABLES[service], DEFAULT_PORTS[service]))


def address(service: str) -> str:
    """Return the address clients use for a service: its environment variable or loopback."""
    return os.environ.get(ADDRESS_VARIABLES[service]) or f"127.0.0.1:{port(service)}"


@dataclass(frozen=True)
class S3Settings:
    """Connection settings of the S3-compatible object store."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    secure: bool = False
    region: str = "us-east-1"
    # Seconds a request keeps retrying connection errors and 5xx responses, counted from its first failure.
    retry_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> "S3Settings":
        """Read `S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`, `S3_BUCKET`, `S3_SECURE` and `AUTOML_S3_RETRY_SECONDS`.

        Raises
        ------
        ValueError
            When `AUTOML_S3_RETRY_SECONDS` is not a number of seconds of 0 or more.
        """
        endpoint = os.environ.get("S3_ENDPOINT") or f"127.0.0.1:{port('s3')}"
        secure = os.environ.get("S3_SECURE", "false").lower() in ("1", "true", "yes")
        for scheme in ("http://", "https://"):
            if endpoint.startswith(scheme):
                secure = scheme == "https://"
                endpoint = endpoint[len(scheme):]
        return cls(
            endpoint=endpoint.rstrip("/"),
            access_key=os.environ.get("S3_ACCESS_KEY", "automl"),
            secret_key=os.environ.get("S3_SECRET_KEY", "automl-secret"),
            bucket=os.environ.get("S3_BUCKET", "automl"),
            secure=secure,
            region=os.environ.get("S3_REGION", "us-east-1"),
            retry_seconds=_retry_seconds(),
        )


def _retry_seconds() -> float:
    text = os.environ.get("AUTOML_S3_RETRY_SECONDS", "30")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # Also rejects NaN.
        raise ValueError(f"AUTOML_S3_RETRY_SECONDS is '{text}'; set it to a number of seconds, 0 or more")
    return seconds
