"""recon_book rows only move forward, whatever order a batch's events or the batches come in."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.jsontext import dumps
from payhub.kernel.outbox import Event
from payhub.settlement.reconciliation.book import book_handler, book_row, write_rows
from payhub.settlement.reconciliation.tables import recon_book

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(order_no: str, status: str, amount: int = 1000, fee: int | None = None) -> dict[str, Any]:
    return {"channel": "sandbox", "kind": "PAYMENT", "order_no": order_no, "payhub_id": order_no,
            "merchant_id": "m1", "reference": f"merchants/m1/payments/{order_no}", "currency": "CNY",
            "amount_minor": amount, "fee_minor": fee, "status": status,
            "complete_time": T if status in ("SUCCEEDED", "PAID_AFTER_CLOSE") else None, "update_time": T}


def _book(db: Database) -> dict[str, tuple[str, int, int | None]]:
    with db.read() as conn:
        return {r.order_no: (r.status, r.amount_minor, r.fee_minor)
                for r in conn.execute(select(recon_book.c.order_no, recon_book.c.status, recon_book.c.amount_minor,
                                             recon_book.c.fee_minor))}


def test_rows_move_forward_only(db: Database) -> None:
    with db.begin() as conn:  # in one batch: the later rank wins, whatever the order
        write_rows(conn, [_row("a", "PENDING"), _row("a", "SUCCEEDED", fee=2), _row("b", "SUCCEEDED", fee=3),
                          _row("b", "PENDING"), _row("c", "PENDING")])
    assert _book(db) == {"a": ("SUCCEEDED", 1000, 2), "b": ("SUCCEEDED", 1000, 3), "c": ("PENDING", 1000, None)}
    with db.begin() as conn:  # a stale failure never undoes a success; a late success replaces a failure
        write_rows(conn, [_row("a", "FAILED", 900), _row("c", "CLOSED", 800), _row("d", "FAILED")])
    with db.begin() as conn:
        write_rows(conn, [_row("c", "PAID_AFTER_CLOSE", 800, 1), _row("d", "PENDING")])
    assert _book(db) == {"a": ("SUCCEEDED", 1000, 2), "b": ("SUCCEEDED", 1000, 3),
                         "c": ("PAID_AFTER_CLOSE", 800, 1), "d": ("FAILED", 1000, None)}


def _event(position: int, type_: str, attempt: str, amount: int, channel: str) -> Event:
    payment: dict[str, Any] = {
        "id": f"pay_{attempt[-1]}", "name": f"merchants/m1/payments/pay_{attempt[-1]}", "merchant_id": "m1",
        "currency": "CNY", "amount_minor": amount, "amount_captured": amount, "channel": channel,
        "current_attempt_id": attempt, "method": {"type": "CARD"}}
    if type_ == "payment.paid_after_close":
        payment.update(attempt_id=attempt, attempt_channel=channel, attempt_amount_minor=amount)
    if type_.startswith("refund."):
        payment = {"id": f"ref_{attempt[-1]}", "name": f"merchants/m1/payments/pay_x/refunds/ref_{attempt[-1]}",
                   "merchant_id": "m1", "currency": "CNY", "amount_minor": amount, "channel": channel}
    return Event(position, f"evt_{position}", type_, "payment", payment["id"], "m1", dumps(payment),
                 T + timedelta(seconds=position))


def test_a_batch_written_by_the_handler_is_what_all_its_rows_would_write(db: Database) -> None:
    """The handler builds no row for an event a later event of its batch supersedes (same key, as far
    or further): the book ends as if every event's row had been handed to write_rows, batch by batch."""
    rng = random.Random(9)
    types = ["payment.processing", "payment.requires_action", "payment.succeeded", "payment.failed",
             "payment.closed", "payment.paid_after_close", "refund.pending", "refund.succeeded", "refund.failed"]

    def cost_of(_channel: str, method: str, amount: int) -> int | None:
        return amount // 100 if method != "*" else 1

    handle = book_handler(cost_of)
    for batch in range(30):
        events = [_event(100 * batch + i, rng.choice(types), f"att_{rng.randrange(4)}", rng.choice([900, 1000]), "x")
                  for i in range(rng.randrange(1, 12))]
        mirror = [_event(e.position, e.type, e.payload.get("current_attempt_id") or e.payload["id"].replace(
            "ref_", "att_"), e.payload["amount_minor"], "y") for e in events]
        with db.begin() as conn:
            handle(conn, events)
            write_rows(conn, [r for e in mirror if (r := book_row(e, cost_of, clock.now())) is not None])
    with db.read() as conn:
        rows = [r._mapping for r in conn.execute(select(recon_book))]
    by_channel = {c: sorted((r["kind"], r["order_no"], r["status"], r["amount_minor"], r["fee_minor"],
                             r["reference"], r["complete_time"]) for r in rows if r["channel"] == c)
                  for c in ("x", "y")}
    assert by_channel["x"] == by_channel["y"] and len(by_channel["x"]) == 8


