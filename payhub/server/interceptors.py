"""The call pipeline every RPC passes through: request context, authentication and authorization,
error mapping, structured access log and Prometheus metrics.

One interceptor does all of it so each call is wrapped once (this is on the hot path); the pieces it
uses live in their own modules (permissions, errors, identity).

Hot-path notes (measured; keep them when changing this file):
- The server wraps every handler once, when it is registered (`CallPipeline.serve_on`): gRPC's
  single polling thread then finds the wrapped handler as it finds any registered one, with no
  interceptor to run per call (`intercept_service` stays for servers built with `interceptors=`;
  it wraps each method on its first call and looks the wrapped handler up after that). Metadata
  is read in the worker thread, in one pass.
- A unary call runs in one function (`_wrap_unary`'s `unary`: no scope object, no closures); streams
  go through `_CallScope`, which does the same steps.
- What depends only on the method (public or not, its metrics) is worked out once per method and
  kept in a `_Method`; the metrics take one lock per call (`payhub.server.rpc_metrics`, not
  prometheus_client's Counter and Histogram, which took three).
- grpcio runs each call in a context of its own (`contextvars.Context()` per call): what the call
  binds (principal, deadline, the log context) cannot outlive it; the scope still resets its own.
  The log context's two keys are set on structlog's own context variables directly (what
  `bind_contextvars` does, without its keyword handling; `clear_contextvars` walked every variable).
- The access log line's fields are built only when INFO lines are written at all, and a call without
  an `x-request-id` gets its request id (`new_id("req")`) only when one of its log lines is written
  (`payhub.kernel.logging.LazyText`): at `warning` most calls write none.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import Message

from payhub.identity.principal import ANONYMOUS, Principal, reset_current_principal, set_current_principal
from payhub.identity.store import CredentialStore
from payhub.kernel import deadline
from payhub.kernel.errors import InvalidArgument, PayhubError, Unauthenticated
from payhub.kernel.ids import new_id
from payhub.kernel.logging import LazyText, get_logger, is_enabled
from payhub.server import permissions, rpc_metrics
from payhub.server.errors import internal_status, to_status
from payhub.server.validation import validate

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/")

log = get_logger("payhub.rpc")


def _log_context_vars() -> tuple[contextvars.ContextVar[Any], contextvars.ContextVar[Any]]:
    """structlog's context variables for `request_id` and `method` (bound once in a throwaway context:
    the tokens name the variables merge_contextvars reads)."""
    tokens = contextvars.Context().run(structlog.contextvars.bind_contextvars, request_id=None, method=None)
    return tokens["request_id"].var, tokens["method"].var


_REQUEST_ID_VAR, _METHOD_VAR = _log_context_vars()
_INFO = logging.INFO
_perf_counter = time.perf_counter
_OK = grpc.StatusCode.OK
_INTERNAL = grpc.StatusCode.INTERNAL
_set_principal, _reset_principal = set_current_principal, reset_current_principal
_MAX_CACHED_METHODS = 4096  # registered methods are a few hundred; never grow without bound

def _scan_metadata(metadata: tuple[tuple[str, str | bytes], ...] | None) -> tuple[str | None, str | None]:
    """(bearer token, caller's request id): the first acceptable `authorization: Bearer …` and
    `x-request-id` (1-128 characters) entries, in one pass."""
    token = request_id = None
    for key, value in metadata or ():
        if token is None and key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            token = value[7:].strip()
        elif request_id is None and key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            request_id = value
        else:
            continue
        if token is not None and request_id is not None:
            break
    return token, request_id


class _Method:
    """What the pipeline needs to know about one RPC method, worked out on its first call."""

    __slots__ = ("admitted", "name", "public", "record")

    def __init__(self, name: str) -> None:
        self.name = name
        self.public = name.startswith(PUBLIC_PREFIXES)
        # The principal the permission table last admitted to this method: principals are immutable
        # and the credential cache answers the same object for a key, so the next call of that key
        # skips the table (another principal is checked, and becomes the one kept).
        self.admitted: Principal | None = None
        # payhub_rpc_total and payhub_rpc_seconds: record(code name, seconds), one lock per call
        self.record = rpc_metrics.METRICS.stats(name).record


class CallPipeline(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, credentials: CredentialStore) -> None:
        self._credentials = credentials
        # method -> (the handler gRPC gave us, the wrapped handler we give back)
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def _authorize(self, method: str, token: str | None) -> Principal:
        if not token:
            if permissions.admits_anonymous(method):
                return ANONYMOUS  # the session name in the request is the capability
            raise Unauthenticated("missing `authorization: Bearer <token>` metadata")
        principal = self._credentials.resolve(token)
        if principal is None:
            raise Unauthenticated("unknown, expired or revoked credential")
        permissions.check(method, principal)
        return principal

    def _authorize_method(self, method: _Method, token: str | None) -> Principal:
        """`_authorize` for a unary call: the permission table is not asked again for the principal
        it last admitted to this method."""
        if not token:
            return self._authorize(method.name, token)
        principal = self._credentials.resolve(token)
        if principal is None:
            raise Unauthenticated("unknown, expired or revoked credential")
        if principal is not method.admitted:
            permissions.check(method.name, principal)
            method.admitted = principal
        return principal

    def serve_on(self, server: grpc.Server) -> grpc.Server:
        """`server` as the services should see it: every handler added through the returned object
        is wrapped by this pipeline once, at registration (use it instead of `interceptors=`)."""
        return cast(grpc.Server, _PipelinedServer(server, self))  # it forwards everything else

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        return self._wrapped_handler(details.method, continuation(details))

    def _wrapped_handler(self, method: str, handler: Any) -> Any:
        """`handler` (gRPC's handler of `method`, or None) wrapped, made once per method and handler."""
        if handler is None:
            return None
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, _Method(method))
        if len(self._wrapped) < _MAX_CACHED_METHODS:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, method: _Method) -> Any:
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        return handler

    def _wrap_unary(self, behavior: Callable[[Any, Any], Any], method: _Method) -> Any:
        """The steps of `_CallScope` spelt out in one function (this runs on every unary call)."""
        authorize, name, public = self._authorize_method, method.name, method.public
        enter_deadline, leave_deadline = deadline.enter, deadline.leave
        record, logs_calls = method.record, not public

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            start = _perf_counter()
            bearer, request_id = _scan_metadata(context.invocation_metadata())
            bound_id = _REQUEST_ID_VAR.set(request_id or LazyText(_new_request_id))
            bound_method = _METHOD_VAR.set(name)
            # What the call causes (a channel's HTTP request, a call to another process) ends with it.
            bound_deadline = enter_deadline(context.time_remaining())
            code = _OK
            principal = bound_principal = None
            try:
                if not public:
                    principal = authorize(method, bearer)
                    bound_principal = _set_principal(principal)
                # `_checked`, with a request that parsed and is a message decided inline
                if type(request) is _Unparsable or not isinstance(request, Message):
                    return behavior(_checked(request), context)
                validate(request)
                return behavior(request, context)
            except PayhubError as exc:
                code, status = to_status(exc)
                context.abort_with_status(status)
            except Exception:
                aborted = context.code()  # type: ignore[attr-defined]  # missing from the grpc stubs
                if aborted not in (None, _OK):  # the servicer aborted the call itself: its code stands
                    code = aborted
                    raise
                # Anything else is a bug: logged with its traceback, answered INTERNAL without internals.
                code = _INTERNAL
                log.exception("unhandled error")
                context.abort_with_status(internal_status())
            finally:
                if bound_principal is not None:
                    _reset_principal(bound_principal)
                leave_deadline(bound_deadline)
                # `_completed`, spelt out
                elapsed = _perf_counter() - start
                code_name = "OK" if code is _OK else _code_name(code)
                record(code_name, elapsed)
                if logs_calls and is_enabled(_INFO):
                    _access_line(code_name, elapsed, principal)
                _METHOD_VAR.reset(bound_method)
                _REQUEST_ID_VAR.reset(bound_id)
            return None
        return unary

    def _wrap_stream(self, behavior: Callable[[Any, Any], Iterator[Any]], method: _Method) -> Any:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with _CallScope(self, method, context) as scope:
                iterator = scope.run(lambda: iter(behavior(_checked(request), context)))
                while iterator is not None:
                    item = scope.run(lambda: next(iterator, _END))
                    if item is _END or item is None:
                        return
                    yield item
        return stream


