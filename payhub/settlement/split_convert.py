"""Protobuf <-> profit split values (used by the servicer only)."""

from __future__ import annotations

from typing import Any

from payhub.settlement.v1 import settlement_pb2 as pb

from payhub.kernel.protobuf import enum_name, enum_value, money, timestamp
from payhub.settlement.split_domain import Share
from payhub.settlement.split_receivers import Receiver, ReceiverInput
from payhub.settlement.splits import Instruction, SplitView


def instruction_from(m: pb.SplitInstruction) -> Instruction:
    shares, currencies = [], []
    for s in m.receivers:
        kind = s.WhichOneof("share")
        shares.append(Share(s.receiver, s.amount.amount_minor if kind == "amount" else 0,
                            s.ratio_basis_points if kind == "ratio_basis_points" else 0, s.description))
        currencies.append(s.amount.currency_code if kind == "amount" else None)
    amount = m.amount.amount_minor if m.HasField("amount") else None
    return Instruction(shares, currencies, amount, m.amount.currency_code if m.HasField("amount") else "",
                       m.remainder_receiver, enum_name(pb.SplitReturnPolicy, m.return_policy, "SPLIT_RETURN_POLICY_"))


def receiver_input_from(m: pb.SplitReceiver) -> ReceiverInput:
    a = m.settlement_account
    return ReceiverInput(m.display_name, m.external_id, m.description, a.account_name, a.bank_name, a.account_number)


def receiver_to(r: Receiver) -> pb.SplitReceiver:
    return pb.SplitReceiver(
        name=r.name, display_name=r.display_name, external_id=r.external_id, description=r.description,
        ledger_accounts=r.ledger_accounts, create_time=timestamp(r.create_time),
        settlement_account=pb.SplitReceiverSettlementAccount(account_name=r.account_name, bank_name=r.bank_name,
                                                             account_number_last4=r.account_last4))


def _instruction_to(d: dict[str, Any], currency: str) -> pb.SplitInstruction:
    shares = []
    for s in d["shares"]:
        share = pb.SplitShare(receiver=s["receiver"], description=s["description"])
        if s["currency"] is not None:
            share.amount.CopyFrom(money(s["amount_minor"], currency))
        else:
            share.ratio_basis_points = s["ratio_bps"]
        shares.append(share)
    out = pb.SplitInstruction(receivers=shares, remainder_receiver=d["remainder_receiver"],
                              return_policy=enum_value(pb.SplitReturnPolicy, "SPLIT_RETURN_POLICY_",
                                                       d["return_policy"]))
    if d["amount_minor"] is not None:
        out.amount.CopyFrom(money(d["amount_minor"], currency))
    return out


def split_to(s: SplitView) -> pb.Split:
    c = s.currency
    return pb.Split(
        name=s.name, payment=f"merchants/{s.merchant_id}/payments/{s.payment_id}",
        instruction=_instruction_to(s.instruction, c), state=enum_value(pb.SplitState, "SPLIT_STATE_", s.state),
        total_amount=money(sum(a.amount_minor for a in s.allocations), c),
        allocations=[pb.SplitAllocation(receiver=a.receiver, amount=money(a.amount_minor, c),
                                        returned_amount=money(a.returned_minor, c), remainder=a.remainder,
                                        receivable_amount=money(a.receivable_minor, c)) for a in s.allocations],
        returns=[pb.SplitReturn(refund=r.refund, receiver=r.receiver, amount=money(r.amount_minor, c),
                                journal=f"journals/{r.journal_id}", create_time=timestamp(r.create_time),
                                receivable_amount=money(r.receivable_minor, c)) for r in s.returns],
        journal=f"journals/{s.journal_id}", create_time=timestamp(s.create_time), update_time=timestamp(s.update_time))
