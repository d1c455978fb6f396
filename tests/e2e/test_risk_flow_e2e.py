"""Risk in the payment flow end to end over gRPC against real `payhub serve` processes: DENY,
CHALLENGE (OTP through VerifyChallenge with the merchant's key) and REVIEW (ReviewTransaction);
a customer limit holding under 20 concurrent payments on two servers sharing one PostgreSQL
database."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import grpc
import pytest
from payhub.common.v1 import common_pb2
from payhub.risk.v1 import risk_pb2 as rpb
from payhub.risk.v1 import risk_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import RunningServer, new_postgres_database, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


def cny(amount: int) -> common_pb2.Money:
    return common_pb2.Money(currency_code="CNY", amount_minor=amount)


def add_rule(server: RunningServer, merchant: str, action: int, **condition: object) -> rpb.RiskRule:
    with server.channel() as channel:
        rule = rpb.RiskRule(display_name=f"e2e {rid()}", action=action, enabled=True,  # type: ignore[arg-type]
                            scope=rpb.RiskRuleScope(merchant=merchant), **condition)  # type: ignore[arg-type]
        return risk_pb2_grpc.RiskServiceStub(channel).CreateRule(
            rpb.CreateRuleRequest(rule=rule, request_id=rid()), metadata=server.admin_metadata()).rule


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    add_rule(server, client.merchant, rpb.RISK_ACTION_CHALLENGE,
             amount_limit=rpb.AmountLimit(max_amount=cny(2000)))
    add_rule(server, client.merchant, rpb.RISK_ACTION_REVIEW, amount_limit=rpb.AmountLimit(max_amount=cny(5000)))
    yield client
    client.channel.close()


@pytest.fixture(scope="module")
def risk(server: RunningServer) -> Iterator[risk_pb2_grpc.RiskServiceStub]:
    with server.channel() as channel:
        yield risk_pb2_grpc.RiskServiceStub(channel)


def test_deny_over_grpc(server: RunningServer, api: Api, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    risk.AddBlocklistEntry(rpb.AddBlocklistEntryRequest(entry=rpb.BlocklistEntry(
        kind=rpb.BLOCKLIST_ENTRY_KIND_CUSTOMER, value="fraudster-1", merchant=api.merchant, reason="chargebacks"),
        request_id=rid()), metadata=server.admin_metadata())
    payment = api.confirm(api.create(customer=pb.Customer(id="fraudster-1")).name)
    assert payment.state == pb.PAYMENT_STATE_FAILED and payment.failure.code == "risk_declined"
    assert api.confirm(api.create(customer=pb.Customer(id="honest-1")).name).state == pb.PAYMENT_STATE_SUCCEEDED


def test_challenge_over_grpc(server: RunningServer, api: Api, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    payment = api.confirm(api.create(3000).name)
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION
    challenge = payment.next_action.otp.challenge_id
    assert challenge.startswith("riskChallenges/")
    code = risk.GetSandboxChallengeCode(rpb.GetSandboxChallengeCodeRequest(name=challenge),
                                        metadata=server.admin_metadata()).code
    with pytest.raises(grpc.RpcError) as err:  # the sandbox mailbox is not the merchant's to read
        risk.GetSandboxChallengeCode(rpb.GetSandboxChallengeCodeRequest(name=challenge), metadata=api.md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    wrong = risk.VerifyChallenge(rpb.VerifyChallengeRequest(name=challenge, code="000000" if code != "000000"
                                                            else "111111", request_id=rid()), metadata=api.md)
    assert not wrong.verified and wrong.challenge.attempts_remaining == 4
    right = risk.VerifyChallenge(rpb.VerifyChallengeRequest(name=challenge, code=code, request_id=rid()),
                                 metadata=api.md)
    assert right.verified and right.challenge.state == rpb.CHALLENGE_STATE_PASSED
    assert api.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED).amount_captured.amount_minor == 3000
    assert code not in server.logs()


def test_review_over_grpc(server: RunningServer, api: Api, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    payment = api.confirm(api.create(6000).name)
    assert payment.state == pb.PAYMENT_STATE_AUTHORIZED
    with pytest.raises(grpc.RpcError) as err:
        api.trade.CapturePayment(pb.CapturePaymentRequest(name=payment.name, request_id=rid()), metadata=api.md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    queue = risk.ListRiskEvents(rpb.ListRiskEventsRequest(review_state=rpb.REVIEW_STATE_PENDING,
                                                          transaction=payment.name), metadata=server.admin_metadata())
    (held,) = queue.risk_events
    assert held.decision.action == rpb.RISK_ACTION_REVIEW
    risk.ReviewTransaction(rpb.ReviewTransactionRequest(name=held.name, verdict=rpb.REVIEW_VERDICT_APPROVE,
                                                        request_id=rid()), metadata=server.admin_metadata())
    assert api.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED).amount_captured.amount_minor == 6000

    rejected = api.confirm(api.create(7000).name)
    (held,) = risk.ListRiskEvents(rpb.ListRiskEventsRequest(transaction=rejected.name),
                                  metadata=server.admin_metadata()).risk_events
    risk.ReviewTransaction(rpb.ReviewTransactionRequest(name=held.name, verdict=rpb.REVIEW_VERDICT_REJECT,
                                                        note="mule", request_id=rid()),
                           metadata=server.admin_metadata())
    assert api.wait_state(rejected.name, pb.PAYMENT_STATE_CLOSED).amount_captured.amount_minor == 0


def test_a_limit_holds_under_20_concurrent_payments_on_two_servers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shared = {"PAYHUB_ADMIN_TOKEN": f"admin-{rid()}", "PAYHUB_INTERNAL_TOKEN": f"internal-{rid()}",
              "PAYHUB_ENCRYPTION_KEYS": f"k1:{base64.b64encode(os.urandom(32)).decode()}"}
    with new_postgres_database() as url:
        a = start_server(tmp_path / "a", database_url=url, extra_env=shared)
        b = start_server(tmp_path / "b", database_url=url, extra_env=shared)
        try:
            api_a = Api(a)
            api_b = Api(a)
            api_b.channel = b.channel()
            api_b.merchant, api_b.md = api_a.merchant, api_a.md
            api_b.trade = trade_pb2_grpc.TradeServiceStub(api_b.channel)
            add_rule(a, api_a.merchant, rpb.RISK_ACTION_DENY, cumulative_limit=rpb.CumulativeLimit(
                subject=rpb.COUNTER_SUBJECT_CUSTOMER, period=rpb.COUNTER_PERIOD_DAY, max_amount=cny(5000)))
            names = [api_a.create(1000, customer=pb.Customer(id="big-spender")).name for _ in range(20)]
            barrier = Barrier(20)

            def confirm(i: int) -> pb.Payment:
                barrier.wait()
                return (api_a if i % 2 else api_b).confirm(names[i])

            with ThreadPoolExecutor(20) as pool:
                results = list(pool.map(confirm, range(20)))
            states = [p.state for p in results]
            assert states.count(pb.PAYMENT_STATE_SUCCEEDED) == 5
            assert {p.failure.code for p in results if p.state == pb.PAYMENT_STATE_FAILED} == {"risk_declined"}
        finally:
            a.stop()
            b.stop()
