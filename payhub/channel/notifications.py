"""Asynchronous outcomes reaching payhub from the channel side: channel notifications
(HandleNotification) and the sandbox consumer's actions (CompleteSandboxAction). Both end the same
way: the outcome passes the integrity guard and is applied to the trade center through its client
(`apply_channel_update`, idempotent there), in its own transaction - never inside one of ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sqlalchemy.exc import IntegrityError

from payhub.channel.adapter import HttpReply, NotificationRejected
from payhub.channel.admin import IdempotentRequest
from payhub.channel.domain import result_from_json, result_to_json
from payhub.channel.sandbox.adapter import NAME as SANDBOX
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.channel.service import ChannelRouter
from payhub.channel.types import ChannelResult, ChannelUpdate
from payhub.identity.principal import current_principal
from payhub.kernel import idempotency
from payhub.kernel.db import Database, is_unique_violation
from payhub.kernel.errors import Aborted, NotFound, PayhubError, Unavailable, Violations
from payhub.kernel.logging import get_logger
from payhub.trade.client import TradeClient

log = get_logger("payhub.channel.notifications")

SANDBOX_ACTIONS = frozenset({"APPROVE", "DECLINE", "SUBMIT_OTP"})
_OTP = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True)
class NotificationOutcome:
    accepted: bool
    reply: HttpReply
    update: ChannelUpdate | None = None
    rejection_reason: str = ""


class AsyncOutcomes:
    def __init__(self, db: Database, router: ChannelRouter, trade: Callable[[], TradeClient]) -> None:
        self._db = db
        self._router = router
        self._trade = trade  # resolved per call: the trade component is built lazily

    # -- channel notifications ------------------------------------------------------------------
    def handle_notification(self, channel: str, merchant_id: str, headers: Mapping[str, str],
                            body: bytes) -> NotificationOutcome:
        """NotFound for a channel no adapter is registered for. Anything else - a merchant without a
        configuration of the channel, a forged, tampered or malformed notification - changes nothing
        and is answered with the adapter's failure reply, so the channel tries again later."""
        _require_fields(channel=channel, merchant=merchant_id)
        adapter = self._router.registry.get(channel)
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            credentials = self._router.credentials_for(merchant_id, channel)
            update = adapter.parse_notification(lowered, body, credentials)
            update = self._guard(channel, merchant_id, update)
        except (NotificationRejected, NotFound) as exc:
            log.warning("channel notification rejected", channel=channel, merchant_id=merchant_id,
                        reason=exc.reason, detail=exc.message)
            return NotificationOutcome(False, adapter.notification_reply(False), None, exc.message)
        except Exception:
            # An adapter that fails on some input instead of rejecting it: still nothing changes.
            log.exception("channel adapter failed on a notification; rejected", channel=channel,
                          merchant_id=merchant_id)
            return NotificationOutcome(False, adapter.notification_reply(False), None,
                                       "the notification could not be parsed")
        try:
            self._trade().apply_channel_update(update)
        except Exception:
            # Answer the channel's failure reply, so it sends the notification again later.
            log.exception("trade center could not apply a channel notification", channel=channel,
                          attempt_id=update.attempt_id, refund_id=update.refund_id)
            return NotificationOutcome(False, adapter.notification_reply(False), update,
                                       "the trade center could not apply it yet; the channel will resend it")
        return NotificationOutcome(True, adapter.notification_reply(True), update)

    def _guard(self, channel: str, merchant_id: str, update: ChannelUpdate) -> ChannelUpdate:
        result = replace(update.result, channel=channel)  # the channel that was verified, whatever it claims
        expected = self._router.expected_for(channel, merchant_id, update.attempt_id, update.refund_id)
        return replace(update, result=self._router.guard(result, expected, update.attempt_id))

    # -- the sandbox consumer -------------------------------------------------------------------
    def complete_sandbox_action(self, attempt_id: str, action: str, otp: str,
                                request: IdempotentRequest) -> ChannelResult:
        _validate_action(attempt_id, action, otp, request)
        sandbox = self._sandbox()
        merchant_id = current_principal().scope_merchant(sandbox.merchant_of(attempt_id))
        with self._db.read() as conn:
            stored = idempotency.check(conn, request.scope, request.request_id, request.fingerprint)
        if stored is not None:
            return result_from_json(json.loads(stored))
        result = sandbox.complete_action(attempt_id, action, otp)
        result = self._router.guard(result, self._router.expected_for(SANDBOX, merchant_id, attempt_id, ""),
                                    attempt_id)
        self._tell_trade(ChannelUpdate(attempt_id, result))
        self._remember(request, result)
        return result

    def _sandbox(self) -> SandboxAdapter:
        adapter = self._router.registry.find(SANDBOX)
        if not isinstance(adapter, SandboxAdapter):
            raise NotFound("the sandbox channel is not registered in this deployment", reason="CHANNEL_NOT_FOUND")
        return adapter

    def _tell_trade(self, update: ChannelUpdate) -> None:
        try:
            self._trade().apply_channel_update(update)
        except (Unavailable, Aborted) as exc:
            raise Unavailable(f"the sandbox recorded the outcome but the trade center could not apply it "
                              f"({exc.message}); retry with the same request_id",
                              reason="TRADE_UPDATE_FAILED") from exc
        except PayhubError:
            raise  # the trade center's own verdict (e.g. NOT_FOUND for an attempt it does not know)
        except Exception as exc:
            log.exception("trade center could not apply a sandbox outcome", attempt_id=update.attempt_id)
            raise Unavailable("the sandbox recorded the outcome but the trade center could not be told; "
                              "retry with the same request_id", reason="TRADE_UPDATE_FAILED") from exc

    def _remember(self, request: IdempotentRequest, result: ChannelResult) -> None:
        response = json.dumps(result_to_json(result)).encode()
        try:
            with self._db.begin() as conn:
                idempotency.save(conn, request.scope, request.request_id, request.fingerprint, response)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            # A concurrent identical request saved first; both answers are the same outcome.


def _require_fields(**values: str) -> None:
    violations = Violations()
    for name, value in values.items():
        if not value:
            violations.add(name, "is required")
    violations.raise_if_any()


def _validate_action(attempt_id: str, action: str, otp: str, request: IdempotentRequest) -> None:
    violations = Violations()
    if not attempt_id:
        violations.add("attempt_id", "is required")
    if action not in SANDBOX_ACTIONS:
        violations.add("action", "is required: SANDBOX_ACTION_APPROVE, _DECLINE or _SUBMIT_OTP")
    if action == "SUBMIT_OTP" and not _OTP.match(otp):
        violations.add("otp", "is required with SANDBOX_ACTION_SUBMIT_OTP: 1-12 digits")
    idempotency.validate_request_id(violations, request.request_id)
    violations.raise_if_any()