class _PipelinedServer:
    """A grpc.Server whose handlers are wrapped by a CallPipeline as they are added (the generated
    `add_*Servicer_to_server` functions add each service both ways: registered method handlers, which
    gRPC looks up by the method the call names, and a generic handler for any other lookup)."""

    def __init__(self, server: grpc.Server, pipeline: CallPipeline) -> None:
        self._server, self._pipeline = server, pipeline

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        wrap = self._pipeline._wrapped_handler
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]  # missing from the stubs
            service_name, {name: wrap(f"/{service_name}/{name}", handler) for name, handler in method_handlers.items()})

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_PipelinedGeneric(h, self._pipeline) for h in generic_rpc_handlers])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _PipelinedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    __slots__ = ("_handler", "_pipeline")

    def __init__(self, handler: grpc.GenericRpcHandler, pipeline: CallPipeline) -> None:
        self._handler, self._pipeline = handler, pipeline

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        return self._pipeline._wrapped_handler(handler_call_details.method, self._handler.service(handler_call_details))


def _new_request_id() -> str:
    return new_id("req")


def _completed(method: _Method, code: Any, elapsed: float, principal: Principal | None) -> None:
    """Count the call and write its access line (the log context still bound)."""
    code_name = _code_name(code)
    method.record(code_name, elapsed)
    if not method.public and is_enabled(_INFO):
        _access_line(code_name, elapsed, principal)


