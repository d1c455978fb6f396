"""Bad input over every RPC of a real server on PostgreSQL: never INTERNAL or UNKNOWN, never a hang,
and a rejected call changes no row.

The RPCs are enumerated from the descriptors the running server publishes by reflection, so an RPC
added later is covered without editing this file. Requests are random (hypothesis) or malformed on
purpose (NULs, huge strings, out-of-range timestamps, unknown enum numbers, bytes that do not
parse), sent as each kind of principal: none, a full and a read-only merchant key, each staff role
and admin. Background jobs are off in this server, so the tables change only through the calls.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2, trade_pb2_grpc

from payhub.identity.principal import Role
from payhub.identity.store import CredentialStore
from payhub.kernel.db import Database
from tests.conftest import RunningServer, new_postgres_database, start_server

pytestmark = pytest.mark.e2e

CALL_SECONDS = 30  # a hang is a call that does not answer within this (the box is shared and slow)
STREAM_SECONDS = 1.5  # a stream that answers nothing this long is open and well (WatchEvents keeps going)
REJECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED}
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
SKIPPED_SERVICES = ("grpc.reflection.",)  # bidirectional streams, not payhub's
SKIPPED_METHODS = {"/grpc.health.v1.Health/Watch"}  # an endless stream by design


def rid() -> str:
    return secrets.token_hex(8)


@dataclass
class Rpc:
    path: str
    method: MethodDescriptor
    request_class: Any

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)


@dataclass
class World:
    server: RunningServer
    channel: grpc.Channel
    rpcs: list[Rpc]
    principals: dict[str, tuple[tuple[str, str], ...]]
    names: list[str]  # real resource names and ids to aim random requests at real rows
    pg_url: str


def _enumerate_rpcs(channel: grpc.Channel) -> list[Rpc]:
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    rpcs = []
    for service_name in database.get_services():
        if service_name.startswith(SKIPPED_SERVICES):
            continue
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            if method.client_streaming or path in SKIPPED_METHODS:
                continue
            rpcs.append(Rpc(path, method, message_factory.GetMessageClass(method.input_type)))
    return rpcs


def _seed(server: RunningServer, channel: grpc.Channel) -> tuple[dict[str, Any], list[str]]:
    admin = server.admin_metadata()
    merchants = merchant_pb2_grpc.MerchantServiceStub(channel)
    m = merchants.CreateMerchant(merchant_pb2.CreateMerchantRequest(merchant=merchant_pb2.Merchant(
        legal_name="Fuzz Shop Ltd", display_name="Fuzz Shop",
        contact=merchant_pb2.Contact(name="Ann", email="ann@example.com"), business_category="retail",
        country_code="CN", settlement_account=merchant_pb2.SettlementAccount(
            account_name="Fuzz Shop Ltd", bank_name="Bank", account_number="6222020000000000")),
        request_id=rid()), metadata=admin).merchant
    merchants.ApproveMerchant(merchant_pb2.ApproveMerchantRequest(name=m.name, request_id=rid()), metadata=admin)
    merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(parent=m.name, request_id=rid(),
                                                                    channel_config=merchant_pb2.ChannelConfig(
        channel="sandbox", enabled=True, priority=1, payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD])),
        metadata=admin)
    full = merchants.CreateApiKey(merchant_pb2.CreateApiKeyRequest(parent=m.name, request_id=rid()), metadata=admin)
    read_only = merchants.CreateApiKey(merchant_pb2.CreateApiKeyRequest(
        parent=m.name, request_id=rid(), api_key=merchant_pb2.ApiKey(read_only=True)), metadata=admin)
    trade = trade_pb2_grpc.TradeServiceStub(channel)

    def create(amount: int) -> trade_pb2.Payment:
        return trade.CreatePayment(trade_pb2.CreatePaymentRequest(
            parent=m.name, request_id=rid(), payment=trade_pb2.Payment(
                merchant_order_no=rid(), subject="fuzz", amount=common_pb2.Money(currency_code="CNY",
                                                                                  amount_minor=amount))),
            metadata=admin).payment
    payment, paid = create(500), create(700)
    paid = trade.ConfirmPayment(trade_pb2.ConfirmPaymentRequest(name=paid.name, request_id=rid(),
                                                                payment_method=trade_pb2.PaymentMethod(
        type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC,
        card=trade_pb2.CardDetails(number="4242424242424242", exp_month=12, exp_year=2040, cvc="123"))),
        metadata=admin).payment
    store = CredentialStore(Database(server.env["PAYHUB_DATABASE_URL"], pool_size=1))
    principals: dict[str, Any] = {
        "none": (), "bad-token": (("authorization", "Bearer nope"),), "admin": admin,
        "merchant-key": (("authorization", f"Bearer {full.secret}"),),
        "read-only-key": (("authorization", f"Bearer {read_only.secret}"),)}
    for role in (Role.OPERATIONS, Role.FINANCE, Role.BUSINESS):
        principals[role.value] = (("authorization", f"Bearer {store.create_staff_token({role}, 'fuzz').secret}"),)
    merchant_id = m.name.rsplit("/", 1)[1]
    names = [m.name, "merchants/-", payment.name, paid.name, f"{paid.name}/refunds/ref_nope", merchant_id,
             payment.name.rsplit("/", 1)[1], "channels/sandbox", "sandbox", "merchants/mer_other",
             *(a.id for a in paid.attempts), full.api_key.name]
    return principals, names


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with new_postgres_database() as url:
        server = start_server(tmp_path_factory.mktemp("fuzz"), database_url=url,
                              extra_env={"PAYHUB_BACKGROUND_WORKERS": "false"})
        channel = server.channel()
        try:
            principals, names = _seed(server, channel)
            yield World(server, channel, _enumerate_rpcs(channel), principals, names,
                        url.replace("postgresql+psycopg://", "postgresql://", 1))
        finally:
            channel.close()
            server.stop()


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """A digest of every table's contents."""
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1").fetchall()]
    query = " UNION ALL ".join(
        f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{t}\" x" for t in tables)
    return dict(conn.execute(query).fetchall())  # type: ignore[arg-type]


