"""SQL over bankcard_exchanges: STAN allocation and the life of each exchange.

A STAN is allocated by inserting the exchange with the terminal's highest STAN of the day plus one;
the unique constraint (terminal, day, STAN) makes a concurrent allocation fail harmlessly and try the
next number, on SQLite and PostgreSQL alike. A repeated message reuses its row, so its STAN and DE 7.
State changes are compare-and-set on the expected state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update

from payhub.channel.bankcard.tables import bankcard_exchanges
from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore

T = bankcard_exchanges
_FIND = select(T).where(T.c.key == bindparam("b_key"))
_MAX_STAN = select(func.max(T.c.stan)).where(T.c.terminal_id == bindparam("b_terminal"),
                                             T.c.stan_day == bindparam("b_day"))
STAN_LIMIT = 999_999
SENT, ANSWERED, LOST, UNSENT = "SENT", "ANSWERED", "LOST", "UNSENT"
REVERSED, STANDS = "REVERSED", "STANDS"


@dataclass(frozen=True)
class Exchange:
    key: str
    kind: str
    attempt_id: str
    refund_id: str | None
    merchant_id: str
    terminal_id: str
    stan_day: str
    stan: int
    mti: str
    processing_code: str
    transmission: str
    amount_minor: int
    currency: str
    state: str
    response_code: str | None
    rrn: str | None
    auth_code: str | None
    reversal: str | None
    captured_minor: int
    update_time: datetime

    @property
    def stan_text(self) -> str:
        return f"{self.stan:06d}"


def _exchange(row: Row[Any]) -> Exchange:
    return Exchange(**{name: getattr(row, name) for name in Exchange.__dataclass_fields__})


class Journal:
    def __init__(self, db: Database) -> None:
        self._db = db

    def find(self, key: str) -> Exchange | None:
        with self._db.read() as conn:
            row = conn.execute(_FIND, {"b_key": key}).first()
        return _exchange(row) if row else None

    def open(self, key: str, values: dict[str, Any], moment: datetime) -> tuple[Exchange, bool]:
        """Insert the exchange with a fresh STAN for its terminal and day, or return the existing one
        (False) when `key` was opened before."""
        day = moment.strftime("%Y%m%d")
        for _ in range(50):
            with self._db.begin() as conn:
                highest = conn.execute(_MAX_STAN, {"b_terminal": values["terminal_id"], "b_day": day}).scalar()
                stan = (highest or 0) % STAN_LIMIT + 1
                now = clock.now()
                row = {**values, "key": key, "stan_day": day, "stan": stan, "state": SENT,
                       "transmission": moment.strftime("%m%d%H%M%S"), "response_code": None, "rrn": None,
                       "auth_code": None, "reversal": None, "captured_minor": 0, "create_time": now,
                       "update_time": now}
                inserted = insert_ignore(conn, T, row)
            if inserted:
                return self._require(key), True
            existing = self.find(key)
            if existing is not None:
                return existing, False
            # Another exchange took this STAN a moment ago: take the next one.
        raise RuntimeError("could not allocate a STAN")

    def resend(self, key: str) -> Exchange | None:
        """Claim an exchange whose request is to be sent again (LOST or UNSENT -> SENT)."""
        if self._set(key, (LOST, UNSENT), state=SENT):
            return self.find(key)
        return None

    def answered(self, key: str, response_code: str, rrn: str | None, auth_code: str | None) -> None:
        self._set(key, (SENT, LOST, UNSENT), state=ANSWERED, response_code=response_code, rrn=rrn,
                  auth_code=auth_code)

    def lost(self, key: str) -> None:
        self._set(key, (SENT,), state=LOST)

    def reopen(self, key: str) -> None:
        """An answer that settles nothing (a refused reversal): the message is to be repeated."""
        self._set(key, (ANSWERED,), state=LOST)

    def unsent(self, key: str) -> None:
        self._set(key, (SENT,), state=UNSENT)

    def resolve_reversal(self, key: str, outcome: str, **values: Any) -> None:
        """Record on the original what its reversal achieved (first answer wins)."""
        with self._db.begin() as conn:
            conn.execute(update(T).where(T.c.key == key, T.c.reversal.is_(None))
                         .values(reversal=outcome, update_time=clock.now(), **values))

    def captured(self, key: str, amount_minor: int) -> None:
        with self._db.begin() as conn:
            conn.execute(update(T).where(T.c.key == key, T.c.captured_minor == 0)
                         .values(captured_minor=amount_minor, update_time=clock.now()))

    def _set(self, key: str, expected: tuple[str, ...], **values: Any) -> bool:
        with self._db.begin() as conn:
            return bool(conn.execute(update(T).where(T.c.key == key, T.c.state.in_(expected))
                                     .values(update_time=clock.now(), **values)).rowcount)

    def _require(self, key: str) -> Exchange:
        found = self.find(key)
        if found is None:
            raise RuntimeError(f"exchange {key} vanished")
        return found
