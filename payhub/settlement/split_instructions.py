"""Split instructions carried by a payment (trade's `Payment.splits`, stored at creation) are
executed when the payment succeeds, by their own outbox consumer (`split-instructions`), off the
payment's request path: the payment.succeeded / payment.captured event already carries them.

The split needs the payment posted first (its ledger_payments row), so an event the ledger poster
has not posted yet stops the batch (rolled back, retried on the next tick). Each payment's split is
made once (its `source` is unique: `payment:{id}`) over the whole splittable amount, the merchant
keeping the remainder; one that cannot be made (an unknown receiver, shares above the splittable
amount) is logged and skipped, leaving the money with the merchant.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select

from payhub.kernel import clock
from payhub.kernel.errors import PayhubError, Violations
from payhub.kernel.outbox import Event, consume
from payhub.settlement.base import log
from payhub.settlement.split_domain import Share
from payhub.settlement.split_tables import splits
from payhub.settlement.splits import Instruction, Splits, validate_instruction
from payhub.settlement.tables import ledger_payments

CONSUMER = "split-instructions"
CAPTURE_EVENTS = ("payment.succeeded", "payment.captured")
GIVE_UP_AFTER = timedelta(minutes=10)  # an event the poster never posts (e.g. nothing captured) is skipped


class NotPostedYet(Exception):
    """The ledger poster is behind this event: roll the batch back and retry."""


class SplitInstructions(Splits):
    def execute_split_instructions(self, limit: int = 200) -> int:
        try:
            return consume(self.db, CONSUMER, self._handle_instructions, limit=limit)
        except NotPostedYet:
            return 0

    def _handle_instructions(self, conn: Connection, events: list[Event]) -> None:
        for event in events:
            p = event.payload
            if event.type not in CAPTURE_EVENTS or not p.get("splits"):
                continue
            source = f"payment:{p['id']}"
            if conn.execute(select(splits.c.id).where(splits.c.source == source)).first() is not None:
                continue
            posted = conn.execute(select(ledger_payments.c.payment_id)
                                  .where(ledger_payments.c.payment_id == p["id"])).first()
            if posted is None:
                if event.create_time > clock.now() - GIVE_UP_AFTER:
                    raise NotPostedYet(p["id"])
                log.error("split instructions skipped: the payment was never posted", payment=p["name"])
                continue
            self._execute_carried(conn, p, source)

    def _execute_carried(self, conn: Connection, p: dict[str, Any], source: str) -> None:
        inst = carried_instruction(p)
        try:
            v = Violations()
            validate_instruction(v, p["merchant_id"], inst, "payment.splits")
            v.raise_if_any()
            parties = self.resolve_receivers(p["merchant_id"], inst)
            with conn.begin_nested():  # a refused split leaves no trace in the batch
                split_id = self.execute_split(conn, p["merchant_id"], p["id"], inst, parties, source)
            log.info("split instructions executed", payment=p["name"], split=split_id)
        except PayhubError as exc:
            log.error("split instructions refused; the money stays with the merchant", payment=p["name"],
                      error=str(exc))


def carried_instruction(p: dict[str, Any]) -> Instruction:
    """Trade's stored shares (a fixed amount in the payment's currency, or a ratio) as an instruction
    over the whole splittable amount."""
    shares = [Share(s["receiver"], int(s.get("amount_minor") or 0), int(s.get("ratio_basis_points") or 0),
                    s.get("description") or "") for s in p["splits"]]
    currencies: list[str | None] = [p["currency"] if s.amount_minor else None for s in shares]
    return Instruction(shares, currencies)