def invoke(world: World, rpc: Rpc, body: bytes, principal: str) -> tuple[grpc.StatusCode, str]:
    metadata = world.principals[principal]
    try:
        if rpc.streaming:
            stream: Any = world.channel.unary_stream(rpc.path)
            call: Any = stream(body, metadata=metadata, timeout=STREAM_SECONDS)
            for _ in call:
                break
            call.cancel()
        else:
            unary: Any = world.channel.unary_unary(rpc.path)
            unary(body, metadata=metadata, timeout=CALL_SECONDS)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        error: Any = exc
        code: grpc.StatusCode = error.code()
        if rpc.streaming and code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return grpc.StatusCode.OK, "an open stream"
        return code, str(error.details())


def check_call(world: World, conn: psycopg.Connection[Any], rpc: Rpc, body: bytes, principal: str) -> None:
    before = snapshot(conn)
    code, details = invoke(world, rpc, body, principal)
    assert code not in NEVER, f"{rpc.path} as {principal} answered {code.name}: {details}"
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{rpc.path} as {principal} did not answer (hang)"
    if code in REJECTED:
        after = snapshot(conn)
        changed = sorted(t for t in after if after[t] != before.get(t))
        assert changed == [], f"{rpc.path} as {principal} answered {code.name} but changed {changed}"


# --- requests -------------------------------------------------------------------------------------

JUNK_STRINGS = ["", "a\x00b", "\x00", "x" * 5000, "merchants/../x", "merchants/", "💳", "-", " ", "%s%n"]
INT_EDGES = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
             FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
             FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
             FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
             FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}
BAD_SECONDS = [253402300800, -62135596801, 2**62]


