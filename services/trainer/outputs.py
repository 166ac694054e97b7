"""Object keys of an iteration's model, metrics and log under its output URI."""

from __future__ import annotations

import dataclasses

from automl.common.config import S3Settings
from automl.common.storage import ObjectStore, parse_uri

MODEL_FILE = "model.skops"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.txt"


def output_store(s3: S3Settings, output_uri: str, file_name: str) -> tuple[ObjectStore, str]:
    """Return a store on the output URI's bucket and the key of `file_name` under its prefix.

    `output_uri` is `s3://bucket/prefix/`; a missing trailing slash is added,
    so `s3://bucket/a/b` and `s3://bucket/a/b/` name the same folder.
    """
    bucket, prefix = parse_uri(output_uri, "output_uri")
    if not prefix.endswith("/"):
        prefix += "/"
    settings = s3 if bucket == s3.bucket else dataclasses.replace(s3, bucket=bucket)
    return ObjectStore(settings), prefix + file_name
