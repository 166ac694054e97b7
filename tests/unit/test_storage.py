"""ObjectStore against a real S3 server process (moto)."""

import pytest

from automl.common.errors import InvalidArgument, NotFound
from automl.common.storage import parse_uri

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
