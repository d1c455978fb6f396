"""The call pipeline as a caller and an operator see it, on an in-process gRPC server: who may call,
the statuses and their details, one access log line per call with its fields, and the metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from payhub.trade.v1 import trade_pb2
from prometheus_client import REGISTRY

from payhub.identity.principal import Principal, PrincipalKind, Role, current_principal
from payhub.kernel import errors
from payhub.kernel.ids import new_id
from payhub.kernel.logging import configure_logging
from payhub.server.interceptors import CallPipeline

SERVICE = "payhub.trade.v1.TradeService"
GET, CREATE, WATCH = f"/{SERVICE}/GetPayment", f"/{SERVICE}/CreatePayment", f"/{SERVICE}/WatchEvents"
PRINCIPALS = {
    "key-full": Principal(PrincipalKind.MERCHANT, "key_full", merchant_id="m1"),
    "key-ro": Principal(PrincipalKind.MERCHANT, "key_ro", merchant_id="m1", read_only=True),
    "staff-fin": Principal(PrincipalKind.STAFF, "stf_fin", frozenset({Role.FINANCE})),
}
REQUEST_ID = re.compile(r"req_[0-9a-hjkmnp-tv-z]{26}")


class Credentials:
    def resolve(self, token: str) -> Principal | None:
        return PRINCIPALS.get(token)


def get_payment(request: bytes, context: grpc.ServicerContext) -> bytes:
    structlog.get_logger("test").info("inside", who=current_principal().subject)
    return b"payment:" + request


def create_payment(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"bad":
        raise errors.InvalidArgument.field("payment.amount.amount_minor", "must be > 0")
    if request == b"busy":
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    if request == b"bug":
        raise RuntimeError("4242424242424242 leaked into an exception")
    raise errors.FailedPrecondition("payment is SUCCEEDED", metadata={"state": "SUCCEEDED"})


def watch_events(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield b"1"
    yield b"2"
    if request == b"then-fail":
        raise errors.NotFound("merchants/m2 not found")


SERVED: list[Any] = []


def list_payments(request: trade_pb2.ListPaymentsRequest, context: grpc.ServicerContext) -> bytes:
    SERVED.append(request)
    return b"listed"


def _trade_handlers() -> dict[str, Any]:
    return {
        "GetPayment": grpc.unary_unary_rpc_method_handler(get_payment),
        "CreatePayment": grpc.unary_unary_rpc_method_handler(create_payment),
        "WatchEvents": grpc.unary_stream_rpc_method_handler(watch_events),
        "ListPayments": grpc.unary_unary_rpc_method_handler(
            list_payments, request_deserializer=trade_pb2.ListPaymentsRequest.FromString)}


def _health_handlers() -> dict[str, Any]:
    return {"Check": grpc.unary_unary_rpc_method_handler(lambda request, context: b"SERVING")}


# Both ways of putting the pipeline in front of a server give the same calls: as an interceptor, and
# wrapping each handler as it is registered (`serve_on`, what `payhub serve` does); the second serves
# trade's methods as registered methods (as generated code adds them) and Health through a generic handler.
@pytest.fixture(scope="module", params=["interceptor", "serve_on"])
def channel(request: pytest.FixtureRequest) -> Iterator[grpc.Channel]:
    if request.param == "interceptor":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[CallPipeline(Credentials())])  # type: ignore[arg-type]
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler(SERVICE, _trade_handlers()),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", _health_handlers())])
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        services: Any = CallPipeline(Credentials()).serve_on(server)  # type: ignore[arg-type]
        services.add_registered_method_handlers(SERVICE, _trade_handlers())
        services.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("grpc.health.v1.Health",
                                                                                _health_handlers())])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(None)


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Any:
    configure_logging("info", "json")
    capsys.readouterr()
    return lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def bearer(token: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), *extra)


def call(channel: grpc.Channel, method: str, request: bytes = b"x", metadata: Any = None) -> bytes:
    rpc: Any = channel.unary_unary(method)
    return rpc(request, metadata=metadata, timeout=5)  # type: ignore[no-any-return]


def failure(channel: grpc.Channel, method: str, request: bytes = b"x", metadata: Any = None) -> tuple[Any, ...]:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, method, request, metadata)
    err: Any = caught.value
    reason, fields = "", []
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = f"{info.domain}/{info.reason}"
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return err.code(), err.details(), reason, fields


def counted(method: str, code: str) -> float:
    return REGISTRY.get_sample_value("payhub_rpc_total", {"method": method, "code": code}) or 0.0


def test_a_call_is_served_with_its_principal_and_logged_once(channel: grpc.Channel, log_lines: Any) -> None:
    before = counted(GET, "OK")
    assert call(channel, GET, b"p1", bearer("key-ro")) == b"payment:p1"
    inside, access = log_lines()
    assert inside["event"] == "inside" and inside["who"] == "key_ro"
    assert set(access) == {"code", "latency_ms", "principal", "event", "method", "request_id", "level", "timestamp"}
    assert (access["event"], access["code"], access["principal"], access["method"]) == (
        "rpc", "OK", "merchant:key_ro", GET)
    assert REQUEST_ID.fullmatch(access["request_id"]) and inside["request_id"] == access["request_id"]
    assert isinstance(access["latency_ms"], float)
    assert counted(GET, "OK") == before + 1
    assert REGISTRY.get_sample_value("payhub_rpc_seconds_count", {"method": GET})


def test_the_callers_request_id_is_kept_and_each_call_gets_its_own(channel: grpc.Channel, log_lines: Any) -> None:
    call(channel, GET, metadata=bearer("key-full", ("x-request-id", "client-7")))
    call(channel, GET, metadata=(("x-request-id", ""), ("authorization", "Basic x"), *bearer("key-full")))
    call(channel, GET, metadata=bearer("key-full", ("x-request-id", "y" * 129)))
    ids = [line["request_id"] for line in log_lines() if line["event"] == "rpc"]
    assert ids[0] == "client-7"
    assert all(REQUEST_ID.fullmatch(i) for i in ids[1:]) and ids[1] != ids[2]


@pytest.mark.parametrize(("metadata", "code", "message"), [
    (None, grpc.StatusCode.UNAUTHENTICATED, "missing `authorization: Bearer <token>` metadata"),
    ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED, "missing"),
    ((("authorization", "Bearer   "),), grpc.StatusCode.UNAUTHENTICATED, "missing"),
    (bearer("nope"), grpc.StatusCode.UNAUTHENTICATED, "unknown, expired or revoked credential"),
    (bearer("key-ro"), grpc.StatusCode.PERMISSION_DENIED, "read-only"),
    (bearer("staff-fin"), grpc.StatusCode.PERMISSION_DENIED, "needs one of the roles"),
])
def test_who_may_not_call(channel: grpc.Channel, log_lines: Any, metadata: Any, code: grpc.StatusCode,
                          message: str) -> None:
    got_code, details, reason, _ = failure(channel, CREATE, metadata=metadata)
    assert (got_code, reason) == (code, f"payhub/{code.name}")
    assert message in details
    [access] = log_lines()
    assert (access["code"], access["principal"]) == (code.name, "anonymous")  # refused: acting as nobody


def test_domain_errors_become_rich_statuses(channel: grpc.Channel, log_lines: Any) -> None:
    assert failure(channel, CREATE, b"bad", bearer("key-full")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "invalid request: payment.amount.amount_minor: must be > 0",
        "payhub/INVALID_ARGUMENT", ["payment.amount.amount_minor"])
    assert failure(channel, CREATE, b"other", bearer("key-full"))[:3] == (
        grpc.StatusCode.FAILED_PRECONDITION, "payment is SUCCEEDED", "payhub/FAILED_PRECONDITION")
    assert [line["code"] for line in log_lines()] == ["INVALID_ARGUMENT", "FAILED_PRECONDITION"]


def test_a_servicers_own_abort_passes_through(channel: grpc.Channel, log_lines: Any) -> None:
    before = counted(CREATE, "RESOURCE_EXHAUSTED")
    code, details, _, _ = failure(channel, CREATE, b"busy", bearer("key-full"))
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    assert [line["code"] for line in log_lines()] == ["RESOURCE_EXHAUSTED"]
    assert counted(CREATE, "RESOURCE_EXHAUSTED") == before + 1


def test_a_bug_is_internal_without_internals_and_logged_redacted(channel: grpc.Channel, log_lines: Any) -> None:
    assert failure(channel, CREATE, b"bug", bearer("key-full"))[:3] == (
        grpc.StatusCode.INTERNAL, "internal error; it has been logged", "payhub/INTERNAL")
    error, access = log_lines()
    assert error["event"] == "unhandled error" and error["request_id"] == access["request_id"]
    assert "RuntimeError" in error["exception"] and "4242424242424242" not in error["exception"]
    assert access["code"] == "INTERNAL"


def test_streams_are_authenticated_and_logged_when_they_end(channel: grpc.Channel, log_lines: Any) -> None:
    stream: Any = channel.unary_stream(WATCH)
    assert list(stream(b"x", metadata=bearer("key-ro"), timeout=5)) == [b"1", b"2"]
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for item in stream(b"then-fail", metadata=bearer("key-ro"), timeout=5):
            received.append(item)
    assert received == [b"1", b"2"] and caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as caught:
        list(stream(b"x", timeout=5))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert [(line["method"], line["code"]) for line in log_lines()] == [
        (WATCH, "OK"), (WATCH, "NOT_FOUND"), (WATCH, "UNAUTHENTICATED")]


def test_health_is_public_and_not_access_logged_but_counted(channel: grpc.Channel, log_lines: Any) -> None:
    method = "/grpc.health.v1.Health/Check"
    before = counted(method, "OK")
    assert call(channel, method) == b"SERVING"
    assert log_lines() == []
    assert counted(method, "OK") == before + 1


def test_methods_are_never_confused_with_each_other(channel: grpc.Channel, log_lines: Any) -> None:
    for _ in range(3):
        assert call(channel, GET, b"a", bearer("key-full")) == b"payment:a"
        assert failure(channel, CREATE, b"bad", bearer("key-full"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert [line["method"] for line in log_lines() if line["event"] == "rpc"] == [GET, CREATE] * 3


LIST = f"/{SERVICE}/ListPayments"


def test_bytes_that_do_not_parse_are_invalid_argument_and_logged(channel: grpc.Channel, log_lines: Any) -> None:
    SERVED.clear()
    assert failure(channel, LIST, b"\xff\xff\xff\xff\x0f", bearer("key-ro")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request: request: is not a valid protobuf message of this method's request type",
        "payhub/INVALID_ARGUMENT", ["request"])
    warning, access = log_lines()
    assert (warning["event"], warning["size"], access["code"]) == ("request did not parse", 5, "INVALID_ARGUMENT")
    assert failure(channel, LIST, b"\xff\xff\xff\xff\x0f")[0] == grpc.StatusCode.UNAUTHENTICATED
    assert SERVED == []


def test_a_request_breaking_the_contract_never_reaches_the_servicer(channel: grpc.Channel) -> None:
    SERVED.clear()
    bad = trade_pb2.ListPaymentsRequest(parent="merchants/-", merchant_order_no="a\x00b").SerializeToString()
    code, _, _, fields = failure(channel, LIST, bad, bearer("key-ro"))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["merchant_order_no"])
    assert SERVED == []
    assert call(channel, LIST, trade_pb2.ListPaymentsRequest(parent="merchants/-").SerializeToString(),
                bearer("key-ro")) == b"listed"
    assert len(SERVED) == 1


def test_an_unknown_method_is_unimplemented(channel: grpc.Channel) -> None:
    code, _, _, _ = failure(channel, f"/{SERVICE}/NoSuchMethod", metadata=bearer("key-full"))
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_a_request_id_is_made_only_for_calls_that_log(channel: grpc.Channel, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import payhub.server.interceptors as pipeline
    made: list[str] = []

    def counted_id() -> str:
        made.append(new_id("req"))
        return made[-1]
    monkeypatch.setattr(pipeline, "_new_request_id", counted_id)
    configure_logging("warning", "json")
    try:
        assert call(channel, GET, b"p", bearer("key-full")) == b"payment:p"
        assert failure(channel, CREATE, b"bad", bearer("key-full"))[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert made == []  # nothing written, no id made
        assert failure(channel, CREATE, b"bug", bearer("key-full"))[0] == grpc.StatusCode.INTERNAL
        [error] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert error["event"] == "unhandled error" and made == [error["request_id"]]
    finally:
        configure_logging("info", "json")
