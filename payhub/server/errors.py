"""The one place where errors become gRPC statuses (google.rpc.Status with ErrorInfo/BadRequest).

Domain errors map to their code; a database that cannot be reached is UNAVAILABLE; anything else is
a bug: it is logged with its traceback and answered INTERNAL without internals.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from payhub.kernel import errors

ERROR_DOMAIN = "payhub"

_CODES: list[tuple[type[errors.PayhubError], grpc.StatusCode, int]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED, code_pb2.ABORTED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED, code_pb2.UNIMPLEMENTED),
]


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# An error travels in the trailers twice (grpc-message and grpc-status-details-bin, base64), and a
# default client refuses more than 8 KB of metadata (it would see RESOURCE_EXHAUSTED instead of the
# real error). So an error never carries more than these, whatever the input was:
MAX_MESSAGE_CHARS = 400
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 128
MAX_DESCRIPTION_CHARS = 160
MAX_VIOLATION_BYTES = 2048  # all field violations of one reply together
MAX_METADATA_CHARS = 128


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _bounded_violations(error: errors.InvalidArgument) -> tuple[list[error_details_pb2.BadRequest.FieldViolation], int]:
    """The violations that fit in a small reply, and how many were left out."""
    kept: list[error_details_pb2.BadRequest.FieldViolation] = []
    size = 0
    for v in error.violations[:MAX_VIOLATIONS]:
        field, description = _short(v.field, MAX_FIELD_CHARS), _short(v.description, MAX_DESCRIPTION_CHARS)
        size += len(field.encode()) + len(description.encode()) + 8
        if kept and size > MAX_VIOLATION_BYTES:
            break
        kept.append(error_details_pb2.BadRequest.FieldViolation(field=field, description=description))
    return kept, len(error.violations) - len(kept) + error.omitted


def to_status(error: errors.PayhubError) -> tuple[grpc.StatusCode, grpc.Status]:
    code, rpc_code = next(((c, r) for cls, c, r in _CODES if isinstance(error, cls)),
                          (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL))
    metadata = {_short(k, MAX_METADATA_CHARS): _short(v, MAX_METADATA_CHARS) for k, v in error.metadata.items()}
    message = _short(error.message, MAX_MESSAGE_CHARS)
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    if isinstance(error, errors.InvalidArgument):
        violations, omitted = _bounded_violations(error)
        if omitted:
            metadata["omitted_violations"] = str(omitted)
            message = _short(error.message, MAX_MESSAGE_CHARS - 40) + f" ({omitted} more violations not shown)"
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata))]
    if isinstance(error, errors.InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    status = status_pb2.Status(code=rpc_code, message=message, details=details)
    return code, rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error; it has been logged",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))]))
