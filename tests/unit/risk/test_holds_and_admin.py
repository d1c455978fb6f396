"""Challenges, reviews, rule administration, the block list's rules and the default rule set."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from payhub.kernel import clock
from payhub.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from payhub.risk.defaults import DEFAULT_RULES
from payhub.risk.domain import (
    Action,
    AmountLimit,
    BlockEntry,
    BlockKind,
    ChallengeState,
    CountryMismatch,
    ReviewState,
    Subject,
    TxKind,
    Velocity,
)
from payhub.risk.engine import RiskSettings
from payhub.risk.service import RiskService
from tests.unit.risk.helpers import add, ctx, evaluate, req, rule


def _challenged(risk: RiskService, merchant: str) -> Any:
    add(risk, CountryMismatch(), Action.CHALLENGE)
    decision = evaluate(risk, ctx(merchant, ip_country="US", card_country="CN"))
    assert decision.action is Action.CHALLENGE and decision.challenge is not None
    return decision.challenge


def test_the_right_code_passes_the_challenge_and_tells_the_listeners(risk: RiskService, merchant: str) -> None:
    heard: list[tuple[str, str]] = []
    risk.subscribe(lambda outcome, transaction, detail: heard.append((outcome, transaction)))
    challenge = _challenged(risk, merchant)
    code = risk.sandbox_code(challenge.id)
    assert len(code) == 6 and code.isdigit()
    wrong = "000000" if code != "000000" else "111111"
    verified, after = risk.verify_challenge(challenge.id, wrong, req())
    assert not verified and after.attempts_remaining == 4 and after.state is ChallengeState.PENDING
    verified, after = risk.verify_challenge(challenge.id, code, req())
    assert verified and after.state is ChallengeState.PASSED
    assert heard == [("challenge_passed", challenge.transaction)]
    with pytest.raises(FailedPrecondition, match="CHALLENGE_STATE_PASSED"):
        risk.verify_challenge(challenge.id, code, req())


def test_five_wrong_codes_fail_the_challenge(risk: RiskService, merchant: str) -> None:
    heard: list[str] = []
    risk.subscribe(lambda outcome, transaction, detail: heard.append(outcome))
    challenge = _challenged(risk, merchant)
    wrong = "000000" if risk.sandbox_code(challenge.id) != "000000" else "111111"
    states = [risk.verify_challenge(challenge.id, wrong, req())[1].state for _ in range(5)]
    assert states == [ChallengeState.PENDING] * 4 + [ChallengeState.FAILED]
    assert heard == ["challenge_failed"]
    with pytest.raises(FailedPrecondition, match="CHALLENGE_STATE_FAILED"):
        risk.verify_challenge(challenge.id, risk.sandbox_code(challenge.id), req())


def test_a_retried_verification_answers_the_same(risk: RiskService, merchant: str) -> None:
    challenge = _challenged(risk, merchant)
    key = req()
    first = risk.verify_challenge(challenge.id, "999999", key)
    assert risk.verify_challenge(challenge.id, "999999", key) == first  # counted once
    assert risk.verify_challenge(challenge.id, "999999", req())[1].attempts_remaining == 3


def test_codes_expire(risk: RiskService, merchant: str) -> None:
    now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    clock.set_clock(lambda: now)
    challenge = _challenged(risk, merchant)
    heard: list[str] = []
    risk.subscribe(lambda outcome, transaction, detail: heard.append(outcome))
    clock.set_clock(lambda: now + timedelta(minutes=6))
    assert risk.expire_challenges() == 1
    assert heard == ["challenge_expired"]
    with pytest.raises(FailedPrecondition, match="CHALLENGE_STATE_EXPIRED"):
        risk.verify_challenge(challenge.id, risk.sandbox_code(challenge.id), req())


def test_the_code_never_reaches_the_log(risk: RiskService, merchant: str, capsys: pytest.CaptureFixture[str]) -> None:
    challenge = _challenged(risk, merchant)
    code = risk.sandbox_code(challenge.id)
    assert code not in capsys.readouterr().out


def test_review_approve_reject_and_the_queue(risk: RiskService, merchant: str) -> None:
    heard: list[str] = []
    risk.subscribe(lambda outcome, transaction, detail: heard.append(outcome))
    add(risk, AmountLimit("CNY", 10), Action.REVIEW)
    first, second = evaluate(risk, ctx(merchant)), evaluate(risk, ctx(merchant))
    queue = risk.list_events(10, "", review_state=ReviewState.PENDING).items
    assert {e.id for e in queue} == {first.evaluation_id, second.evaluation_id}
    with pytest.raises(InvalidArgument, match="note"):
        risk.review(first.evaluation_id, False, "", req())
    approved = risk.review(first.evaluation_id, True, "", req())
    assert approved.review_state is ReviewState.APPROVED and approved.reviewer
    rejected = risk.review(second.evaluation_id, False, "stolen card", req())
    assert rejected.review_state is ReviewState.REJECTED and rejected.review_note == "stolen card"
    assert heard == ["review_approved", "review_rejected"]
    with pytest.raises(FailedPrecondition, match="REVIEW_STATE_APPROVED"):
        risk.review(first.evaluation_id, False, "again", req())
    with pytest.raises(NotFound):
        risk.review("rev_missing", True, "", req())


@pytest.mark.parametrize(("default", "state"), [("reject", ReviewState.EXPIRED), ("approve", ReviewState.APPROVED)])
def test_reviews_left_too_long_follow_the_default(risk: RiskService, merchant: str, default: str,
                                                  state: ReviewState) -> None:
    risk.settings = RiskSettings(poll_seconds=0, review_timeout=timedelta(hours=1), review_default=default)
    heard: list[str] = []
    risk.subscribe(lambda outcome, transaction, detail: heard.append(outcome))
    add(risk, AmountLimit("CNY", 10), Action.REVIEW)
    held = evaluate(risk, ctx(merchant))
    assert risk.expire_reviews() == 0
    later = clock.now() + timedelta(hours=2)
    clock.set_clock(lambda: later)
    assert risk.expire_reviews() == 1
    assert risk.get_event(held.evaluation_id).review_state is state
    assert heard == ["review_expired" if default == "reject" else "review_approved"]


def test_rule_validation_names_the_field(risk: RiskService, merchant: str) -> None:
    with pytest.raises(InvalidArgument, match=r"rule.amount_limit.max_amount.amount_minor"):
        risk.create_rule(rule(AmountLimit("CNY", 0)), req())
    with pytest.raises(InvalidArgument, match=r"rule.velocity.window"):
        risk.create_rule(rule(Velocity(Subject.CARD, 0, max_count=1)), req())
    with pytest.raises(InvalidArgument, match=r"rule.action"):
        risk.create_rule(rule(AmountLimit("CNY", 5), Action.REVIEW, transaction_kinds=frozenset({TxKind.REFUND})),
                         req())
    with pytest.raises(NotFound, match=r"rule.scope.merchant"):
        risk.create_rule(rule(AmountLimit("CNY", 5), merchant_id="mch_nobody"), req())
    assert risk.list_rules(50, "", "", "", "").items == []


def test_update_rule_by_mask(risk: RiskService, merchant: str) -> None:
    r = add(risk, AmountLimit("CNY", 10), Action.DENY)
    disabled = risk.update_rule(r.id, replace(r, enabled=False, score=99), ["enabled"], req())
    assert not disabled.enabled and disabled.score == 0  # only masked fields change
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW
    changed = risk.update_rule(r.id, replace(r, condition=AmountLimit("CNY", 5000), enabled=True),
                               ["amount_limit", "enabled"], req())
    assert changed.condition == AmountLimit("CNY", 5000)
    assert evaluate(risk, ctx(merchant, 5001)).action is Action.DENY
    with pytest.raises(InvalidArgument, match="update_mask"):
        risk.update_rule(r.id, r, [], req())
    with pytest.raises(InvalidArgument, match="condition kind cannot change"):
        risk.update_rule(r.id, replace(r, condition=CountryMismatch()), ["country_mismatch"], req())
    with pytest.raises(InvalidArgument, match="kind is unknown or output only"):
        risk.update_rule(r.id, r, ["kind"], req())


def test_create_rule_is_idempotent(risk: RiskService) -> None:
    key = req()
    first = risk.create_rule(rule(AmountLimit("CNY", 10)), key)
    assert risk.create_rule(rule(AmountLimit("CNY", 10)), key).id == first.id
    assert len(risk.list_rules(50, "", "", "", "").items) == 1


def test_block_list_validation_and_duplicates(risk: RiskService) -> None:
    with pytest.raises(InvalidArgument, match=r"entry.value"):
        risk.add_block(BlockEntry("", BlockKind.IP, "not-an-ip", "x"), req())
    with pytest.raises(InvalidArgument, match=r"entry.merchant"):
        risk.add_block(BlockEntry("", BlockKind.CUSTOMER, "c1", "x"), req())
    with pytest.raises(InvalidArgument, match=r"entry.reason"):
        risk.add_block(BlockEntry("", BlockKind.DEVICE, "d1", ""), req())
    entry = risk.add_block(BlockEntry("", BlockKind.EMAIL, "A@B.com", "spam"), req())
    assert entry.value == "a@b.com"
    with pytest.raises(AlreadyExists, match=entry.name):
        risk.add_block(BlockEntry("", BlockKind.EMAIL, "a@b.COM", "again"), req())
    assert [e.id for e in risk.list_blocks(50, "", "EMAIL", "", "", False).items] == [entry.id]
    risk.remove_block(entry.id, "ok", req())
    with pytest.raises(NotFound):
        risk.remove_block(entry.id, "ok", req())
    assert risk.list_blocks(50, "", "", "", "", True).items == []


def test_default_rule_set_installs_once(risk: RiskService, merchant: str) -> None:
    assert risk.install_default_rules() == len(DEFAULT_RULES)
    assert risk.install_default_rules() == 0
    assert len(risk.list_rules(50, "", "", "", "").items) == len(DEFAULT_RULES)
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, 5_000_001)).action is Action.REVIEW
    risk.add_block(BlockEntry("", BlockKind.CARD_FINGERPRINT, "fp-card-1", "fraud"), req())
    assert evaluate(risk, ctx(merchant)).action is Action.DENY


def test_a_change_in_another_process_is_seen_within_the_poll_interval(risk: RiskService, app: Any,
                                                                      merchant: str) -> None:
    other = RiskService(app.db, app.keyring, lambda: app.client("merchant"), RiskSettings(poll_seconds=3600))
    assert evaluate(other, ctx(merchant)).action is Action.ALLOW  # caches the (empty) configuration
    add(risk, AmountLimit("CNY", 10), Action.DENY)
    assert evaluate(other, ctx(merchant)).action is Action.ALLOW  # not polled yet
    other.rules._checked = float("-inf")  # the poll interval passed
    assert evaluate(other, ctx(merchant)).action is Action.DENY


def test_staff_may_only_dry_run(risk: RiskService, merchant: str) -> None:
    from payhub.identity.principal import Principal, PrincipalKind, Role, reset_current_principal, set_current_principal
    from payhub.kernel.errors import PermissionDenied
    token = set_current_principal(Principal(PrincipalKind.STAFF, "stf_1", frozenset({Role.OPERATIONS})))
    try:
        with pytest.raises(PermissionDenied):
            risk.evaluate(ctx(merchant), False, "r1")
        add(risk, AmountLimit("CNY", 10), Action.DENY)
        decision = risk.evaluate(ctx(merchant), True, "r2")
        assert decision.action is Action.DENY
    finally:
        reset_current_principal(token)
    assert risk.list_events(10, "").items == []
    assert len(risk.list_events(10, "", include_dry_runs=True).items) == 1
