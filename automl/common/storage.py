"""Object storage over the `minio` client, with the project's key layout.

Every payload (data sets, models, metrics, logs, explanations) lives in one
bucket; messages between services carry `s3://bucket/key` URIs only.

Requests that fail with a connection error or a 429 or 5xx status are retried with
exponential backoff for up to `S3Settings.retry_seconds`
(`AUTOML_S3_RETRY_SECONDS`); after that an operation raises `Unavailable`
with reason `STORAGE_UNAVAILABLE`.

Key layout::

    datasets/{file name}
    experiments/{experiment_id}/iterations/{index}/model.skops
    experiments/{experiment_id}/iterations/{index}/metrics.json
    experiments/{experiment_id}/iterations/{index}/log.txt
    explanations/{experiment_id}/shap_values.npz
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from automl.common.config import S3Settings
from automl.common.errors import NotFound, Unavailable, invalid_field

log = structlog.get_logger(__name__)

MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}
# Statuses that S3 servers return for overload or a passing fault (AWS sends 503 SlowDown).
RETRY_STATUSES = (429, 500, 502, 503, 504)
# Backoff before the n-th retry is BACKOFF_FACTOR * 2 ** (n - 1) seconds, at most BACKOFF_MAX. The first retry is immediate.
BACKOFF_FACTOR = 0.5
BACKOFF_MAX = 5.0


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


class BoundedRetry(urllib3.Retry):
    """urllib3's Retry with a time limit instead of a count, logging each retry.

    Connection errors, read errors of idempotent methods and `RETRY_STATUSES`
    are retried until `max_seconds` have passed since the request's first
    failure; then urllib3 raises `MaxRetryError`. Other errors are not retried.

    Parameters
    ----------
    max_seconds : float
        Time after the first failure during which the request is retried.
    first_failure : float, optional
        `time.monotonic()` of the first failure; urllib3 passes it on to each
        new Retry that `increment` returns.
    """

    def __init__(self, *args, max_seconds: float = 30.0, first_failure: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_seconds = max_seconds
        self.first_failure = first_failure

    @classmethod
    def for_seconds(cls, max_seconds: float) -> "BoundedRetry":
        """Build the retry policy of one ObjectStore."""
        return cls(total=None, connect=None, read=None, status=None, other=0, redirect=5,
                   status_forcelist=RETRY_STATUSES, backoff_factor=BACKOFF_FACTOR, backoff_max=BACKOFF_MAX,
                   max_seconds=max_seconds)

    def new(self, **kw) -> "BoundedRetry":
        # urllib3 calls new() from increment(), so the first call marks the first failure.
        first_failure = self.first_failure if self.first_failure is not None else time.monotonic()
        return super().new(max_seconds=self.max_seconds, first_failure=first_failure, **kw)

    def elapsed(self) -> float:
        """Seconds since the first failure; 0 before any."""
        return 0.0 if self.first_failure is None else time.monotonic() - self.first_failure

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or self.elapsed() >= self.max_seconds

    def get_backoff_time(self) -> float:
        # Never sleep past the time limit: the last attempt then happens at the limit.
        return max(0.0, min(super().get_backoff_time(), self.max_seconds - self.elapsed()))

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        log.warning("object_store_request_retrying", method=method, path=url, attempt=len(retry.history),
                    error=repr(error) if error else None, status=response.status if response else None,
                    backoff_seconds=round(retry.get_backoff_time(), 2), elapsed_seconds=round(retry.elapsed(), 2),
                    max_seconds=self.max_seconds)
        return retry


class ObjectStore:
    """Read and write objects in one bucket of an S3-compatible server."""

    def __init__(self, settings: S3Settings | None = None):
        self.settings = settings or S3Settings.from_env()
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=120.0),
            retries=BoundedRetry.for_seconds(self.settings.retry_seconds),
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
        with self._unavailable_on_failure("create bucket", f"s3://{self.bucket}"):
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

    def uri(self, key: str) -> str:
        """Return the `s3://` URI of a key in this store's bucket."""
        return f"s3://{self.bucket}/{key}"

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes under `key` and return the object's URI."""
        with self._unavailable_on_failure("PUT", self.uri(key)):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return self.uri(key)

    def put_json(self, key: str, value) -> str:
        """Store a JSON document under `key` and return its URI."""
        return self.put_bytes(key, json.dumps(value, indent=2).encode(), "application/json")

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> str:
        """Upload a local file under `key` and return its URI."""
        with self._unavailable_on_failure("PUT", self.uri(key)):
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
        with self._unavailable_on_failure("GET", uri):
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
        with self._unavailable_on_failure("GET", uri):
            try:
                self.client.fget_object(bucket, key, path)
            except S3Error as error:
                raise self._translate(error, uri) from error

    def stat(self, uri: str, field: str = "uri") -> ObjectInfo:
        """Return size and ETag of an object; NotFound when it does not exist."""
        bucket, key = parse_uri(uri, field)
        with self._unavailable_on_failure("HEAD", uri):
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
        with self._unavailable_on_failure("LIST", self.uri(prefix)):
            return [obj.object_name for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)]

    @contextlib.contextmanager
    def _unavailable_on_failure(self, operation: str, uri: str):
        """Convert transport errors and 5xx responses left after the retries to `Unavailable`."""
        try:
            yield
        except (urllib3.exceptions.HTTPError, ServerError) as error:
            # MaxRetryError wraps the last error; its own text repeats the whole URL.
            cause = getattr(error, "reason", None) or error
            log.warning("object_store_unavailable", operation=operation, uri=uri, endpoint=self.settings.endpoint,
                        error=repr(cause), retry_seconds=self.settings.retry_seconds)
            raise Unavailable(
                f"object storage at {self.settings.endpoint} is unavailable: {operation} {uri} failed with "
                f"{cause}; requests are retried for up to {self.settings.retry_seconds:g} s "
                "(AUTOML_S3_RETRY_SECONDS), so check that the S3 server is running and reachable",
                "STORAGE_UNAVAILABLE", {"uri": uri, "endpoint": self.settings.endpoint}) from error

    @staticmethod
    def _translate(error: S3Error, uri: str) -> Exception:
        if error.code in MISSING_CODES:
            return NotFound(f"object {uri} does not exist; upload it first or check the URI", "OBJECT_NOT_FOUND",
                            {"uri": uri})
        return error
