"""One-message rendering of everything a command can fail with.

A failed command prints one clear message to stderr and exits with status 1;
it never prints a traceback. gRPC errors show the status code name, the
message and each `google.rpc.BadRequest` field violation on its own line.
"""

from __future__ import annotations

import grpc
import urllib3.exceptions
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from minio.error import MinioException, S3Error

from automl.common.errors import InvalidArgument, ServiceError


class CliError(Exception):
    """A command failed for a reason the message explains in full."""


class ServiceCallError(Exception):
    """A call to one of the services failed.

    Parameters
    ----------
    error : grpc.RpcError
        The error the call raised.
    service : str
        Service name for messages, such as `ExperimentService`.
    address : str
        `host:port` the call went to.
    """

    def __init__(self, error: grpc.RpcError, service: str, address: str):
        super().__init__(str(error))
        self.error = error
        self.service = service
        self.address = address


def is_unreachable(error: grpc.RpcError) -> bool:
    """Return whether a call failed because nothing listens at the address.

    gRPC reports refused connections and unknown hosts as UNAVAILABLE without
    status details; an UNAVAILABLE that a service sends itself carries them.
    """
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (error.details() or "").lower()
    return "failed to connect" in details or "connection refused" in details or "dns resolution failed" in details


def describe_rpc_error(error: grpc.RpcError, service: str = "", address: str = "") -> str:
    """Return the message for a failed call: code name, message and field violations.

    Parameters
    ----------
    error : grpc.RpcError
        A failed call, with the `google.rpc.Status` details in its trailers when the service sent any.
    service, address : str
        The service and address called, named when the service cannot be reached.
    """
    if service and address and is_unreachable(error):
        return f"error: cannot reach the {service} at {address}; is the stack running (make up)?"

    code = error.code()
    code_name = code.name if code is not None else "UNKNOWN"
    message = error.details() or ""
    violations = _field_violations(error)
    return _compose(code_name, message, violations)


def describe_service_error(error: ServiceError) -> str:
    """Return the message for a domain error raised in this process, e.g. by the object store."""
    violations = []
    if isinstance(error, InvalidArgument):
        violations = [(violation.field, violation.description) for violation in error.violations]
    return _compose(code_pb2.Code.Name(error.code), error.message, violations)


def describe_exception(error: BaseException, s3_endpoint: str = "") -> str | None:
    """Return the message for any error a command can raise, or None for a bug.

    Parameters
    ----------
    error : BaseException
        The error.
    s3_endpoint : str
        Object store endpoint, named when it cannot be reached.
    """
    if isinstance(error, CliError):
        return f"error: {error}"
    if isinstance(error, ServiceCallError):
        return describe_rpc_error(error.error, error.service, error.address)
    if isinstance(error, grpc.RpcError):
        return describe_rpc_error(error)
    if isinstance(error, ServiceError):
        return describe_service_error(error)
    if isinstance(error, urllib3.exceptions.HTTPError):
        return f"error: cannot reach the object store at {s3_endpoint}; is the stack running (make up)?"
    if isinstance(error, S3Error):
        return f"error: the object store rejected the request: {error.code}: {error.message}"
    if isinstance(error, MinioException):
        return f"error: object store request failed: {error}"
    if isinstance(error, OSError):
        target = f": {error.filename}" if error.filename else ""
        return f"error: {error.strerror or error}{target}"
    return None


def _field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    # Calls that never reached a service have no trailers to decode.
    try:
        status = rpc_status.from_call(error)
    except (AttributeError, ValueError):
        return []
    if status is None:
        return []
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend((v.field, v.description) for v in bad_request.field_violations)
    return violations


def _compose(code_name: str, message: str, violations: list[tuple[str, str]]) -> str:
    lines = [f"error: {code_name}: {message}" if message else f"error: {code_name}"]
    if violations:
        # The services set the message to the violations joined by `; `, so
        # printing it as well would repeat every violation.
        joined = "; ".join(f"{field}: {description}" for field, description in violations)
        if message == joined:
            count = len(violations)
            lines = [f"error: {code_name}: {count} invalid field{'s' if count > 1 else ''}"]
        lines += [f"  {field}: {description}" if field else f"  {description}" for field, description in violations]
    return "\n".join(lines)