class Drawer:
    """Draws field values: plausible ones (real resource names, valid enums and times) so that most
    requests get past the contract's checks into the services, and, at the request's junk rate,
    malformed ones."""

    def __init__(self, draw: Any, names: list[str]) -> None:
        self.draw, self.names = draw, names
        self.ids = [n.rsplit("/", 1)[-1] for n in names]
        self.junk_percent = draw(st.sampled_from([0, 0, 0, 5, 30]))

    def junk(self) -> bool:
        return bool(self.junk_percent) and self.draw(st.integers(0, 99)) < self.junk_percent

    def string(self, field: FieldDescriptor) -> str:
        if self.junk():
            return str(self.draw(st.one_of(st.sampled_from(JUNK_STRINGS), st.text(max_size=12))))
        name = field.name
        if name == "request_id":
            return rid()
        if name in ("parent", "name", "merchant", "payment", "owner") or name.endswith("_name"):
            return str(self.draw(st.sampled_from(self.names)))
        if name.endswith("_id") or name == "attempt":
            return str(self.draw(st.sampled_from(self.ids)))
        if name == "currency_code":
            return str(self.draw(st.sampled_from(["CNY", "CNY", "USD", "JPY", "EUR"])))
        if name in ("number", "card_number"):
            return str(self.draw(st.sampled_from(["4242424242424242", "4000000000000002", "4000000000000119"])))
        return str(self.draw(st.one_of(
            st.sampled_from(self.names), st.sampled_from(["CNY", "USD", "JPY", "4242424242424242", "123",
                                                          "1.2.3.4", "https://example.com/x", "sandbox"]),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12))))

    def scalar(self, field: FieldDescriptor) -> Any:
        kind, draw = field.type, self.draw
        if kind == FieldDescriptor.TYPE_STRING:
            return self.string(field)
        if kind == FieldDescriptor.TYPE_BYTES:
            return draw(st.binary(max_size=32)) if not self.junk() else b"\x00" * 70000
        if kind == FieldDescriptor.TYPE_BOOL:
            return draw(st.booleans())
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return draw(st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64))
        if kind == FieldDescriptor.TYPE_ENUM:
            enum_type: Any = field.enum_type
            return draw(st.sampled_from([999, -1])) if self.junk() else \
                draw(st.sampled_from([v.number for v in enum_type.values]))
        low, high = INT_EDGES[kind]
        if self.junk():
            return draw(st.one_of(st.sampled_from([low, high]), st.integers(low, high)))
        return draw(st.integers(max(low, -2), 5000))

    def time(self, message: Any) -> None:
        if self.junk():
            message.seconds = self.draw(st.sampled_from(BAD_SECONDS))
            message.nanos = self.draw(st.integers(-2 * 10**9, 2 * 10**9))
        else:
            message.seconds = self.draw(st.integers(0, 86400 * 60)) + (
                1_790_000_000 if message.DESCRIPTOR.name == "Timestamp" else 0)

    def fill(self, message: Message, depth: int = 0) -> None:
        descriptor: Any = message.DESCRIPTOR
        if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            self.time(message)
            return
        for field in descriptor.fields:
            if not self.draw(st.booleans()):
                continue
            target: Any = field.message_type
            if target is not None and target.GetOptions().map_entry:
                container: Any = getattr(message, field.name)
                value_field = target.fields_by_name["value"]
                for _ in range(self.draw(st.integers(0, 3))):
                    key = self.scalar(target.fields_by_name["key"])
                    if value_field.message_type is None:
                        container[key] = self.scalar(value_field)
                    elif depth < 3:
                        self.fill(container[key], depth + 1)
            elif field.is_repeated:
                container = getattr(message, field.name)
                for _ in range(self.draw(st.integers(0, 2))):
                    if target is None:
                        container.append(self.scalar(field))
                    elif depth < 3:
                        self.fill(container.add(), depth + 1)
            elif target is not None:
                if depth < 3:
                    sub = getattr(message, field.name)
                    sub.SetInParent()
                    self.fill(sub, depth + 1)
            else:
                setattr(message, field.name, self.scalar(field))


def fill_all(message: Message, kind: str, depth: int = 0) -> None:
    """Every field of the request (and of nested messages, 2 deep) malformed in one way."""
    descriptor: Any = message.DESCRIPTOR
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        message.seconds = 253402300800 if kind == "range" else 1  # type: ignore[attr-defined]
        message.nanos = -1 if kind == "range" else 0  # type: ignore[attr-defined]
        return
    strings = {"nul": "bad\x00value", "huge": "x" * 5000, "range": "merchants/-", "enum": "a"}[kind]
    for field in descriptor.fields:
        target: Any = field.message_type
        if target is not None and target.GetOptions().map_entry:
            if target.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING:
                getattr(message, field.name).update({f"k{i}": strings for i in range(60 if kind == "huge" else 1)})
        elif target is not None:
            if depth < 2:
                sub = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
                sub.SetInParent()
                fill_all(sub, kind, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = strings
            (getattr(message, field.name).append if field.is_repeated else
             lambda v, f=field.name: setattr(message, f, v))(value)  # type: ignore[misc]
        elif field.type == FieldDescriptor.TYPE_ENUM and kind == "enum":
            (getattr(message, field.name).append if field.is_repeated else
             lambda v, f=field.name: setattr(message, f, v))(999)  # type: ignore[misc]


# --- the tests ------------------------------------------------------------------------------------

def test_the_server_publishes_every_payhub_rpc(world: World) -> None:
    paths = {r.path for r in world.rpcs}
    assert len(paths) > 80
    assert "/payhub.trade.v1.TradeService/CreatePayment" in paths and "/grpc.health.v1.Health/Check" in paths


@pytest.mark.parametrize("kind", ["nul", "huge", "range", "enum", "garbage"])
def test_every_rpc_refuses_each_kind_of_malformed_request(world: World, kind: str) -> None:
    with psycopg.connect(world.pg_url, autocommit=True) as conn:
        for rpc in world.rpcs:
            if kind == "garbage":
                body = b"\xff\xff\xff\xff\x0f"
            else:
                request = rpc.request_class()
                fill_all(request, kind)
                body = request.SerializeToString()
            for principal in ("admin", "merchant-key"):
                check_call(world, conn, rpc, body, principal)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)