def _code_name(code: Any) -> str:
    return code.name if code else "UNKNOWN"  # type: ignore[no-any-return]


def _access_line(code_name: str, elapsed: float, principal: Principal | None) -> None:
    who = f"{principal.kind.value}:{principal.subject}" if principal else "anonymous"
    log.info("rpc", code=code_name, latency_ms=round(elapsed * 1000, 2), principal=who)


_END = object()


class _Unparsable:
    """Stands for request bytes that are not the method's request message. grpcio would answer
    INTERNAL ("Exception deserializing request!") if the deserializer raised, before the pipeline
    sees the call; returning this instead lets the call be authenticated and answered
    INVALID_ARGUMENT like any other bad input."""

    __slots__ = ("error", "size")

    def __init__(self, error: Exception, size: int) -> None:
        self.error, self.size = error, size


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # any parse failure is the caller's bad input
            return _Unparsable(exc, len(data))
    return parse


def _checked(request: Any) -> Any:
    """The request, once it parsed and passed the contract's field checks (payhub.server.validation);
    runs after authentication, so an anonymous caller learns nothing about the request shape."""
    if type(request) is _Unparsable:
        log.warning("request did not parse", error=type(request.error).__name__, size=request.size)
        raise InvalidArgument.field("request", "is not a valid protobuf message of this method's request type")
    if isinstance(request, Message):
        validate(request)
    return request


class _CallScope:
    """Everything that brackets one call: context vars, auth, error mapping, log and metrics."""

    __slots__ = ("_bearer", "_bound", "authenticated", "code", "context", "deadline", "method", "pipeline",
                 "principal", "request_id", "start", "token")

    def __init__(self, pipeline: CallPipeline, method: _Method, context: grpc.ServicerContext):
        self.start = _perf_counter()
        self.pipeline, self.method, self.context = pipeline, method, context
        self.code = _OK
        self.principal: Principal | None = None
        self.token: Any = None
        self.authenticated = False
        self._bearer, request_id = _scan_metadata(context.invocation_metadata())
        self.request_id: str | LazyText = request_id or LazyText(_new_request_id)
        self._bound = (_REQUEST_ID_VAR.set(self.request_id), _METHOD_VAR.set(method.name))
        # What the call causes (a channel's HTTP request, a call to another process) ends with it.
        self.deadline = deadline.enter(context.time_remaining())

    def __enter__(self) -> _CallScope:
        return self

    def authenticate(self) -> None:
        self.authenticated = True
        if self.method.public:
            return
        self.principal = self.pipeline._authorize(self.method.name, self._bearer)
        self.token = set_current_principal(self.principal)

    def run(self, fn: Callable[[], Any]) -> Any:
        try:
            if not self.authenticated:
                self.authenticate()
            return fn()
        except PayhubError as exc:
            self.abort(exc)
        except Exception:
            if self.aborted_by_servicer():
                raise
            self.internal_error()
        return None

    def abort(self, exc: PayhubError) -> None:
        code, status = to_status(exc)
        self.code = code
        self.context.abort_with_status(status)

    def aborted_by_servicer(self) -> bool:
        """Whether the exception being handled is the servicer aborting the call itself (it passes
        through with the servicer's code)."""
        aborted = self.context.code()  # type: ignore[attr-defined]  # missing from the grpc stubs
        if aborted not in (None, _OK):
            self.code = aborted
            return True
        return False

    def internal_error(self) -> None:
        """Anything else is a bug: logged with its traceback (call from the `except` block) and
        answered INTERNAL without internals."""
        self.code = grpc.StatusCode.INTERNAL
        log.exception("unhandled error")
        self.context.abort_with_status(internal_status())

    def __exit__(self, *exc_info: Any) -> None:
        self.finish()

    def finish(self) -> None:
        elapsed = _perf_counter() - self.start
        if self.token is not None:
            reset_current_principal(self.token)
        deadline.leave(self.deadline)
        _completed(self.method, self.code, elapsed, self.principal)
        request_id_token, method_token = self._bound
        _METHOD_VAR.reset(method_token)
        _REQUEST_ID_VAR.reset(request_id_token)
