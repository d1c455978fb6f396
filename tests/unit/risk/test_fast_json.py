"""Risk's JSON spelt out by hand (payhub.risk.codec: the event's context, the request fingerprint's
document, counted, a decision without reasons) is byte for byte what json.dumps wrote before, so
stored events, and the fingerprints an evaluation's request_id is checked against, do not change;
engine.context_valid agrees with validate_context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from payhub.kernel import idempotency
from payhub.kernel.errors import Violations
from payhub.risk import codec
from payhub.risk.domain import (
    Action,
    Challenge,
    ChallengeState,
    Context,
    Decision,
    Reason,
    RuleKind,
    TxKind,
    masked_context,
)
from payhub.risk.engine import context_valid, validate_context

ODD = 'q"uo\\te \u00e9\u4e2d\U0001f600 \n\t\x00 </script>'
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def contexts() -> list[Context]:
    return [
        Context(TxKind.PAYMENT, "mch_1", "CNY", 1000),
        Context(TxKind.REFUND, "mch_1", "USD", 10**12, transaction="merchants/mch_1/refunds/ref_1", method="CARD",
                channel="sandbox", client_type="PC", customer_id="cust-1", card_fingerprint="ab" * 32,
                ip="198.51.100.7", device_id="dev-1", email="Ann@Example.com", phone="+8613800138000",
                ip_country="CN", card_country="US", attributes={"z": "1", "a": "2", ODD: ODD}),
        Context(TxKind.PAYOUT, ODD, ODD, 1, transaction=ODD, method=ODD, channel=ODD, client_type=ODD, customer_id=ODD,
                card_fingerprint=ODD, ip=ODD, device_id=ODD, email=ODD + "@" + ODD, phone=ODD, ip_country=ODD,
                card_country=ODD),
        Context(TxKind.PAYMENT, "m", "CNY", 5, email="no-at-sign", phone="+1234"),
    ]


@pytest.mark.parametrize("context", contexts())
def test_the_context_and_request_documents_are_what_json_dumps_wrote(context: Context) -> None:
    spelt = codec.context_json(context)
    assert spelt == json.dumps(masked_context(context), sort_keys=True)
    for dry_run in (False, True):
        before = json.dumps([masked_context(context), context.email, context.phone, dry_run], sort_keys=True)
        assert codec.request_json(spelt, context, dry_run) == before
        assert idempotency.fingerprint(codec.request_json(spelt, context, dry_run).encode()) == \
            idempotency.fingerprint(before.encode())


@pytest.mark.parametrize("counted", [[], [["k|" + ODD, 5, 1000, 1]], [["a", 0, 0, 1], ["b", 2, 3, 4]],
                                     [["k", True, 1, 1]]])
def test_counted_is_what_json_dumps_wrote(counted: list[list[Any]]) -> None:
    assert codec.counted_json(counted) == json.dumps(counted)


def reason(action: Action) -> Reason:
    return Reason("rr_1", RuleKind.VELOCITY, action, 30, ODD)


@pytest.mark.parametrize("decision", [
    Decision(Action.ALLOW, 0, [], [], "rev_1", NOW),
    Decision(Action.ALLOW, 30, [reason(Action.ALLOW)], [], "rev_1", NOW),
    Decision(Action.ALLOW, 0, [], [reason(Action.CHALLENGE)], "rev_1", NOW),
    Decision(Action.CHALLENGE, 30, [reason(Action.CHALLENGE)], [], "rev_1", NOW,
             Challenge("rch_1", "rev_1", "t", "m", ChallengeState.PENDING, "SANDBOX", "+86****8000", 5, NOW, NOW)),
])
def test_the_decision_document_is_what_json_dumps_wrote(decision: Decision) -> None:
    before = json.dumps({"reasons": [[r.rule_id, r.kind.value, int(r.action), r.score, r.explanation]
                                     for r in decision.reasons],
                         "shadow": [[r.rule_id, r.kind.value, int(r.action), r.score, r.explanation]
                                    for r in decision.shadow_reasons],
                         "challenge": codec.challenge_dict(decision.challenge) if decision.challenge else None})
    assert codec.decision_json(decision) == before


def invalid_contexts() -> list[Context]:
    base = Context(TxKind.PAYMENT, "mch_1", "CNY", 1000)
    long = "x" * 257
    return [base, Context(TxKind.PAYMENT, "", "CNY", 1000), Context(TxKind.PAYMENT, "m", "XXX", 1000),
            Context(TxKind.PAYMENT, "m", "CNY", 0), Context(TxKind.PAYMENT, "m", "CNY", -1),
            Context(TxKind.PAYMENT, "m", "CNY", 10**12), Context(TxKind.PAYMENT, "m", "CNY", 10**12 + 1),
            Context(TxKind.PAYMENT, "m", "CNY", 1, customer_id="c" * 64),
            Context(TxKind.PAYMENT, "m", "CNY", 1, customer_id="c" * 65),
            Context(TxKind.PAYMENT, "m", "CNY", 1, attributes={str(n): "v" for n in range(20)}),
            Context(TxKind.PAYMENT, "m", "CNY", 1, attributes={str(n): "v" for n in range(21)}),
            Context(TxKind.PAYMENT, "m", "CNY", 1, attributes={long: "v"}),
            Context(TxKind.PAYMENT, "m", "CNY", 1, attributes={"k": long}),
            Context(TxKind.PAYMENT, "m", "CNY", 1, ip_country="cn"),
            Context(TxKind.PAYMENT, "m", "CNY", 1, ip_country="C1"),
            Context(TxKind.PAYMENT, "m", "CNY", 1, card_country="USA"),
            Context(TxKind.PAYMENT, "m", "CNY", 1, ip_country="CN", card_country="US"),
            *(Context(TxKind.PAYMENT, "m", "CNY", 1, **{name: value})  # type: ignore[arg-type]
              for name in ("card_fingerprint", "device_id", "email", "phone", "ip", "channel")
              for value in ("y" * 256, long))]


@pytest.mark.parametrize("context", invalid_contexts())
def test_context_valid_agrees_with_validate_context(context: Context) -> None:
    v = Violations()
    validate_context(v, context)
    assert context_valid(context) == (not v.items)
