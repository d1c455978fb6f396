"""CashierService end to end over gRPC against a real `payhub serve` (sandbox channel, risk in
process): a merchant creates a session, the consumer (no credentials: the session name is the
capability) lists methods, pays by card, fails with a declined card and pays by QR code, answers a
risk challenge, meets an expired session; another merchant sees nothing; bad input names fields."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from payhub.cashier.v1 import cashier_pb2 as pb
from payhub.cashier.v1 import cashier_pb2_grpc
from payhub.channel.v1 import channel_pb2, channel_pb2_grpc
from payhub.common.v1 import common_pb2
from payhub.risk.v1 import risk_pb2 as rpb
from payhub.risk.v1 import risk_pb2_grpc

from tests.conftest import RunningServer
from tests.e2e.test_merchant_e2e import error_of
from tests.e2e.test_risk_flow_e2e import add_rule, cny
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e
CARD, ALIPAY = common_pb2.PAYMENT_METHOD_TYPE_CARD, common_pb2.PAYMENT_METHOD_TYPE_ALIPAY
OTP_AMOUNT = 3000  # this module's merchant is challenged above CNY 20.00


class Shop:
    """The merchant (API key) and the consumer (no metadata) talking to one server."""

    def __init__(self, server: RunningServer) -> None:
        self.api = Api(server)
        self.cashier = cashier_pb2_grpc.CashierServiceStub(self.api.channel)
        self.md = self.api.md

    def session(self, amount: int = 1000, client_type: common_pb2.ClientType.ValueType = common_pb2.CLIENT_TYPE_PC,
                **kw: object) -> pb.CheckoutSession:
        payment = self.api.create(amount)
        return self.cashier.CreateCheckoutSession(pb.CreateCheckoutSessionRequest(
            checkout_session=pb.CheckoutSession(payment=payment.name, client_type=client_type,
                                                return_url="https://shop.example.com/done", customer_id="c-1",
                                                **kw),  # type: ignore[arg-type]
            request_id=rid()), metadata=self.md).checkout_session

    def submit(self, name: str, method: common_pb2.PaymentMethodType.ValueType = CARD, number: str = "4242424242424242",
               **kw: object) -> pb.SubmitPaymentMethodResponse:
        card = pb.CardDetails(number=number, expiry_month=12, expiry_year=datetime.now().year + 2,
                              security_code="123") if method == CARD else None
        return self.cashier.SubmitPaymentMethod(pb.SubmitPaymentMethodRequest(
            checkout_session=name, payment_method=method, card=card, request_id=rid(),
            consumer=pb.ConsumerContext(ip_address="203.0.113.7", user_agent="Mozilla/5.0")),
            **kw)  # type: ignore[arg-type]

    def get(self, name: str) -> pb.CheckoutSession:
        return self.cashier.GetCheckoutSession(pb.GetCheckoutSessionRequest(name=name)).checkout_session

    def wait_state(self, name: str, state: int, timeout: float = 30) -> pb.CheckoutSession:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            session = self.get(name)
            if session.state == state:
                return session
            time.sleep(0.2)
        raise AssertionError(f"{name} stayed {pb.CheckoutSessionState.Name(self.get(name).state)}")


@pytest.fixture(scope="module")
def shop(server: RunningServer) -> Iterator[Shop]:
    s = Shop(server)
    add_rule(server, s.api.merchant, rpb.RISK_ACTION_CHALLENGE, amount_limit=rpb.AmountLimit(max_amount=cny(2000)))
    yield s
    s.api.channel.close()


def test_a_session_lists_methods_with_the_recommended_one_marked(shop: Shop) -> None:
    session = shop.session()
    assert session.state == pb.CHECKOUT_SESSION_STATE_OPEN and session.customer_id == "c-1"
    sid = session.name.removeprefix("checkoutSessions/")
    assert len(sid) >= 32 and session.hosted_url.endswith(f"/cashier/{sid}")
    assert session.merchant_display_name == "E2E Shop" and session.amount.amount_minor == 1000
    anonymous = shop.get(session.name)
    assert anonymous.customer_id == "" and anonymous.state == pb.CHECKOUT_SESSION_STATE_OPEN
    methods = shop.cashier.ListPaymentMethods(pb.ListPaymentMethodsRequest(checkout_session=session.name))
    assert [m.payment_method for m in methods.payment_methods] == [ALIPAY, CARD]
    first = methods.payment_methods[0]
    assert first.recommended and first.recommendation_reason == pb.RECOMMENDATION_REASON_MERCHANT_PREFERENCE
    assert first.display_name == "支付宝" and not methods.payment_methods[1].recommended
    one = shop.cashier.ListPaymentMethods(pb.ListPaymentMethodsRequest(checkout_session=session.name, page_size=1))
    rest = shop.cashier.ListPaymentMethods(pb.ListPaymentMethodsRequest(
        checkout_session=session.name, page_size=1, page_token=one.next_page_token))
    assert [m.payment_method for m in (*one.payment_methods, *rest.payment_methods)] == [ALIPAY, CARD]
    assert rest.next_page_token == ""
    # The icons and the page behind hosted_url are served by the same process's HTTP edge.
    assert first.icon_url.endswith("/cashier/static/icons/alipay.svg")
    icon = httpx.get(first.icon_url, timeout=10)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert httpx.get(session.hosted_url, timeout=10).status_code == 200


def test_a_sandbox_card_pays_and_ends_the_session(shop: Shop) -> None:
    session = shop.session()
    reply = shop.submit(session.name)
    assert reply.next_step.result.status == pb.PAYMENT_RESULT_STATUS_SUCCEEDED
    assert reply.next_step.result.return_url == "https://shop.example.com/done"
    ended = shop.get(session.name)
    assert ended.state == pb.CHECKOUT_SESSION_STATE_SUCCEEDED and ended.HasField("end_time")
    assert shop.api.get(session.payment).state == 5  # PAYMENT_STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as err:
        shop.submit(session.name)
    code, details = error_of(err)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details["metadata"] == {"state": "SUCCEEDED"}
    # The next session of this customer recommends the card used last time.
    again = shop.cashier.ListPaymentMethods(pb.ListPaymentMethodsRequest(
        checkout_session=shop.session().name)).payment_methods[0]
    assert again.payment_method == CARD and again.recommendation_reason == pb.RECOMMENDATION_REASON_LAST_USED


def test_a_declined_card_then_a_qr_code_paid_at_the_channel(server: RunningServer, shop: Shop) -> None:
    session = shop.session()
    declined = shop.submit(session.name, number="4000000000000002")
    assert declined.next_step.result.status == pb.PAYMENT_RESULT_STATUS_FAILED
    assert declined.next_step.result.can_retry and declined.next_step.result.failure_code == "card_declined"
    assert declined.checkout_session.state == pb.CHECKOUT_SESSION_STATE_OPEN
    qr = shop.submit(session.name, ALIPAY).next_step.qr_code
    assert qr.content.startswith("https://sandbox.payhub.local/qr/")
    assert shop.get(session.name).state == pb.CHECKOUT_SESSION_STATE_AWAITING_ACTION
    channel_pb2_grpc.ChannelRouterServiceStub(shop.api.channel).CompleteSandboxAction(
        channel_pb2.CompleteSandboxActionRequest(attempt_id=qr.content.rsplit("/", 1)[1],
                                                 action=channel_pb2.SANDBOX_ACTION_APPROVE, request_id=rid()),
        metadata=shop.md)
    paid = shop.wait_state(session.name, pb.CHECKOUT_SESSION_STATE_SUCCEEDED)
    assert paid.selected_payment_method == ALIPAY and paid.last_failure.failure_code == "card_declined"


def test_a_risk_challenge_is_passed_with_the_code(server: RunningServer, shop: Shop) -> None:
    session = shop.session(OTP_AMOUNT)
    otp = shop.submit(session.name).next_step.otp_challenge
    assert otp.challenge.startswith("riskChallenges/") and otp.attempts_remaining == 5
    assert otp.kind == pb.OTP_CHALLENGE_KIND_RISK
    with server.channel() as channel:
        code = risk_pb2_grpc.RiskServiceStub(channel).GetSandboxChallengeCode(
            rpb.GetSandboxChallengeCodeRequest(name=otp.challenge), metadata=server.admin_metadata()).code
    wrong = shop.cashier.VerifyCheckoutChallenge(pb.VerifyCheckoutChallengeRequest(
        checkout_session=session.name, code="000000" if code != "000000" else "111111", request_id=rid()))
    assert wrong.next_step.otp_challenge.previous_code_incorrect
    assert wrong.next_step.otp_challenge.attempts_remaining == 4
    right = shop.cashier.VerifyCheckoutChallenge(pb.VerifyCheckoutChallengeRequest(
        checkout_session=session.name, code=code, request_id=rid()))
    assert right.next_step.result.status == pb.PAYMENT_RESULT_STATUS_SUCCEEDED
    assert right.checkout_session.state == pb.CHECKOUT_SESSION_STATE_SUCCEEDED
    assert code not in server.logs()


def test_the_banks_own_code_is_passed_through_the_cashier(shop: Shop) -> None:
    """The sandbox card 4000000000003220 asks for its bank's code (123456): a channel challenge."""
    session = shop.session()
    otp = shop.submit(session.name, number="4000000000003220").next_step.otp_challenge
    assert otp.kind == pb.OTP_CHALLENGE_KIND_CHANNEL and otp.challenge == ""
    assert shop.get(session.name).next_step.otp_challenge.kind == pb.OTP_CHALLENGE_KIND_CHANNEL
    right = shop.cashier.VerifyCheckoutChallenge(pb.VerifyCheckoutChallengeRequest(
        checkout_session=session.name, code="123456", request_id=rid()))
    assert right.next_step.result.status == pb.PAYMENT_RESULT_STATUS_SUCCEEDED
    assert right.checkout_session.state == pb.CHECKOUT_SESSION_STATE_SUCCEEDED
    again = shop.session()
    shop.submit(again.name, number="4000000000003220")
    wrong = shop.cashier.VerifyCheckoutChallenge(pb.VerifyCheckoutChallengeRequest(
        checkout_session=again.name, code="654321", request_id=rid()))
    assert wrong.next_step.result.status == pb.PAYMENT_RESULT_STATUS_FAILED and wrong.next_step.result.can_retry
    assert wrong.checkout_session.state == pb.CHECKOUT_SESSION_STATE_OPEN


