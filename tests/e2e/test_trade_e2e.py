"""TradeService end to end over gRPC against a real `payhub serve` (sandbox channel)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e
CNY = "CNY"


def rid() -> str:
    return secrets.token_hex(8)


class Api:
    def __init__(self, server: RunningServer) -> None:
        self.channel = server.channel()
        admin = server.admin_metadata()
        merchants = merchant_pb2_grpc.MerchantServiceStub(self.channel)
        m = merchants.CreateMerchant(merchant_pb2.CreateMerchantRequest(merchant=merchant_pb2.Merchant(
            legal_name="E2E Shop Ltd", display_name="E2E Shop",
            contact=merchant_pb2.Contact(name="Ann", email="ann@example.com"), business_category="retail",
            country_code="CN", settlement_account=merchant_pb2.SettlementAccount(
                account_name="E2E Shop Ltd", bank_name="Bank", account_number="6222020000000000")),
            request_id=rid()), metadata=admin).merchant
        merchants.ApproveMerchant(merchant_pb2.ApproveMerchantRequest(name=m.name, request_id=rid()), metadata=admin)
        config = merchant_pb2.ChannelConfig(
            channel="sandbox", enabled=True, priority=1,
            payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD, common_pb2.PAYMENT_METHOD_TYPE_ALIPAY])
        merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(parent=m.name, channel_config=config,
                                                                        request_id=rid()), metadata=admin)
        key = merchants.CreateApiKey(merchant_pb2.CreateApiKeyRequest(parent=m.name, request_id=rid()),
                                     metadata=admin)
        self.merchant = m.name
        self.md = (("authorization", f"Bearer {key.secret}"),)
        self.trade = trade_pb2_grpc.TradeServiceStub(self.channel)

    def create(self, amount: int = 1000, **kw: object) -> pb.Payment:
        payment = pb.Payment(merchant_order_no=rid(), amount=common_pb2.Money(currency_code=CNY, amount_minor=amount),
                             subject="E2E order", **kw)  # type: ignore[arg-type]
        return self.trade.CreatePayment(pb.CreatePaymentRequest(parent=self.merchant, payment=payment,
                                                                request_id=rid()), metadata=self.md).payment

    def confirm(self, name: str, number: str = "4242424242424242", request_id: str | None = None) -> pb.Payment:
        method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC,
                                  card=pb.CardDetails(number=number, exp_month=12, exp_year=datetime.now().year + 2,
                                                      cvc="123"))
        return self.trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=name, payment_method=method,
                                                                  request_id=request_id or rid()),
                                         metadata=self.md).payment

    def get(self, name: str) -> pb.Payment:
        return self.trade.GetPayment(pb.GetPaymentRequest(name=name), metadata=self.md).payment

    def wait_state(self, name: str, state: int, timeout: float = 30) -> pb.Payment:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            payment = self.get(name)
            if payment.state == state:
                return payment
            time.sleep(0.2)
        raise AssertionError(f"{name} stayed {pb.PaymentState.Name(self.get(name).state)}")


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.channel.close()


@pytest.mark.parametrize(("number", "state", "code"), [
    ("4242424242424242", pb.PAYMENT_STATE_SUCCEEDED, ""),
    ("4000000000000002", pb.PAYMENT_STATE_FAILED, "card_declined"),
    ("4000000000009995", pb.PAYMENT_STATE_FAILED, "insufficient_funds"),
    ("4000000000000069", pb.PAYMENT_STATE_FAILED, "expired_card"),
    ("4000000000003220", pb.PAYMENT_STATE_REQUIRES_ACTION, ""),
])
def test_magic_cards(api: Api, number: str, state: int, code: str) -> None:
    payment = api.confirm(api.create().name, number)
    assert payment.state == state
    assert payment.failure.code == code
    assert payment.payment_method.card.last4 == number[-4:]
    assert number not in str(payment)
    if state == pb.PAYMENT_STATE_REQUIRES_ACTION:
        assert payment.next_action.HasField("otp")


def test_unknown_then_succeeds_through_requery(api: Api) -> None:
    payment = api.confirm(api.create().name, "4000000000000119")
    assert payment.state == pb.PAYMENT_STATE_PROCESSING
    # The first re-query is scheduled after the first-call grace period; a job picks it up.
    assert api.get(payment.name).state in (pb.PAYMENT_STATE_PROCESSING, pb.PAYMENT_STATE_SUCCEEDED)


def test_capture_void_and_partial_refunds(api: Api) -> None:
    auth = api.confirm(api.create(capture_method=pb.CAPTURE_METHOD_MANUAL).name)
    assert auth.state == pb.PAYMENT_STATE_AUTHORIZED
    captured = api.trade.CapturePayment(pb.CapturePaymentRequest(
        name=auth.name, amount=common_pb2.Money(currency_code=CNY, amount_minor=700), request_id=rid()),
        metadata=api.md).payment
    assert captured.state == pb.PAYMENT_STATE_SUCCEEDED and captured.amount_captured.amount_minor == 700
    other = api.confirm(api.create(capture_method=pb.CAPTURE_METHOD_MANUAL).name)
    voided = api.trade.VoidPayment(pb.VoidPaymentRequest(name=other.name, request_id=rid()), metadata=api.md).payment
    assert voided.state == pb.PAYMENT_STATE_CLOSED and voided.close_reason == pb.CLOSE_REASON_VOIDED
    for i, amount in enumerate((300, 400)):
        refund = api.trade.CreateRefund(pb.CreateRefundRequest(parent=captured.name, refund=pb.Refund(
            amount=common_pb2.Money(currency_code=CNY, amount_minor=amount), merchant_refund_no=f"rf-{i}"),
            request_id=rid()), metadata=api.md).refund
        assert refund.state in (pb.REFUND_STATE_SUCCEEDED, pb.REFUND_STATE_PENDING)
    with pytest.raises(grpc.RpcError) as err:
        api.trade.CreateRefund(pb.CreateRefundRequest(parent=captured.name, refund=pb.Refund(
            amount=common_pb2.Money(currency_code=CNY, amount_minor=1), merchant_refund_no="rf-x"),
            request_id=rid()), metadata=api.md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = api.trade.ListRefunds(pb.ListRefundsRequest(parent=captured.name), metadata=api.md).refunds
    assert len(listed) == 2


def test_expired_payment_is_closed_by_the_job(api: Api) -> None:
    expire = Timestamp()
    expire.FromDatetime(datetime.now(UTC) + timedelta(seconds=2))
    payment = api.create(expire_time=expire)
    closed = api.wait_state(payment.name, pb.PAYMENT_STATE_CLOSED, timeout=30)
    assert closed.close_reason == pb.CLOSE_REASON_EXPIRED


def test_idempotency_and_update(api: Api) -> None:
    request = pb.CreatePaymentRequest(parent=api.merchant, request_id=rid(), payment=pb.Payment(
        merchant_order_no=rid(), amount=common_pb2.Money(currency_code=CNY, amount_minor=500), subject="x"))
    first = api.trade.CreatePayment(request, metadata=api.md).payment
    assert api.trade.CreatePayment(request, metadata=api.md).payment == first
    request.payment.subject = "changed"
    with pytest.raises(grpc.RpcError) as err:
        api.trade.CreatePayment(request, metadata=api.md)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = api.trade.UpdatePayment(pb.UpdatePaymentRequest(
        payment=pb.Payment(name=first.name, subject="new subject"), update_mask=FieldMask(paths=["subject"]),
        request_id=rid()), metadata=api.md).payment
    assert updated.subject == "new subject"
    confirm_id = rid()
    assert api.confirm(first.name, request_id=confirm_id) == api.confirm(first.name, request_id=confirm_id)


def test_watch_events_resumes_from_a_sequence(api: Api) -> None:
    payment = api.confirm(api.create().name)

    def collect(after: int, want: int) -> list[pb.Event]:
        events: list[pb.Event] = []
        stream = api.trade.WatchEvents(pb.WatchEventsRequest(parent=api.merchant, after_sequence=after),
                                       metadata=api.md, timeout=20)
        for message in stream:
            events.append(message.event)
            if len(events) >= want:
                stream.cancel()
                break
        return events

    everything = collect(0, 3)
    assert all(e.merchant == api.merchant for e in everything)
    resumed = collect(everything[0].sequence, 2)
    assert [e.sequence for e in resumed] == [e.sequence for e in everything[1:3]]
    assert payment.name  # its events carry a snapshot of the payment, never a card number
    assert all("4242424242424242" not in e.payload_json for e in everything)


def test_watch_streams_past_the_cap_are_refused_and_unary_calls_still_served(tmp_path: Path) -> None:
    # With 2 handler threads a server takes 1 WatchEvents stream; the next is refused instead of
    # taking the thread every other call needs.
    server = start_server(tmp_path, extra_env={"PAYHUB_THREADS": "2"})
    try:
        api = Api(server)
        first = api.trade.WatchEvents(pb.WatchEventsRequest(parent=api.merchant), metadata=api.md, timeout=30)
        api.confirm(api.create().name)
        assert next(first).event.sequence > 0  # the stream is open and holds its thread

        with pytest.raises(grpc.RpcError) as refused:
            next(api.trade.WatchEvents(pb.WatchEventsRequest(parent=api.merchant), metadata=api.md, timeout=10))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert api.create().name  # unary calls still find a thread

        first.cancel()
        deadline = time.monotonic() + 10  # the server notices the cancelled stream within a poll
        while True:
            try:
                again = api.trade.WatchEvents(pb.WatchEventsRequest(parent=api.merchant), metadata=api.md, timeout=10)
                assert next(again).event.sequence > 0
                again.cancel()
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)
        api.channel.close()
    finally:
        server.stop()
