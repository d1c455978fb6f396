"""Protobuf <-> channel domain types, shared by the servicer (server side) and the remote client."""

from __future__ import annotations

from payhub.channel.v1 import channel_pb2 as pb

from payhub.channel.types import ActionKind, CardInput, ChannelResult, NextAction, Outcome, PaymentInstruction
from payhub.kernel.protobuf import (
    client_type_name,
    client_type_value,
    from_timestamp,
    method_name,
    method_value,
    money,
    timestamp,
)


# -- ChannelResult --------------------------------------------------------------------------------
def result_to_pb(result: ChannelResult) -> pb.ChannelResult:
    message = pb.ChannelResult(
        outcome=pb.ChannelOutcome.Value(f"CHANNEL_OUTCOME_{result.outcome.value}"), channel=result.channel,
        amount=money(result.amount_minor, result.currency), channel_reference=result.channel_reference,
        failure_code=result.failure_code, failure_message=result.failure_message,
        channel_code=result.channel_code, retryable_elsewhere=result.retryable_elsewhere)
    if result.next_action is not None:
        message.next_action.kind = pb.NextActionKind.Value(f"NEXT_ACTION_KIND_{result.next_action.kind.value}")
        message.next_action.data.update(result.next_action.data)
    return message


def result_from_pb(message: pb.ChannelResult) -> ChannelResult:
    action = None
    if message.HasField("next_action"):
        kind = pb.NextActionKind.Name(message.next_action.kind).removeprefix("NEXT_ACTION_KIND_")
        action = NextAction(ActionKind(kind), dict(message.next_action.data))
    outcome = pb.ChannelOutcome.Name(message.outcome).removeprefix("CHANNEL_OUTCOME_")
    return ChannelResult(
        Outcome(outcome) if outcome != "UNSPECIFIED" else Outcome.UNKNOWN, message.channel,
        message.amount.amount_minor, message.amount.currency_code, message.channel_reference,
        message.failure_code, message.failure_message, message.channel_code, action, message.retryable_elsewhere)


def outcome_to_pb(outcome: Outcome | None) -> pb.ChannelOutcome.ValueType:
    return pb.ChannelOutcome.Value(f"CHANNEL_OUTCOME_{outcome.value}") if outcome else pb.CHANNEL_OUTCOME_UNSPECIFIED


# -- PaymentInstruction ---------------------------------------------------------------------------
def instruction_to_pb(instruction: PaymentInstruction) -> pb.PaymentInstruction:
    message = pb.PaymentInstruction(
        merchant_id=instruction.merchant_id, payment_id=instruction.payment_id, attempt_id=instruction.attempt_id,
        amount=money(instruction.amount_minor, instruction.currency),
        payment_method_type=method_value(instruction.method), client_type=client_type_value(instruction.client_type),
        capture=instruction.capture, subject=instruction.subject, installments=instruction.installments,
        preferred_channel=instruction.preferred_channel, channel_input=instruction.channel_input,
        channel=instruction.channel, customer_id=instruction.customer_id)
    if instruction.card is not None:
        card = instruction.card
        message.card.CopyFrom(pb.CardInput(token=card.token, number=card.pan, exp_month=card.exp_month,
                                           exp_year=card.exp_year, brand=card.brand, last4=card.last4, cvc=card.cvc))
    if instruction.expire_time is not None:
        message.expire_time.CopyFrom(timestamp(instruction.expire_time))
    return message


def instruction_from_pb(message: pb.PaymentInstruction) -> PaymentInstruction:
    card = None
    if message.HasField("card"):
        c = message.card
        card = CardInput(c.token, c.number, c.exp_month, c.exp_year, c.brand, c.last4, c.cvc)
    return PaymentInstruction(
        merchant_id=message.merchant_id, payment_id=message.payment_id, attempt_id=message.attempt_id,
        amount_minor=message.amount.amount_minor, currency=message.amount.currency_code,
        method=method_name(message.payment_method_type), client_type=client_type_name(message.client_type),
        capture=message.capture, subject=message.subject, card=card, installments=message.installments,
        preferred_channel=message.preferred_channel,
        expire_time=from_timestamp(message.expire_time) if message.HasField("expire_time") else None,
        channel_input=dict(message.channel_input), channel=message.channel,
        customer_id=message.customer_id)
