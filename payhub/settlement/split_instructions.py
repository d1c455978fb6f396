"""Split instructions carried by a payment (trade's `Payment.splits`, stored at creation) are
executed when the payment succeeds, by the ledger poster right after it posts the capture, in the
same transaction: the payment.succeeded / payment.captured event already carries them, so nothing is
added to the payment's request path, and a payment without instructions costs nothing more.

Each payment's split is made once (its `source` is unique: `payment:{id}`) over the whole splittable
amount, the merchant keeping the remainder. One that cannot be made (an unknown receiver, fixed
amounts above the splittable amount) is rolled back to its savepoint and logged, leaving the money
with the merchant; the capture itself is posted regardless.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from payhub.kernel.errors import PayhubError, Violations
from payhub.settlement.base import log
from payhub.settlement.split_domain import Share
from payhub.settlement.split_tables import splits
from payhub.settlement.splits import Instruction, Splits, validate_instruction


def execute_carried(service: Splits, conn: Connection, payments: list[dict[str, Any]]) -> None:
    """Split each just-posted payment by the instructions its event carried (in the poster's batch)."""
    for p in payments:
        source = f"payment:{p['id']}"
        if conn.execute(select(splits.c.id).where(splits.c.source == source)).first() is not None:
            continue
        inst = carried_instruction(p)
        try:
            v = Violations()
            validate_instruction(v, p["merchant_id"], inst, "payment.splits")
            v.raise_if_any()
            parties = service.resolve_receivers(p["merchant_id"], inst)
            with conn.begin_nested():  # a refused split leaves no trace in the batch
                split_id = service.execute_split(conn, p["merchant_id"], p["id"], inst, parties, source)
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
