"""Fixtures that start real processes: the embedded S3 server and the whole stack."""

from __future__ import annotations

import os

import pytest

from automl.common.config import S3Settings
from automl.common.storage import ObjectStore
from automl.stack import Stack


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory):
    """An embedded S3 server process on a free port; sets S3_ENDPOINT for the test process."""
    stack = Stack(tmp_path_factory.mktemp("s3"), free_ports=True, s3_endpoint="")
    stack.start(("s3",))
    previous = os.environ.get("S3_ENDPOINT")
    os.environ["S3_ENDPOINT"] = stack.env["S3_ENDPOINT"]
    yield stack
    stack.stop()
    if previous is None:
        os.environ.pop("S3_ENDPOINT", None)
    else:
        os.environ["S3_ENDPOINT"] = previous


@pytest.fixture(scope="session")
def store(s3_stack) -> ObjectStore:
    """An ObjectStore on the session's S3 server, with its bucket created."""
    object_store = ObjectStore(S3Settings.from_env())
    object_store.ensure_bucket()
    return object_store


@pytest.fixture(scope="session")
def stack(tmp_path_factory, s3_stack):
    """The services (compute, explainer, orchestrator) on free ports, using the session's S3 server."""
    workdir = tmp_path_factory.mktemp("stack")
    running = Stack(workdir, free_ports=True, s3_endpoint=s3_stack.env["S3_ENDPOINT"])
    running.start()
    yield running
    running.stop()