def _payment_event(position: int, type_: str, payment: str, attempt: str, channel: str,
                   metadata: dict[str, Any] | None = None) -> Event:
    body = {"id": payment, "name": f"merchants/m1/payments/{payment}", "merchant_id": "m1", "currency": "CNY",
            "amount_minor": 1000, "amount_captured": 1000, "channel": channel, "current_attempt_id": attempt,
            "method": {"type": "CARD"}, "metadata": metadata or {}}
    return Event(position, f"evt_{position}", type_, "payment", payment, "m1", dumps(body),
                 T + timedelta(seconds=position))


def test_a_pending_attempt_keeps_its_row_when_a_later_event_of_its_payment_is_about_another(db: Database) -> None:
    """A payment's processing is dropped for a later event of the same attempt only: another attempt's
    success, even one its metadata names, leaves the earlier attempt's pending row in the book."""
    handle = book_handler(lambda _channel, _method, amount: amount // 100)
    with db.begin() as conn:
        handle(conn, [
            _payment_event(1, "payment.processing", "pay_a", "att_1", "x",
                           {"current_attempt_id": "att_2", "channel": "x"}),
            _payment_event(2, "payment.succeeded", "pay_a", "att_2", "x"),
            _payment_event(3, "payment.requires_action", "pay_b", "att_3", "x"),
            _payment_event(4, "payment.processing", "pay_b", "att_4", "x"),
            _payment_event(5, "payment.processing", "pay_c", "att_5", "x"),
            _payment_event(6, "payment.succeeded", "pay_c", "att_5", "x"),
            _payment_event(7, "payment.processing", "pay_d", "att_6", "y"),
            _payment_event(8, "payment.failed", "pay_d", "att_6", "x"),
        ])
    assert {k: v[0] for k, v in _book(db).items()} == {
        "att_1": "PENDING", "att_2": "SUCCEEDED", "att_3": "PENDING", "att_4": "PENDING", "att_5": "SUCCEEDED",
        "att_6": "FAILED"}
    with db.read() as conn:  # att_6's pending row was on channel y, its failure on x: two rows
        assert sorted(r.channel for r in conn.execute(select(recon_book.c.channel).where(
            recon_book.c.order_no == "att_6"))) == ["x", "y"]


def test_batches_of_payments_with_several_attempts_end_as_all_their_rows_would(db: Database) -> None:
    """Payments with several attempts, metadata naming attempts and channels: the handler's book is the
    book of every event's row written batch by batch."""
    rng = random.Random(11)
    types = ["payment.processing", "payment.requires_action", "payment.succeeded", "payment.failed",
             "payment.closed"]
    handle = book_handler(lambda _channel, _method, amount: amount // 100)
    mirror_rows: list[dict[str, Any]] = []

    def metadata() -> dict[str, Any]:
        return rng.choice([{}, {"current_attempt_id": f"att_{rng.randrange(6)}"}, {"channel": "x"},
                           {"note": '"current_attempt_id":"att_1"'}])

    with db.begin() as conn:
        for batch in range(40):
            events = [_payment_event(100 * batch + i, rng.choice(types), f"pay_{rng.randrange(2)}",
                                     f"att_{rng.randrange(6)}", rng.choice(["x", "x", "z"]), metadata())
                      for i in range(rng.randrange(1, 14))]
            handle(conn, events)
            mirror_rows.extend(r for e in events if (r := book_row(e, lambda _c, _m, a: a // 100, clock.now())))
    got = _all_rows(db)
    with db.begin() as conn:
        conn.execute(recon_book.delete())
    with db.begin() as conn:
        for start in range(0, len(mirror_rows), 7):
            write_rows(conn, mirror_rows[start:start + 7])
    assert _all_rows(db) == got and len(got) == 12  # 6 attempts on channels x and z


def _all_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        return sorted((r.channel, r.kind, r.order_no, r.status, r.amount_minor, r.fee_minor, r.reference,
                       r.complete_time) for r in conn.execute(select(recon_book)))