def test_an_expired_session_refuses_payment(shop: Shop) -> None:
    soon = Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=2))
    session = shop.session(expire_time=soon)
    shop.wait_state(session.name, pb.CHECKOUT_SESSION_STATE_EXPIRED)
    with pytest.raises(grpc.RpcError) as err:
        shop.submit(session.name)
    code, details = error_of(err)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details["metadata"] == {"state": "EXPIRED"}


def test_another_merchant_gets_not_found(server: RunningServer, shop: Shop) -> None:
    session = shop.session()
    other = Shop(server)
    for call in (lambda: other.cashier.GetCheckoutSession(pb.GetCheckoutSessionRequest(name=session.name),
                                                          metadata=other.md),
                 lambda: other.submit(session.name, metadata=other.md),
                 lambda: other.cashier.CreateCheckoutSession(pb.CreateCheckoutSessionRequest(
                     checkout_session=pb.CheckoutSession(payment=session.payment, client_type=common_pb2.CLIENT_TYPE_PC,
                                                         return_url="https://x.example.com/"), request_id=rid()),
                     metadata=other.md),
                 lambda: other.cashier.GetCashierSettings(pb.GetCashierSettingsRequest(
                     name=f"{shop.api.merchant}/cashierSettings"), metadata=other.md)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    other.api.channel.close()


def test_credentials_are_needed_except_for_the_session_holder(shop: Shop) -> None:
    session = shop.session()
    with pytest.raises(grpc.RpcError) as err:
        shop.cashier.CreateCheckoutSession(pb.CreateCheckoutSessionRequest(
            checkout_session=pb.CheckoutSession(payment=session.payment, client_type=common_pb2.CLIENT_TYPE_PC,
                                                return_url="https://x.example.com/"), request_id=rid()))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        shop.cashier.GetCheckoutSession(pb.GetCheckoutSessionRequest(name=session.name),
                                        metadata=(("authorization", "Bearer nope"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_input_is_invalid_argument_naming_the_field(shop: Shop) -> None:
    with pytest.raises(grpc.RpcError) as err:
        shop.cashier.CreateCheckoutSession(pb.CreateCheckoutSessionRequest(
            checkout_session=pb.CheckoutSession(client_type=common_pb2.CLIENT_TYPE_JSAPI,
                                                return_url="http://shop.example.com/"), request_id=rid()),
            metadata=shop.md)
    code, details = error_of(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details["fields"]) == {"checkout_session.payment", "checkout_session.client_type",  # type: ignore[call-overload]
                                      "checkout_session.return_url"}
    session = shop.session()
    with pytest.raises(grpc.RpcError) as err:
        shop.submit(session.name, number="4242424242424241")
    code, details = error_of(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details["fields"] == ["card.number"]
    with pytest.raises(grpc.RpcError) as err:
        shop.cashier.UpdateCashierSettings(pb.UpdateCashierSettingsRequest(
            cashier_settings=pb.CashierSettings(name=f"{shop.api.merchant}/cashierSettings", theme_color="red"),
            update_mask=FieldMask(paths=["theme_color"]), request_id=rid()), metadata=shop.md)
    code, details = error_of(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details["fields"] == ["cashier_settings.theme_color"]
    assert shop.get(session.name).state == pb.CHECKOUT_SESSION_STATE_OPEN


def test_settings_change_the_page(shop: Shop) -> None:
    name = f"{shop.api.merchant}/cashierSettings"
    updated = shop.cashier.UpdateCashierSettings(pb.UpdateCashierSettingsRequest(
        cashier_settings=pb.CashierSettings(name=name, display_name="E2E 商店", theme_color="#1677FF",
                                            frame_ancestors=["https://shop.example.com"]),
        update_mask=FieldMask(paths=["display_name", "theme_color", "frame_ancestors"]), request_id=rid()),
        metadata=shop.md).cashier_settings
    assert updated.theme_color == "#1677FF" and list(updated.frame_ancestors) == ["https://shop.example.com"]
    assert shop.cashier.GetCashierSettings(pb.GetCashierSettingsRequest(name=name),
                                           metadata=shop.md).cashier_settings == updated
    assert shop.session().merchant_display_name == "E2E 商店"


def test_the_consumer_turns_from_a_qr_code_to_a_card(shop: Shop) -> None:
    session = shop.session()
    assert shop.submit(session.name, ALIPAY).next_step.HasField("qr_code")
    paid = shop.submit(session.name)
    assert paid.next_step.result.status == pb.PAYMENT_RESULT_STATUS_SUCCEEDED
    assert paid.checkout_session.selected_payment_method == CARD
    attempts = shop.api.get(session.payment).attempts
    assert len(attempts) == 2 and attempts[0].failure.code == "closed"


def test_the_consumers_ip_country_and_the_cards_country_reach_risk(server: RunningServer) -> None:
    """SubmitPaymentMethod's consumer IP goes through trade's confirm to risk, which places it with its
    IP table (sandbox: 198.51.100.0/24 CN, 192.0.2.0/24 US); the card's country comes from its BIN (US)."""
    shop = Shop(server)  # its own merchant: the mismatch rule acts for it alone
    rule = add_rule(server, shop.api.merchant, rpb.RISK_ACTION_CHALLENGE, country_mismatch=rpb.CountryMismatch())

    def pay_from(ip: str) -> pb.SubmitPaymentMethodResponse:
        session = shop.session()
        card = pb.CardDetails(number="4242424242424242", expiry_month=12, expiry_year=datetime.now().year + 2,
                              security_code="123")
        return shop.cashier.SubmitPaymentMethod(pb.SubmitPaymentMethodRequest(
            checkout_session=session.name, payment_method=CARD, card=card, request_id=rid(),
            consumer=pb.ConsumerContext(ip_address=ip, user_agent="Mozilla/5.0", device_id="dev-e2e")))

    abroad = pay_from("198.51.100.7")
    assert abroad.next_step.otp_challenge.challenge.startswith("riskChallenges/")
    at_home = pay_from("192.0.2.10")
    assert at_home.next_step.result.status == pb.PAYMENT_RESULT_STATUS_SUCCEEDED
    with server.channel() as channel:
        events = risk_pb2_grpc.RiskServiceStub(channel).ListRiskEvents(
            rpb.ListRiskEventsRequest(rule=rule.name), metadata=server.admin_metadata()).risk_events
    [event] = events
    assert (event.context.ip_address, event.context.ip_country, event.context.card_country) == \
        ("198.51.100.7", "CN", "US")
    assert event.context.device_id == "dev-e2e"
    shop.api.channel.close()
