"""Domain errors and their mapping to gRPC statuses with `google.rpc` details.

Service logic raises these exceptions without knowing about gRPC; the
`grpc_errors` decorator on each servicer method turns them into a
`google.rpc.Status` whose details carry an `ErrorInfo` and, for invalid
fields, a `BadRequest` with one field violation per field.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "automl.v1"

log = structlog.get_logger(__name__)


@dataclass
class FieldViolation:
    """One invalid request field: its path (`experiment.iterations`) and why."""

    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """Base of all domain errors; `reason` is an UPPER_SNAKE_CASE ErrorInfo reason."""

    message: str
    reason: str = "ERROR"
    metadata: dict[str, str] = field(default_factory=dict)

    code = code_pb2.UNKNOWN

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ServiceError):
    """A request field is invalid; `violations` names each field."""

    code = code_pb2.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation], reason: str = "INVALID_ARGUMENT"):
        self.violations = violations
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(message or "invalid request", reason)


class NotFound(ServiceError):
    code = code_pb2.NOT_FOUND


class AlreadyExists(ServiceError):
    code = code_pb2.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = code_pb2.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = code_pb2.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServiceError):
    code = code_pb2.DEADLINE_EXCEEDED


class Cancelled(ServiceError):
    code = code_pb2.CANCELLED


class Unavailable(ServiceError):
    code = code_pb2.UNAVAILABLE


def invalid_field(field_path: str, description: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    """Build an InvalidArgument for a single field."""
    return InvalidArgument([FieldViolation(field_path, description)], reason)


def to_status(error: ServiceError) -> status_pb2.Status:
    """Convert a domain error to a `google.rpc.Status` with ErrorInfo and BadRequest details."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    return status_pb2.Status(code=error.code, message=error.message, details=details)


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _abort(context: grpc.ServicerContext, error: ServiceError, method: str) -> None:
    log.info("request_rejected", method=method, code=code_pb2.Code.Name(error.code), reason=error.reason,
             error=error.message)
    context.abort_with_status(rpc_status.to_status(to_status(error)))


def _abort_internal(context: grpc.ServicerContext, method: str) -> None:
    # The traceback goes to the log only: clients get a plain message.
    log.exception("request_failed", method=method)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"{method} failed with an internal error; see the service log")
    context.abort_with_status(rpc_status.to_status(status))


def grpc_errors(method):
    """Decorate a servicer method so domain errors become gRPC statuses.

    Works for unary methods and for server-streaming generator methods. Any
    other exception is logged with its traceback and returned as INTERNAL
    without the traceback.
    """
    name = method.__name__

    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream_wrapper(self, request, context):
            try:
                yield from method(self, request, context)
            except ServiceError as error:
                _abort(context, error, name)
            except Exception:
                if context.is_active():
                    _abort_internal(context, name)
        return stream_wrapper

    @functools.wraps(method)
    def unary_wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServiceError as error:
            _abort(context, error, name)
        except Exception:
            _abort_internal(context, name)
    return unary_wrapper


def from_rpc_error(error: grpc.RpcError) -> ServiceError:
    """Convert an error received from another service back to a domain error.

    Keeps the code, message, ErrorInfo reason and field violations, so a
    service can pass a downstream error to its own caller unchanged.
    """
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    reason = "ERROR"
    violations: list[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations = [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    if violations:
        return InvalidArgument(violations, reason)
    error_class = _CLASS_BY_CODE.get(code, ServiceError)
    return error_class(message or code.name, reason)


_CLASS_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: lambda m, r: InvalidArgument([FieldViolation("", m)], r),
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}
