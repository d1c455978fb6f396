"""The load generator's requests: the cards it pays with and the two messages of a payment."""

from __future__ import annotations

import random

from payhub.bench.scenarios import approved_card
from payhub.trade.domain import luhn_ok


def _searched(serial: int) -> str:
    """The card as the generator first made it: the first check digit that passes Luhn."""
    body = f"42{serial % 10 ** 13:013d}"
    return next(body + digit for digit in "0123456789" if luhn_ok(body + digit))


def test_cards_pass_luhn_differ_per_serial_and_are_the_ones_a_search_finds() -> None:
    rng = random.Random(7)
    serials = [*range(2000), *(rng.randrange(10 ** 15) for _ in range(5000)),
               *(w * 10 ** 11 + s for w in range(3) for s in range(500))]
    cards = {serial: approved_card(serial) for serial in serials}
    assert all(len(c) == 16 and c.startswith("42") and luhn_ok(c) for c in cards.values())
    assert all(card == _searched(serial) for serial, card in cards.items())
    assert len({cards[s] for s in range(2000)}) == 2000


def test_payment_requests_are_the_messages_built_field_by_field() -> None:
    from payhub.common.v1.common_pb2 import CLIENT_TYPE_PC, PAYMENT_METHOD_TYPE_CARD, Money
    from payhub.trade.v1 import trade_pb2 as pb

    from payhub.bench.scenarios import Operations, Target

    ops = Operations("pay", Target("127.0.0.1:1", "phk_x", "merchants/m1"), [], (), worker=2, workers=3, tasks=1,
                     tag="t", keep_created=0)
    create = ops.create_request(41)
    assert create == pb.CreatePaymentRequest(
        parent="merchants/m1", request_id=create.request_id,
        payment=pb.Payment(merchant_order_no=f"{ops.prefix}-41", subject="bench",
                           amount=Money(currency_code="CNY", amount_minor=10_000),
                           capture_method=pb.CAPTURE_METHOD_AUTOMATIC))
    confirm = ops.confirm_request("merchants/m1/payments/p1", 41)
    assert confirm == pb.ConfirmPaymentRequest(
        name="merchants/m1/payments/p1", request_id=confirm.request_id,
        payment_method=pb.PaymentMethod(type=PAYMENT_METHOD_TYPE_CARD, client_type=CLIENT_TYPE_PC,
                                        card=pb.CardDetails(number=approved_card(2 * 10 ** 11 + 41), exp_month=12,
                                                            exp_year=2034, cvc="123")))
    assert len(create.request_id) == len(confirm.request_id) == 32 and create.request_id != confirm.request_id
    assert ops.create_request(42).payment.merchant_order_no == f"{ops.prefix}-42"
