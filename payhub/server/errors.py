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


def to_status(error: errors.PayhubError) -> tuple[grpc.StatusCode, grpc.Status]:
    code, rpc_code = next(((c, r) for cls, c, r in _CODES if isinstance(error, cls)),
                          (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL))
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN,
                                                 metadata=error.metadata))]
    if isinstance(error, errors.InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations])))
    status = status_pb2.Status(code=rpc_code, message=error.message, details=details)
    return code, rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error; it has been logged",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))]))
