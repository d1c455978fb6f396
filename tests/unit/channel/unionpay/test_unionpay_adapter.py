"""payhub's UnionPay adapter against the simulator over HTTP: the front consume form, in-progress
orders resolved by query, undo versus refund, answers and notifications that do not verify."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel import simkit
from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials, NotificationRejected
from payhub.channel.simkit import ControlClient
from payhub.channel.transport import ChannelHttp
from payhub.channel.types import ActionKind, Outcome, PaymentInstruction
from payhub.channel.unionpay import wire
from payhub.channel.unionpay.adapter import UnionPayAdapter
from payhub.channel.unionpay.contract_kit import new_ca, token
from payhub.channel.unionpay.dev_ca import DevCA
from payhub.channel.unionpay.sim_gateway import IN_PROGRESS_SUFFIX
from payhub.channel.unionpay.simulator import FORM, UnionPaySimulator
from payhub.kernel import clock
from payhub.kernel.config import Settings
from payhub.kernel.ids import new_id

HEADERS = {"content-type": FORM}


@dataclass
class Sim:
    simulator: UnionPaySimulator
    control: ControlClient
    creds: ChannelCredentials


@pytest.fixture
def sim() -> Iterator[Sim]:
    simulator = UnionPaySimulator(new_ca(), notify_delay_scale=0.0005)
    served = simkit.serve_in_thread(simulator.app())
    simulator.base_url = served.url
    control = ControlClient(served.url)
    try:
        yield Sim(simulator, control, ChannelCredentials("mer_1", simulator.new_merchant(), ""))
    finally:
        control.close()
        served.stop()
        simulator.stop()


@pytest.fixture
def adapter() -> Iterator[UnionPayAdapter]:
    http = ChannelHttp("unionpay", connect_seconds=2.0, total_seconds=2.0)
    yield UnionPayAdapter(AdapterEnvironment(Settings(), None), http)  # type: ignore[arg-type]
    http.close()


def order(amount: int = 1000, client_type: str = "PC", **channel_input: str) -> PaymentInstruction:
    return PaymentInstruction(merchant_id="mer_1", payment_id=new_id("pay"), attempt_id=new_id("att"),
                              amount_minor=amount, currency="CNY", method="UNIONPAY", client_type=client_type,
                              capture=True, subject="Order 1", channel_input=channel_input)


@contextmanager
def clock_at(payhub_id: str, hour: int, minute: int = 0) -> Iterator[None]:
    """payhub's clock at hour:minute Beijing time on the day the id was made (the undo rule's clearing day),
    so the test does not depend on when it runs."""
    made = wire.parse_time(wire.txn_time(payhub_id))
    moment = made.replace(hour=hour, minute=minute, second=0, microsecond=0)
    clock.set_clock(lambda: moment)
    try:
        yield
    finally:
        clock.reset_clock()


def sim_order(sim: Sim, payhub_id: str) -> dict[str, object]:
    return sim.control.call("order", mer_id=sim.creds.get("mer_id"), order_id=wire.order_id(payhub_id))


def test_a_front_consume_is_a_signed_post_form_the_buyer_pays(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(client_type="H5", return_url="https://shop.example/back")
    result = adapter.pay(instr, sim.creds)
    assert result.outcome is Outcome.REQUIRES_ACTION and result.next_action is not None
    action = result.next_action
    assert action.kind is ActionKind.REDIRECT and action.data["method"] == "POST"
    assert action.data["url"].endswith(wire.FRONT_PATH)
    form = {k: v for k, v in action.data.items() if k not in ("url", "method")}
    assert form["channelType"] == "08" and form["txnAmt"] == "1000" and form["certId"].isdigit()
    # Unpaid: UnionPay knows no such order yet (never a failure); nothing to close there.
    assert adapter.query(instr.attempt_id, sim.creds).outcome is Outcome.UNKNOWN
    assert adapter.close(instr.attempt_id, sim.creds).outcome is Outcome.SUCCEEDED
    sim.control.call("pay", form=form)
    paid = adapter.query(instr.attempt_id, sim.creds)
    assert (paid.outcome, paid.amount_minor, paid.currency) == (Outcome.SUCCEEDED, 1000, "CNY")
    assert adapter.close(instr.attempt_id, sim.creds).failure_code == "already_paid"


def test_a_front_form_past_its_pay_timeout_cannot_be_paid(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = replace(order(), expire_time=datetime.now(UTC) + timedelta(minutes=15))
    result = adapter.pay(instr, sim.creds)
    assert result.next_action is not None
    form = {k: v for k, v in result.next_action.data.items() if k not in ("url", "method")}
    assert wire.parse_time(form["payTimeout"]) == instr.expire_time.replace(microsecond=0)  # type: ignore[union-attr]
    sim.control.call("clock", advance_seconds=16 * 60)
    with pytest.raises(simkit.ControlError):
        sim.control.call("pay", form=form)
    assert adapter.query(instr.attempt_id, sim.creds).outcome is Outcome.UNKNOWN


def test_a_tampered_front_form_is_refused_by_the_gateway(sim: Sim, adapter: UnionPayAdapter) -> None:
    result = adapter.pay(order(), sim.creds)
    assert result.next_action is not None
    form = {k: v for k, v in result.next_action.data.items() if k not in ("url", "method")}
    with pytest.raises(simkit.ControlError, match="11"):
        sim.control.call("pay", form=form | {"txnAmt": "1"})


def test_an_in_progress_order_is_unknown_until_a_query_says_otherwise(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(token=token(IN_PROGRESS_SUFFIX))
    first = adapter.pay(instr, sim.creds)
    assert (first.outcome, first.channel_code) == (Outcome.UNKNOWN, "05"), "03/04/05 are never failures"
    assert adapter.query(instr.attempt_id, sim.creds).outcome is Outcome.UNKNOWN
    assert adapter.close(instr.attempt_id, sim.creds).outcome is Outcome.UNKNOWN, "in progress: not closable"
    sim.control.call("settle", mer_id=sim.creds.get("mer_id"), order_id=wire.order_id(instr.attempt_id))
    assert adapter.query(instr.attempt_id, sim.creds).outcome is Outcome.SUCCEEDED


def test_a_full_refund_on_the_same_day_is_an_undo_and_a_partial_one_a_refund(sim: Sim,
                                                                              adapter: UnionPayAdapter) -> None:
    whole, part = order(token=token()), order(token=token())
    for instr in (whole, part):
        assert adapter.pay(instr, sim.creds).outcome is Outcome.SUCCEEDED
    undo, refund = new_id("ref"), new_id("ref")
    with clock_at(whole.attempt_id, hour=12):  # noon in Beijing on the consume's clearing day
        assert adapter.refund(whole.attempt_id, undo, 1000, "CNY", sim.creds).outcome is Outcome.SUCCEEDED
        assert adapter.refund(part.attempt_id, refund, 300, "CNY", sim.creds).outcome is Outcome.SUCCEEDED
    assert sim_order(sim, undo)["txn_type"] == wire.UNDO
    assert sim_order(sim, refund)["txn_type"] == wire.REFUND


def test_a_full_refund_on_the_same_day_after_23_beijing_is_a_refund(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(token=token())
    assert adapter.pay(instr, sim.creds).outcome is Outcome.SUCCEEDED
    refund_id = new_id("ref")
    with clock_at(instr.attempt_id, hour=23, minute=30):  # the clearing day has ended: no undo any more
        assert adapter.refund(instr.attempt_id, refund_id, 1000, "CNY", sim.creds).outcome is Outcome.SUCCEEDED
    assert sim_order(sim, refund_id)["txn_type"] == wire.REFUND


def test_a_full_refund_after_the_cutoff_is_a_refund(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(token=token())
    assert adapter.pay(instr, sim.creds).outcome is Outcome.SUCCEEDED
    later = datetime.now(UTC) + timedelta(days=1)
    clock.set_clock(lambda: later)
    try:
        refund_id = new_id("ref")
        assert adapter.refund(instr.attempt_id, refund_id, 1000, "CNY", sim.creds).outcome is Outcome.SUCCEEDED
    finally:
        clock.reset_clock()
    assert sim_order(sim, refund_id)["txn_type"] == wire.REFUND


def test_an_answer_signed_outside_the_configured_chain_is_unknown(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(token=token())
    foreign = DevCA(*[rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)])
    creds = ChannelCredentials("mer_1", dict(sim.creds.values) | {
        "verify_root_cert": wire.certificate_pem(foreign.root),
        "verify_middle_cert": wire.certificate_pem(foreign.middle)}, "")
    result = adapter.pay(instr, creds)
    assert result.outcome is Outcome.UNKNOWN and "not issued" in result.failure_message


def test_refund_notifications_name_the_payment_and_forgeries_are_refused(sim: Sim, adapter: UnionPayAdapter) -> None:
    instr = order(token=token())
    adapter.pay(instr, sim.creds)
    refund_id = new_id("ref")
    adapter.refund(instr.attempt_id, refund_id, 400, "CNY", sim.creds)
    body = sim.control.call("notification", mer_id=sim.creds.get("mer_id"),
                            order_id=wire.order_id(refund_id))["body"].encode()
    update = adapter.parse_notification(HEADERS, body, sim.creds)
    assert (update.attempt_id, update.refund_id) == (instr.attempt_id, refund_id)
    assert (update.result.outcome, update.result.amount_minor) == (Outcome.SUCCEEDED, 400)
    fields = dict(parse_qsl(body.decode()))
    with pytest.raises(NotificationRejected):
        adapter.parse_notification(HEADERS, urlencode(fields | {"txnAmt": "100000"}).encode(), sim.creds)
    with pytest.raises(NotificationRejected):
        adapter.parse_notification(HEADERS, urlencode({k: v for k, v in fields.items()
                                                       if k != "signPubKeyCert"}).encode(), sim.creds)


def test_credentials_are_checked(adapter: UnionPayAdapter, sim: Sim) -> None:
    assert adapter.validate_credentials(sim.creds.values) == {}
    bad = dict(sim.creds.values) | {"sign_cert": sim.creds.get("verify_root_cert"), "mer_id": "777-1"}
    problems = adapter.validate_credentials(bad)
    assert set(problems) == {"sign_cert", "mer_id"}
    assert adapter.validate_credentials({k: v for k, v in sim.creds.values.items() if k != "verify_root_cert"}) \
        .keys() == {"verify_root_cert"}
