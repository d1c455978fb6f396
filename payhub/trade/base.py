"""What every trade use case shares: the service's collaborators, scoping, loading, events, and
the encoding of stored idempotent responses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from payhub.identity.principal import current_principal
from payhub.kernel import idempotency, jsontext
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition, NotFound
from payhub.kernel.logging import get_logger
from payhub.kernel.outbox import record_event
from payhub.trade import repository as repo
from payhub.trade.domain import (
    DEFAULT_REQUERY,
    Payment,
    Refund,
    attempts_json,
    payment_from_snapshot,
    refund_from_snapshot,
)
from payhub.trade.fresh import FreshPayments
from payhub.trade.vault import CardVault

log = get_logger("payhub.trade")

# A new attempt (or refund) is first re-queried this long after it was claimed, so the request that
# sent it answers first; after a crash, the re-query job finds it then (PAYHUB_REQUERY_GRACE_SECONDS).
FIRST_QUERY_GRACE = timedelta(seconds=60)


class Reply(Exception):
    def __init__(self, payment: Payment) -> None:
        super().__init__("reply")
        self.payment = payment


def request_fingerprint(data: Any) -> str:
    """SHA-256 of the request as sorted JSON: dataclasses (at any depth) as their fields' dicts,
    anything JSON does not know (datetimes) as str(). The stdlib's JSON, byte for byte: fingerprints
    stored by earlier versions must still match a replay (payhub.kernel.jsontext writes other text)."""
    return idempotency.fingerprint(_FINGERPRINT_JSON(data).encode())


def _fingerprint_default(value: Any) -> Any:
    # What plain() made of a dataclass, without building the copy first: the encoder calls this
    # for each dataclass it meets and encodes the dict (sorted) as it would have encoded the copy.
    names = _FIELDS.get(type(value))
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    return str(value)


_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=_fingerprint_default).encode

# The hot requests' fingerprints (CreatePayment's draft, ConfirmPayment's method) spell request_fingerprint's
# JSON by hand: the same bytes (tests compare both over generated requests) for a fraction of the
# instructions. Each raises TypeError for a value it does not spell exactly as the stdlib would; its
# caller then takes request_fingerprint.
json_string = json.encoder.encode_basestring_ascii  # the stdlib encoder's own escaping (C); TypeError if not str


def json_int(value: Any) -> str:
    """An int as the stdlib encoder writes it (not a bool or an IntEnum: TypeError)."""
    if type(value) is not int:
        raise TypeError(f"not an int: {type(value).__name__}")
    return int.__repr__(value)


def json_string_map(value: Any) -> str:
    """A dict of str to str as request_fingerprint writes it (keys sorted); TypeError for anything else."""
    if type(value) is not dict:
        raise TypeError(f"not a dict: {type(value).__name__}")
    if not value:
        return "{}"
    return "{" + ", ".join([f"{json_string(k)}: {json_string(v)}" for k, v in sorted(value.items())]) + "}"



def plain(value: Any) -> Any:
    """What dataclasses.asdict makes of a request (the same JSON, so the same fingerprints), without
    its recursive deep copy: a tenth of CreatePayment's CPU. (request_fingerprint needs no plain():
    it encodes dataclasses itself, to the same JSON.)"""
    cls = type(value)
    if cls in _ATOMS:
        return value
    names = _FIELDS.get(cls)
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[cls] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


_FIELDS: dict[type, tuple[str, ...]] = {}
_ATOMS = frozenset({str, int, float, bool, type(None), datetime})


def encode(obj: Payment | Refund, snapshot: dict[str, Any] | None = None, payload: str | None = None) -> bytes:
    """The stored idempotent response: {"payment": the snapshot with its "attempts"}. `snapshot`:
    obj.snapshot() when the caller has it already; `payload`: that snapshot's JSON as its event
    carries it (payhub.kernel.jsontext's, compact with sorted keys), which the response then reuses
    instead of encoding the payment again (read back as a document: key order, spacing and escapes
    carry nothing, so responses stored by earlier versions read the same)."""
    if isinstance(obj, Payment):
        if payload is None:
            payload = obj.snapshot_json() if snapshot is None else jsontext.dumps(snapshot)
        attempts = attempts_json(obj.attempts)
        return f'{{"payment":{payload[:-1]},"attempts":{attempts}}}}}'.encode()
    return jsontext.dumps({"refund": obj.snapshot() | {"state": obj.state.value}}).encode()


def decode_payment(raw: bytes) -> Payment:
    return payment_from_snapshot(jsontext.loads(raw)["payment"])


def decode_refund(raw: bytes) -> Refund:
    return refund_from_snapshot(jsontext.loads(raw)["refund"])


def not_found(name: str) -> NotFound:
    return NotFound(f"{name} not found", reason="NOT_FOUND", metadata={"name": name})


def state_error(reason: str, payment: Payment, what: str) -> FailedPrecondition:
    return FailedPrecondition(f"{payment.name} is {payment.state.value}: {what}", reason=reason,
                              metadata={"state": payment.state.value, "payment": payment.name})


class TradeBase:
    """The trade center's collaborators and the helpers every use case needs."""

    def __init__(self, db: Database, keyring: KeyRing, merchants: Callable[[], Any],
                 channels: Callable[[], Any]) -> None:
        self.db = db
        self.first_query_grace = FIRST_QUERY_GRACE
        self.requery_schedule = DEFAULT_REQUERY  # PAYHUB_REQUERY_SCHEDULE
        self._walked_at: datetime | None = None  # the re-query walk's last run (payhub.trade.jobs)
        self.vault = CardVault(keyring)
        self._merchants = merchants
        self._channels = channels
        self.fresh = FreshPayments()

    @staticmethod
    def scope(merchant_id: str) -> str:
        return current_principal().scope_merchant(merchant_id)

    def _require_active(self, merchant_id: str) -> None:
        info = self._merchants().get_merchant(merchant_id)
        if info.state != "ACTIVE":
            raise FailedPrecondition(f"merchants/{merchant_id} is {info.state}, not ACTIVE",
                                     reason="MERCHANT_NOT_ACTIVE", metadata={"state": info.state})

    @staticmethod
    def _load(conn: Connection, merchant_id: str, payment_id: str) -> Payment:
        payment = repo.get_payment(conn, payment_id)
        if payment is None or payment.merchant_id != merchant_id:
            raise not_found(f"merchants/{merchant_id}/payments/{payment_id}")
        return payment

    @staticmethod
    def _with_attempts(conn: Connection, payment: Payment) -> Payment:
        payment.attempts = repo.attempts_of(conn, payment.id)
        return payment

    @staticmethod
    def _event(conn: Connection, type: str, obj: Payment | Refund) -> None:
        record_event(conn, type=type, aggregate_type="payment" if isinstance(obj, Payment) else "refund",
                     aggregate_id=obj.id, merchant_id=obj.merchant_id, payload=obj.snapshot())

    def _replay(self, scope: str, request_id: str, fp: str) -> Payment | None:
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        return decode_payment(stored) if stored is not None else None
