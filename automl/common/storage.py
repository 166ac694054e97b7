"""Object storage over the `minio` client, with the project's key layout.

Every payload (data sets, models, metrics, logs, explanations) lives in one
bucket; messages between services carry `s3://bucket/key` URIs only.

Key layout::

    datasets/{file name}
    experiments/{experiment_id}/iterations/{index}/model.skops
    experiments/{experiment_id}/iterations/{index}/metrics.json
    experiments/{experiment_id}/iterations/{index}/log.txt
    explanations/{experiment_id}/shap_values.npz
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from automl.common.config import S3Settings
from automl.common.errors import NotFound, invalid_field

MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


@dataclass(frozen=True)
class ObjectInfo:
    """Size and ETag of a stored object; the ETag serves as its checksum."""

    uri: str
    size: int
    etag: str


def parse_uri(uri: str, field: str = "uri") -> tuple[str, str]:
    """Split `s3://bucket/key` into bucket and key.

    Raises
    ------
    InvalidArgument
        Naming `field` when the URI is not of that form.
    """
    parts = urlsplit(uri, allow_fragments=False)
    # urlsplit would cut the key at `?`; keys may contain it, so take the rest verbatim.
    prefix = f"s3://{parts.netloc}/"
    if parts.scheme != "s3" or not parts.netloc or not uri.startswith(prefix) or len(uri) == len(prefix):
        raise invalid_field(field, f"'{uri}' is not an object URI; use s3://bucket/key")
    return parts.netloc, uri[len(prefix):]


def iteration_prefix(experiment_id: str, index: int) -> str:
    """Key prefix of one iteration's objects."""
    return f"experiments/{experiment_id}/iterations/{index}/"


def explanation_prefix(experiment_id: str) -> str:
    """Key prefix of an experiment's explanation objects."""
    return f"explanations/{experiment_id}/"


class ObjectStore:
    """Read and write objects in one bucket of an S3-compatible server."""

    def __init__(self, settings: S3Settings | None = None):
        self.settings = settings or S3Settings.from_env()
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=120.0),
            retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
        )
        self.client = Minio(
            self.settings.endpoint,
            access_key=self.settings.access_key,
            secret_key=self.settings.secret_key,
            secure=self.settings.secure,
            region=self.settings.region,
            http_client=http_client,
        )
        self.bucket = self.settings.bucket

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist yet."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def uri(self, key: str) -> str:
        """Return the `s3://` URI of a key in this store's bucket."""
        return f"s3://{self.bucket}/{key}"

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes under `key` and return the object's URI."""
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return self.uri(key)

    def put_json(self, key: str, value) -> str:
        """Store a JSON document under `key` and return its URI."""
        return self.put_bytes(key, json.dumps(value, indent=2).encode(), "application/json")

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> str:
        """Upload a local file under `key` and return its URI."""
        self.client.fput_object(self.bucket, key, path, content_type=content_type)
        return self.uri(key)

    def get_bytes(self, uri: str, field: str = "uri") -> bytes:
        """Read a whole object.

        Raises
        ------
        NotFound
            When the object or its bucket does not exist.
        """
        return self._read(uri, field)

    def get_range(self, uri: str, length: int, field: str = "uri") -> bytes:
        """Read the first `length` bytes of an object, for sniffing headers."""
        return self._read(uri, field, length)

    def _read(self, uri: str, field: str, length: int = 0) -> bytes:
        bucket, key = parse_uri(uri, field)
        try:
            response = self.client.get_object(bucket, key, offset=0, length=length)
        except S3Error as error:
            raise self._translate(error, uri) from error
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def download(self, uri: str, path: str, field: str = "uri") -> None:
        """Write an object to a local file."""
        bucket, key = parse_uri(uri, field)
        try:
            self.client.fget_object(bucket, key, path)
        except S3Error as error:
            raise self._translate(error, uri) from error

    def stat(self, uri: str, field: str = "uri") -> ObjectInfo:
        """Return size and ETag of an object; NotFound when it does not exist."""
        bucket, key = parse_uri(uri, field)
        try:
            info = self.client.stat_object(bucket, key)
        except S3Error as error:
            raise self._translate(error, uri) from error
        return ObjectInfo(uri=uri, size=info.size or 0, etag=(info.etag or "").strip('"'))

    def exists(self, uri: str) -> bool:
        """Return whether the object exists."""
        try:
            self.stat(uri)
        except NotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        """List keys under a prefix of this store's bucket."""
        return [obj.object_name for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)]

    @staticmethod
    def _translate(error: S3Error, uri: str) -> Exception:
        if error.code in MISSING_CODES:
            return NotFound(f"object {uri} does not exist; upload it first or check the URI", "OBJECT_NOT_FOUND",
                            {"uri": uri})
        return error
