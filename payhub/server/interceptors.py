"""The call pipeline every RPC passes through: request context, authentication and authorization,
error mapping, structured access log and Prometheus metrics.

One interceptor does all of it so each call is wrapped once (this is on the hot path); the pieces it
uses live in their own modules (permissions, errors, identity).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog
from prometheus_client import Counter, Histogram

from payhub.identity.principal import Principal, reset_current_principal, set_current_principal
from payhub.identity.store import CredentialStore
from payhub.kernel.errors import PayhubError, Unauthenticated
from payhub.kernel.ids import new_id
from payhub.kernel.logging import get_logger
from payhub.server import permissions
from payhub.server.errors import internal_status, to_status

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/")

RPC_COUNT = Counter("payhub_rpc_total", "RPCs served", ["method", "code"])
RPC_LATENCY = Histogram("payhub_rpc_seconds", "RPC latency", ["method"],
                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))

log = get_logger("payhub.rpc")


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return None


def _request_id(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return new_id("req")


class CallPipeline(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, credentials: CredentialStore) -> None:
        self._credentials = credentials

    def _authenticate(self, method: str, metadata: Any) -> Principal | None:
        if method.startswith(PUBLIC_PREFIXES):
            return None
        token = _bearer(metadata)
        if not token:
            raise Unauthenticated("missing `authorization: Bearer <token>` metadata")
        principal = self._credentials.resolve(token)
        if principal is None:
            raise Unauthenticated("unknown, expired or revoked credential")
        permissions.check(method, principal)
        return principal

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method, metadata = details.method, details.invocation_metadata
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler

    def _wrap_unary(self, behavior: Callable[[Any, Any], Any], method: str, metadata: Any) -> Any:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with _CallScope(self, method, metadata, context) as scope:
                return scope.run(lambda: behavior(request, context))
        return unary

    def _wrap_stream(self, behavior: Callable[[Any, Any], Iterator[Any]], method: str, metadata: Any) -> Any:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with _CallScope(self, method, metadata, context) as scope:
                iterator = scope.run(lambda: iter(behavior(request, context)))
                while iterator is not None:
                    item = scope.run(lambda: next(iterator, _END))
                    if item is _END or item is None:
                        return
                    yield item
        return stream


_END = object()


class _CallScope:
    """Everything that brackets one call: context vars, auth, error mapping, log and metrics."""

    def __init__(self, pipeline: CallPipeline, method: str, metadata: Any, context: grpc.ServicerContext):
        self.pipeline, self.method, self.metadata, self.context = pipeline, method, metadata, context
        self.code = grpc.StatusCode.OK
        self.principal: Principal | None = None

    def __enter__(self) -> _CallScope:
        self.start = time.perf_counter()
        self.request_id = _request_id(self.metadata)
        structlog.contextvars.bind_contextvars(request_id=self.request_id, method=self.method)
        self.token: Any = None
        self.authenticated = False
        return self

    def _authenticate(self) -> None:
        self.authenticated = True
        self.principal = self.pipeline._authenticate(self.method, self.metadata)
        if self.principal is not None:
            self.token = set_current_principal(self.principal)

    def run(self, fn: Callable[[], Any]) -> Any:
        try:
            if not self.authenticated:
                self._authenticate()
            return fn()
        except PayhubError as exc:
            self._abort(exc)
        except Exception:
            aborted = self.context.code()  # type: ignore[attr-defined]  # missing from the grpc stubs
            if aborted not in (None, grpc.StatusCode.OK):  # the servicer aborted the call itself
                self.code = aborted
                raise
            self.code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error")
            self.context.abort_with_status(internal_status())
        return None

    def _abort(self, exc: PayhubError) -> None:
        code, status = to_status(exc)
        self.code = code
        self.context.abort_with_status(status)

    def __exit__(self, *exc_info: Any) -> None:
        elapsed = time.perf_counter() - self.start
        if self.token is not None:
            reset_current_principal(self.token)
        code = self.code.name if self.code else "UNKNOWN"
        RPC_COUNT.labels(self.method, code).inc()
        RPC_LATENCY.labels(self.method).observe(elapsed)
        if not self.method.startswith(PUBLIC_PREFIXES):
            who = f"{self.principal.kind.value}:{self.principal.subject}" if self.principal else "anonymous"
            log.info("rpc", code=code, latency_ms=round(elapsed * 1000, 2), principal=who)
        structlog.contextvars.clear_contextvars()
