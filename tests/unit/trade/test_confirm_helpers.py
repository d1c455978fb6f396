"""Small pieces of ConfirmPayment's fast path."""

from __future__ import annotations

import dataclasses

from payhub.channel.types import CardInput, PaymentInstruction
from payhub.trade.confirm import _routed


def test_routed_is_dataclasses_replace_of_the_channel_and_the_sent_record() -> None:
    instruction = PaymentInstruction("mch_1", "pay_1", "att_1", 1000, "CNY", "CARD", "PC", True, "s",
                                     card=CardInput(token="card_1", pan="4242424242424242", exp_month=12,
                                                    exp_year=2031, brand="visa", last4="4242", cvc="123"),
                                     channel_input={"a": "b"}, customer_id="c")
    routed = _routed(instruction, "sandbox")
    assert routed == dataclasses.replace(instruction, channel="sandbox", sent_recorded=True)
    assert (instruction.channel, instruction.sent_recorded) == ("", False)  # the original is untouched
    # _routed skips __init__: it would skip a __post_init__ or miss slots added later.
    assert not hasattr(PaymentInstruction, "__post_init__") and not hasattr(PaymentInstruction, "__slots__")
