"""ObjectStore against a real S3 server process (moto), some through a TCP proxy that takes it away."""

import dataclasses
import threading
import time

import pytest

from automl.common.config import S3Settings
from automl.common.errors import InvalidArgument, NotFound, Unavailable
from automl.common.storage import ObjectStore, parse_uri
from tests.integration.tcp_proxy import TcpProxy

AWKWARD_KEYS = [
    "datasets/with space.csv",
    "datasets/tilde~name.csv",
    "datasets/hash#name.csv",
    "datasets/question?name.csv",
    "datasets/données-ü-日本.csv",
]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_round_trip(store, key):
    payload = ("a,b\n1,2\n" + key).encode()
    uri = store.put_bytes(key, payload)

    assert parse_uri(uri) == (store.bucket, key)
    assert store.get_bytes(uri) == payload
    assert key in store.list_keys("datasets/")


def test_missing_object_is_not_found(store):
    with pytest.raises(NotFound) as raised:
        store.get_bytes(store.uri("datasets/absent.csv"))
    assert "datasets/absent.csv" in str(raised.value)


def test_stat_reports_size_and_etag(store):
    uri = store.put_bytes("datasets/stat.csv", b"x,y\n1,2\n")
    info = store.stat(uri)

    assert info.size == 8
    assert len(info.etag) == 32


@pytest.mark.parametrize("uri", ["", "s3://", "s3://bucket", "s3://bucket/", "http://bucket/key", "bucket/key"])
def test_parse_uri_rejects_malformed(uri):
    with pytest.raises(InvalidArgument) as raised:
        parse_uri(uri, "dataset.uri")
    assert raised.value.violations[0].field == "dataset.uri"


@pytest.fixture
def proxy(s3_stack):
    """A TcpProxy in front of the session's S3 server."""
    host, port = s3_stack.env["S3_ENDPOINT"].rsplit(":", 1)
    with TcpProxy(host, int(port)) as running:
        yield running


def proxied_store(proxy, store, retry_seconds: float) -> ObjectStore:
    settings = dataclasses.replace(store.settings, endpoint=proxy.endpoint, retry_seconds=retry_seconds)
    return ObjectStore(settings)


def test_requests_retry_through_short_outage(proxy, store):
    proxied = proxied_store(proxy, store, retry_seconds=20)
    uri = proxied.put_bytes("retry/before.txt", b"before")  # Leaves a pooled connection that the outage cuts.
    proxy.down()
    threading.Timer(2.0, proxy.up).start()
    started = time.monotonic()

    stored = proxied.put_bytes("retry/during.txt", b"during")
    waited = time.monotonic() - started

    assert waited >= 1.5
    assert proxied.get_bytes(stored) == b"during"
    assert proxied.get_bytes(uri) == b"before"
    assert store.get_bytes(stored) == b"during"


@pytest.mark.parametrize("operation", ["put", "get", "stat", "list"])
def test_outage_past_retry_window_is_unavailable(proxy, store, operation):
    proxied = proxied_store(proxy, store, retry_seconds=2)
    uri = proxied.put_bytes("retry/present.txt", b"present")
    calls = {"put": lambda: proxied.put_bytes("retry/lost.txt", b"lost"), "get": lambda: proxied.get_bytes(uri),
             "stat": lambda: proxied.stat(uri), "list": lambda: proxied.list_keys("retry/")}
    proxy.down()
    started = time.monotonic()

    with pytest.raises(Unavailable) as raised:
        calls[operation]()
    waited = time.monotonic() - started

    assert 2 <= waited < 10
    assert raised.value.reason == "STORAGE_UNAVAILABLE"
    assert f"object storage at {proxy.endpoint} is unavailable" in raised.value.message
    assert "Connection refused" in raised.value.message
    assert raised.value.metadata["endpoint"] == proxy.endpoint


def test_missing_object_is_not_retried(proxy, store):
    proxied = proxied_store(proxy, store, retry_seconds=20)
    started = time.monotonic()

    with pytest.raises(NotFound):
        proxied.get_bytes(store.uri("retry/absent.txt"))

    assert time.monotonic() - started < 2


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_retry_seconds_rejects_invalid(monkeypatch, value):
    monkeypatch.setenv("AUTOML_S3_RETRY_SECONDS", value)
    with pytest.raises(ValueError) as raised:
        S3Settings.from_env()
    assert "AUTOML_S3_RETRY_SECONDS" in str(raised.value)


def test_retry_seconds_from_environment(monkeypatch):
    monkeypatch.setenv("AUTOML_S3_RETRY_SECONDS", "7.5")
    assert S3Settings.from_env().retry_seconds == 7.5
    monkeypatch.delenv("AUTOML_S3_RETRY_SECONDS")
    assert S3Settings.from_env().retry_seconds == 30.0
