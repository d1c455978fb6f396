"""Operating the channels: the channel list, channel state (SetChannelState) and health."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection

from payhub.channel.adapter import Capabilities, CredentialKey
from payhub.channel.domain import ChannelState, ChannelStatus, MaintenanceWindow
from payhub.channel.health import HealthSnapshot, HealthTracker
from payhub.channel.registry import ChannelRegistry
from payhub.channel.repository import ChannelStateRepository
from payhub.identity.principal import Principal, PrincipalKind
from payhub.kernel import clock, idempotency
from payhub.kernel.db import Database
from payhub.kernel.errors import Violations
from payhub.kernel.outbox import record_event
from payhub.kernel.pagination import next_token, parse_page


@dataclass(frozen=True)
class IdempotentRequest:
    """A mutating request's idempotency key: `scope` names the caller and the RPC."""

    scope: str
    request_id: str
    fingerprint: str


@dataclass(frozen=True)
class ChannelView:
    channel: str
    display_name: str
    capabilities: Capabilities
    status: ChannelStatus
    state: ChannelState
    health: HealthSnapshot
    credential_keys: tuple[CredentialKey, ...] = ()


@dataclass(frozen=True)
class ChannelPage:
    channels: list[ChannelView]
    next_page_token: str


class ChannelAdmin:
    def __init__(self, db: Database, registry: ChannelRegistry, states: ChannelStateRepository,
                 health: HealthTracker) -> None:
        self._db = db
        self._registry = registry
        self._states = states
        self._health = health

    def list_channels(self, page_size: int, page_token: str) -> ChannelPage:
        page = parse_page(page_size, page_token)
        names = [n for n in self._registry.names() if page.after is None or n > page.after]
        rows = names[:page.size + 1]
        return ChannelPage([self.view(n) for n in rows[:page.size]], next_token(rows, page, lambda n: n))

    def view(self, channel: str, status: ChannelStatus | None = None) -> ChannelView:
        """NotFound (reason CHANNEL_NOT_FOUND) for a channel no adapter is registered for."""
        adapter = self._registry.get(channel)
        status = status or self._states.get(channel)
        return ChannelView(channel, adapter.display_name, adapter.capabilities(), status,
                           status.effective(clock.now()), self._health.snapshot(channel), adapter.credential_keys())

    def set_state(self, channel: str, state: ChannelState | None, window: MaintenanceWindow | None, reason: str,
                  request: IdempotentRequest, actor: str) -> ChannelView:
        _validate_state_change(state, window, reason, request)
        self._registry.get(channel)

        def work(conn: Connection) -> bytes:
            status = ChannelStatus(channel, state is ChannelState.ENABLED, window, reason, clock.now())
            self._states.save(conn, status, actor)
            record_event(conn, type="channel.state_changed", aggregate_type="channel", aggregate_id=channel,
                         merchant_id=None, payload={**status.to_json(), "actor": actor})
            return json.dumps(status.to_json()).encode()

        stored = idempotency.run_once(self._db, request.scope, request.request_id, request.fingerprint, work)
        self._states.invalidate()  # after commit too, so a read racing the transaction is not kept
        return self.view(channel, ChannelStatus.from_json(json.loads(stored)))


def _validate_state_change(state: ChannelState | None, window: MaintenanceWindow | None, reason: str,
                           request: IdempotentRequest) -> None:
    violations = Violations()
    if state not in (ChannelState.ENABLED, ChannelState.DISABLED):
        violations.add("state", "must be CHANNEL_STATE_ENABLED or CHANNEL_STATE_DISABLED (a maintenance "
                       "state comes from maintenance_window)")
    if window is not None and window.end <= window.start:
        violations.add("maintenance_window.end_time", "must be after maintenance_window.start_time")
    if not 1 <= len(reason.strip()) <= 500:
        violations.add("reason", "is required: 1-500 characters saying why")
    idempotency.validate_request_id(violations, request.request_id)
    violations.raise_if_any()


def idempotency_scope(rpc: str, principal: Principal) -> str:
    """Keys are scoped to the caller and the RPC; a merchant's keys to the merchant (its API keys
    may rotate between a request and its retry)."""
    who = (f"merchant:{principal.merchant_id}" if principal.kind is PrincipalKind.MERCHANT
           else f"{principal.kind.value}:{principal.subject}")
    return f"channel.{rpc}:{who}"