@given(data=st.data())
def test_random_requests_as_any_principal(world: World, data: Any) -> None:
    rpc = data.draw(st.sampled_from(world.rpcs), label="rpc")
    principal = data.draw(st.one_of(st.just("admin"), st.just("merchant-key"),
                                    st.sampled_from(sorted(world.principals))), label="principal")
    if data.draw(st.integers(0, 19), label="garbage?") == 7:  # not 0: hypothesis favours it
        body = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
    else:
        request = rpc.request_class()
        Drawer(data.draw, world.names).fill(request)
        body = request.SerializeToString()
    with psycopg.connect(world.pg_url, autocommit=True) as conn:
        check_call(world, conn, rpc, body, principal)


def test_a_huge_bad_value_still_answers_invalid_argument_to_a_default_client(world: World) -> None:
    """The audit's reproducer: a 5,000-character currency in a split made the trailer exceed the
    client's 8 KB metadata limit (RESOURCE_EXHAUSTED instead of INVALID_ARGUMENT)."""
    merchant = world.names[0]
    payment = trade_pb2.Payment(merchant_order_no=rid(), subject="s", amount=common_pb2.Money(
        currency_code="CNY", amount_minor=100), splits=[trade_pb2.SplitInstruction(
            receiver="r" * 5000, amount=common_pb2.Money(currency_code="C" * 5000, amount_minor=1))] * 40)
    with pytest.raises(grpc.RpcError) as caught:
        trade_pb2_grpc.TradeServiceStub(world.channel).CreatePayment(trade_pb2.CreatePaymentRequest(
            parent=merchant, request_id=rid(), payment=payment), metadata=world.principals["admin"], timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "more violations not shown" in str(caught.value.details())  # type: ignore[attr-defined]


def _code_and_fields(world: World, path: str, body: bytes) -> tuple[grpc.StatusCode, list[str]]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    try:
        world.channel.unary_unary(path)(body, metadata=world.principals["admin"], timeout=30)  # type: ignore[arg-type]
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        fields = []
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
        return exc.code(), fields  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, []


def test_the_audits_reproducers_answer_invalid_argument_naming_the_field(world: World) -> None:
    create = "/payhub.trade.v1.TradeService/CreatePayment"
    assert _code_and_fields(world, create, b"\xff\xff\xff\xff\x0f") == (grpc.StatusCode.INVALID_ARGUMENT, ["request"])
    request = trade_pb2.CreatePaymentRequest(parent=world.names[0], request_id=rid(), payment=trade_pb2.Payment(
        merchant_order_no="abc\x00def", subject="s", amount=common_pb2.Money(currency_code="CNY", amount_minor=1)))
    assert _code_and_fields(world, create, request.SerializeToString()) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["payment.merchant_order_no"])
    listing = trade_pb2.ListPaymentsRequest(parent="merchants/-", start_time=Timestamp(seconds=253402300800))
    assert _code_and_fields(world, "/payhub.trade.v1.TradeService/ListPayments", listing.SerializeToString()) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["start_time"])
    confirm = trade_pb2.ConfirmPaymentRequest(name=world.names[2], request_id=rid(), preferred_channel="c" * 40,
                                              payment_method=trade_pb2.PaymentMethod(
                                                  type=common_pb2.PAYMENT_METHOD_TYPE_CARD,
                                                  client_type=common_pb2.CLIENT_TYPE_PC))
    assert _code_and_fields(world, "/payhub.trade.v1.TradeService/ConfirmPayment", confirm.SerializeToString()) == (
        grpc.StatusCode.INVALID_ARGUMENT, ["preferred_channel"])
