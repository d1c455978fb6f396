"""Challenges, the review queue and releasing counts: what happens after a CHALLENGE or REVIEW
decision, and after a transaction that was counted definitely fails.

Outcomes (challenge passed/failed/expired, review approved/rejected/expired) are recorded in the
transaction that decides them, as outbox events `risk.*` (aggregate `risk_event`, no merchant, so
they never reach merchant webhooks), and are handed after commit to the in-process listeners
(the trade center continues, fails, captures or voids the payment at once).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from payhub.identity.principal import PrincipalKind, current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import FailedPrecondition, NotFound, Violations
from payhub.kernel.logging import get_logger
from payhub.kernel.outbox import Event, record_event
from payhub.risk import codec
from payhub.risk import repository as repo
from payhub.risk.admin import RequestKey, RiskAdmin
from payhub.risk.domain import Challenge, ChallengeState, ReviewState, RiskEvent
from payhub.risk.engine import SandboxSender

log = get_logger("payhub.risk")

Listener = Callable[[str, str, dict[str, Any]], None]

# Trade events after which a counted transaction definitely did not move money.
RELEASING_EVENTS = ("payment.failed", "payment.closed", "payment.voided", "refund.failed")


class RiskHolds(RiskAdmin):
    def subscribe(self, listener: Listener) -> None:
        """`listener(outcome, transaction, detail)` after each committed outcome, e.g.
        ("challenge_passed", "merchants/m/payments/p", {...})."""
        self._listeners.append(listener)

    def _notify(self, outcomes: list[tuple[str, str, dict[str, Any]]]) -> None:
        for outcome, transaction, detail in outcomes:
            for listener in self._listeners:
                try:
                    listener(outcome, transaction, detail)
                except Exception:
                    log.exception("risk outcome listener failed", outcome=outcome, transaction=transaction)

    @staticmethod
    def _outcome(conn: Connection, outcome: str, transaction: str, detail: dict[str, Any]) -> tuple[str, str,
                                                                                                    dict[str, Any]]:
        record_event(conn, type=f"risk.{outcome}", aggregate_type="risk_event",
                     aggregate_id=detail.get("evaluation_id", ""), merchant_id=None,
                     payload={"transaction": transaction, **detail})
        return outcome, transaction, detail

    # -- challenges --------------------------------------------------------------------------------
    def verify_challenge(self, challenge_id: str, code: str, req: RequestKey) -> tuple[bool, Challenge]:
        v = Violations()
        idempotency.validate_request_id(v, req.request_id)
        if not code or not code.isdigit() or len(code) > 12:
            v.add("code", "is required: the digits the consumer received")
        v.raise_if_any()
        principal = current_principal()
        scope = f"risk.VerifyChallenge:{principal.subject}"
        outcomes: list[tuple[str, str, dict[str, Any]]] = []
        state_error: FailedPrecondition | None = None

        def work(conn: Connection) -> bytes:
            nonlocal state_error
            found = repo.get_challenge(conn, challenge_id)
            if found is None or (principal.kind is PrincipalKind.MERCHANT
                                 and found[0].merchant_id != principal.merchant_id):
                raise NotFound(f"riskChallenges/{challenge_id} not found")
            challenge, code_hash = found
            now = clock.now()
            if challenge.state is ChallengeState.PENDING and now >= challenge.expire_time:
                expired = repo.with_state(challenge, ChallengeState.EXPIRED, challenge.attempts_remaining)
                if repo.cas_challenge(conn, challenge, expired, now):
                    outcomes.append(self._outcome(conn, "challenge_expired", challenge.transaction,
                                                  _detail(challenge)))
                challenge = expired
            if challenge.state is not ChallengeState.PENDING:
                state_error = FailedPrecondition(
                    f"{challenge.name} is CHALLENGE_STATE_{challenge.state.value}", reason="CHALLENGE_NOT_PENDING",
                    metadata={"state": f"CHALLENGE_STATE_{challenge.state.value}"})
                return b""  # committed (an expiry is recorded), then raised below; not remembered
            ok = self.code_matches(challenge.id, code, code_hash)
            left = challenge.attempts_remaining - (0 if ok else 1)
            state = ChallengeState.PASSED if ok else ChallengeState.FAILED if left <= 0 else ChallengeState.PENDING
            after = repo.with_state(challenge, state, left)
            if not repo.cas_challenge(conn, challenge, after, now):
                from payhub.kernel.errors import Aborted
                raise Aborted(f"{challenge.name} changed concurrently; retry with the same request_id")
            if state is not ChallengeState.PENDING:
                outcome = "challenge_passed" if ok else "challenge_failed"
                outcomes.append(self._outcome(conn, outcome, challenge.transaction,
                                              _detail(challenge)))
            return json.dumps({"verified": ok, "challenge": codec.challenge_dict(after)}).encode()

        with self.db.begin() as conn:
            stored = idempotency.check(conn, scope, req.request_id, req.fingerprint)
            if stored is None:
                raw = work(conn)
                if raw:
                    idempotency.save(conn, scope, req.request_id, req.fingerprint, raw)
            else:
                raw = stored
        self._notify(outcomes)
        if state_error is not None:
            raise state_error
        data = json.loads(raw)
        return bool(data["verified"]), codec.challenge_from_dict(data["challenge"])

    def expire_challenges(self) -> int:
        """Job: pending challenges past their expiry become EXPIRED (the transaction fails)."""
        now = clock.now()
        with self.db.read() as conn:
            due = repo.expired_challenges(conn, now)
        done = 0
        for challenge in due:
            outcomes = []
            with self.db.begin() as conn:
                expired = repo.with_state(challenge, ChallengeState.EXPIRED, challenge.attempts_remaining)
                if repo.cas_challenge(conn, challenge, expired, now):
                    outcomes.append(self._outcome(conn, "challenge_expired", challenge.transaction,
                                                  _detail(challenge)))
                    done += 1
            self._notify(outcomes)
        return done

    def sandbox_code(self, challenge_id: str) -> str:
        """The code the sandbox sender delivered (admin only, see permissions)."""
        if not isinstance(self.sender, SandboxSender):
            raise FailedPrecondition("challenge codes are not delivered to the sandbox mailbox here",
                                     reason="NOT_SANDBOX_DELIVERY")
        with self.db.read() as conn:
            code = self.sender.read(conn, challenge_id)
        if code is None:
            raise NotFound(f"riskChallenges/{challenge_id} has no sandbox message")
        return code

    # -- reviews -----------------------------------------------------------------------------------
    def review(self, event_id: str, approve: bool | None, note: str, req: RequestKey) -> RiskEvent:
        v = Violations()
        if approve is None:
            v.add("verdict", "is required: REVIEW_VERDICT_APPROVE or REVIEW_VERDICT_REJECT")
        if approve is False and not note:
            v.add("note", "is required when rejecting")
        if len(note) > 1000:
            v.add("note", "must be at most 1000 characters")
        v.raise_if_any()
        reviewer = current_principal().subject
        outcomes: list[tuple[str, str, dict[str, Any]]] = []

        def work(conn: Connection) -> str:
            event = repo.get_event(conn, event_id)
            if event is None:
                raise NotFound(f"riskEvents/{event_id} not found")
            if event.review_state is not ReviewState.PENDING:
                raise FailedPrecondition(f"riskEvents/{event_id} is REVIEW_STATE_{event.review_state.value}",
                                         reason="NOT_AWAITING_REVIEW",
                                         metadata={"review_state": f"REVIEW_STATE_{event.review_state.value}"})
            state = ReviewState.APPROVED if approve else ReviewState.REJECTED
            if not repo.set_review(conn, event_id, state, reviewer, note, clock.now()):
                from payhub.kernel.errors import Aborted
                raise Aborted(f"riskEvents/{event_id} was reviewed concurrently")
            outcomes.append(self._outcome(conn, "review_approved" if approve else "review_rejected",
                                          event.context.transaction, {"evaluation_id": event_id}))
            return event_id

        self._once("ReviewTransaction", req, work)
        self._notify(outcomes)
        return self.get_event(event_id)

    def get_event(self, event_id: str) -> RiskEvent:
        with self.db.read() as conn:
            event = repo.get_event(conn, event_id)
        if event is None:
            raise NotFound(f"riskEvents/{event_id} not found")
        return event

    def expire_reviews(self) -> int:
        """Job: reviews past their deadline follow the configured default (reject: EXPIRED, the
        payment is voided; approve: APPROVED by `system:review-timeout`, the payment is captured)."""
        now = clock.now()
        approve = self.settings.review_default == "approve"
        with self.db.read() as conn:
            due = repo.overdue_reviews(conn, now)
        done = 0
        for event in due:
            outcomes = []
            state = ReviewState.APPROVED if approve else ReviewState.EXPIRED
            with self.db.begin() as conn:
                if repo.set_review(conn, event.id, state, "system:review-timeout", "review deadline passed", now):
                    outcomes.append(self._outcome(conn, "review_approved" if approve else "review_expired",
                                                  event.context.transaction, {"evaluation_id": event.id}))
                    done += 1
            self._notify(outcomes)
        return done

    def review_state_of(self, transaction: str) -> ReviewState | None:
        """The review state of the latest REVIEW decision on a transaction (None: never held)."""
        page = self.list_events(1, "", transaction=transaction, review_state=None)
        for event in page.items:
            return event.review_state
        return None

    # -- counters ----------------------------------------------------------------------------------
    def purge_counters(self) -> int:
        """Job: drop counter rows whose period or windows are over."""
        with self.db.begin() as conn:
            return repo.purge_counters(conn, clock.now())

    def release(self, transaction: str, attempt: str) -> int:
        """Take a definitely failed transaction attempt back out of its counters; idempotent."""
        released = 0
        with self.db.begin() as conn:
            released = self._release(conn, transaction, attempt)
        return released

    @staticmethod
    def _release(conn: Connection, transaction: str, attempt: str) -> int:
        released = 0
        for event_id, counted in repo.unreleased_counts(conn, transaction, attempt):
            if repo.mark_released(conn, event_id):
                repo.uncount(conn, counted)
                released += 1
        return released

    def release_failed(self, conn: Connection, events: list[Event]) -> None:
        """Outbox consumer (`risk-release`): trade's failure events release their counts."""
        for event in events:
            if event.type not in RELEASING_EVENTS:
                continue
            data = event.payload
            if event.type == "refund.failed":
                transaction = (f"merchants/{data.get('merchant_id')}/payments/{data.get('payment_id')}"
                               f"/refunds/{data.get('id')}")
                self._release(conn, transaction, str(data.get("id", "")))
            else:
                name = str(data.get("name", ""))
                self._release(conn, name, str(data.get("current_attempt_id", "")))


def _detail(challenge: Challenge) -> dict[str, Any]:
    return {"evaluation_id": challenge.evaluation_id, "challenge": challenge.id}
