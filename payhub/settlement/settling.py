"""RunSettlement and the daily settlement job: merchant pending -> available, one batch per merchant,
currency and settlement date.

The poster queues every merchant-money journal (payment, refund) in settlement_queue. A run for date D
takes, per merchant and currency, the queued items whose settle date under the merchant's cycle is on
or before D (catching up on missed days), and in ONE transaction: inserts the batch (unique per
merchant, currency and date: a second run, or a second replica at the same time, inserts nothing and
moves on), claims the items with a compare-and-set on `batch_id IS NULL`, and posts the settlement
journal (Dr pending / Cr available by the net; source `settlement:{merchant}:{currency}:{date}`, unique
too). A negative net that the available balance cannot cover rolls back: the items wait for a later
run. An automatic payout (when the policy sets a minimum payout in this currency and the available
balance reaches it) is created in the same transaction and sent after the commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from payhub.kernel import clock, idempotency
from payhub.kernel.db import insert_ignore
from payhub.kernel.errors import Aborted, FailedPrecondition, Violations
from payhub.kernel.ids import new_id
from payhub.merchant.domain import round_half_up_div
from payhub.settlement import repository as repo
from payhub.settlement.base import log, parse_name
from payhub.settlement.domain import (
    SHANGHAI,
    AccountKind,
    BatchTotals,
    Cycle,
    JournalDraft,
    JournalKind,
    day_start,
    local_date,
    transfer,
)
from payhub.settlement.payouts import PayoutService
from payhub.settlement.repository import InsufficientFunds
from payhub.settlement.split_returns import recover_receivable
from payhub.settlement.tables import settlement_batches, settlement_queue, settlement_runs

ITEM_FIELDS = {"PAYMENT": "gross", "REFUND": "refunds", "ADJUSTMENT": "adjustments", "SPLIT": "splits",
               "SPLIT_RETURN": "splits"}
SIGNED_FIELDS = ("adjustments", "splits")  # summed from `net`: + adjustments, - splits
RESERVE = "RESERVE"  # a rolling reserve item: held (net < 0, settled with its batch) or released (net > 0)


@dataclass(frozen=True)
class RunResult:
    settlement_date: str
    batches: list[str]
    created: int
    payouts: list[str]


def cycle_of(policy: Any) -> Cycle:
    """The merchant center's policy as a cycle: T+1 (default) and T+0 in business days, D+N in days."""
    cycle = getattr(policy, "cycle", "T_PLUS_1")
    name = getattr(cycle, "value", cycle)
    if name == "T_PLUS_0":
        return Cycle(True, 0)
    if name == "D_PLUS_N":
        return Cycle(False, int(policy.n_days))
    return Cycle(True, 1)


class Settling(PayoutService):
    def run_settlement(self, settlement_date: str, merchant: str, request_id: str) -> RunResult:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        day = parse_date(v, "settlement_date", settlement_date)
        merchant_id = parse_name(merchant, "merchant", "merchants")[0] if merchant else None
        v.raise_if_any()
        assert day is not None
        today = local_date(clock.now())
        if day > today:
            raise FailedPrecondition(f"settlement_date {day} is in the future (today is {today} in Beijing)",
                                     reason="SETTLEMENT_DATE_IN_FUTURE", metadata={"today": today.isoformat()})
        if merchant_id is not None:
            self._merchants().get_merchant(merchant_id)
        scope, fp = "settlement.RunSettlement", idempotency.fingerprint(f"{day}|{merchant_id}".encode())
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        if stored is not None:
            data = json.loads(stored)
            return RunResult(data["date"], data["batches"], data["created"], data["payouts"])
        result = self.settle_day(day, merchant_id)
        with self.db.begin() as conn:
            if idempotency.check(conn, scope, request_id, fp) is None:
                idempotency.save(conn, scope, request_id, fp, json.dumps(
                    {"date": result.settlement_date, "batches": result.batches, "created": result.created,
                     "payouts": result.payouts}).encode())
        return result

    def settle_day(self, day: date, merchant_id: str | None = None) -> RunResult:
        """Settle every merchant (or one) for `day`; safe to repeat and to run on several replicas."""
        query = select(settlement_queue.c.merchant_id).where(settlement_queue.c.batch_id.is_(None)).distinct()
        if merchant_id is not None:
            query = query.where(settlement_queue.c.merchant_id == merchant_id)
        with self.db.read() as conn:
            merchants = sorted(conn.execute(query).scalars().all())
        created, payouts = 0, []
        for m in merchants:
            for made, payout in self._settle_merchant(m, day):
                created += made
                if payout:
                    payouts.append((m, payout))
        batch_query = select(settlement_batches.c.merchant_id, settlement_batches.c.id).where(
            settlement_batches.c.settlement_date == day.isoformat())
        if merchant_id is not None:
            batch_query = batch_query.where(settlement_batches.c.merchant_id == merchant_id)
        with self.db.read() as conn:
            rows = conn.execute(batch_query.order_by(settlement_batches.c.id)).all()
        names = [f"{self.party_owner(r.merchant_id)}/settlementBatches/{r.id}" for r in rows]
        for _, payout_id in payouts:
            self.send_payout(payout_id)
        return RunResult(day.isoformat(), names, created, [f"{self.party_owner(m)}/payouts/{p}" for m, p in payouts])

    def _settle_merchant(self, merchant_id: str, day: date) -> list[tuple[int, str]]:
        policy = self.party_policy(merchant_id)
        cycle = cycle_of(policy)
        with self.db.read() as conn:
            rows = conn.execute(select(settlement_queue).where(settlement_queue.c.merchant_id == merchant_id,
                                                               settlement_queue.c.batch_id.is_(None))).all()
        by_currency: dict[str, list[Any]] = {}
        for row in rows:
            # A reserve release is due on its own date (its event time); everything else by the cycle.
            due = local_date(row.event_time) if row.kind == RESERVE else \
                cycle.settle_date(local_date(row.event_time), self.calendar)
            if due <= day:
                by_currency.setdefault(row.currency, []).append(row)
        results = []
        for currency, items in sorted(by_currency.items()):
            try:
                with self.db.begin() as conn:
                    results.append(self._make_batch(conn, merchant_id, currency, day, items, policy))
            except InsufficientFunds:
                log.warning("settlement net below zero exceeds the available balance: items wait",
                            merchant=merchant_id, currency=currency, date=day.isoformat())
            except Aborted:
                log.info("settlement items claimed by another run", merchant=merchant_id, currency=currency)
        return results

    def _make_batch(self, conn: Connection, merchant_id: str, currency: str, day: date, items: list[Any],
                    policy: Any) -> tuple[int, str]:
        now, batch_id, journal_id = clock.now(), new_id("stb"), new_id("jn")
        sales = [i for i in items if i.kind != RESERVE]
        released = sum(i.net_minor for i in items if i.kind == RESERVE)
        totals = BatchTotals()
        for item in sales:
            attr = ITEM_FIELDS.get(item.kind, "adjustments")
            signed = item.net_minor if attr == "adjustments" else -item.net_minor
            setattr(totals, attr, getattr(totals, attr) + (signed if attr in SIGNED_FIELDS else item.amount_minor))
            totals.fees += item.fee_minor
        sales_net = sum(i.net_minor for i in sales)
        held = round_half_up_div(max(sales_net, 0) * getattr(policy, "reserve_rate_bps", 0), 10_000)
        totals.reserve = held - released
        times = [i.event_time for i in sales] or [now]
        if not insert_ignore(conn, settlement_batches, {
                "id": batch_id, "merchant_id": merchant_id, "currency": currency,
                "settlement_date": day.isoformat(), "period_start": min(times), "period_end": max(times),
                "gross_minor": totals.gross, "refunds_minor": totals.refunds, "fees_minor": totals.fees,
                "splits_minor": totals.splits, "reserve_minor": totals.reserve, "adjustments_minor": totals.adjustments,
                "net_minor": totals.net, "item_count": len(items) + (1 if held else 0), "journal_id": journal_id,
                "payout_id": "", "create_time": now}):
            return 0, ""  # this date is settled already (an earlier run, or another replica right now)
        ids = [i.journal_id for i in items]
        claimed = conn.execute(update(settlement_queue).where(settlement_queue.c.journal_id.in_(ids),
                                                              settlement_queue.c.batch_id.is_(None))
                               .values(batch_id=batch_id)).rowcount
        if claimed != len(ids):
            raise Aborted("settlement items were claimed concurrently")
        if held:
            self._hold_reserve(conn, merchant_id, currency, batch_id, held, day, policy, now)
        if sales_net + released - held != totals.net:
            raise AssertionError("batch net differs from the sum of its items")
        reference = f"{self.party_owner(merchant_id)}/settlementBatches/{batch_id}"
        pending = self.party_account(AccountKind.MERCHANT_PENDING, merchant_id, currency)
        available = self.party_account(AccountKind.MERCHANT_AVAILABLE, merchant_id, currency)
        reserve = self.party_account(AccountKind.MERCHANT_RESERVE, merchant_id, currency)
        lines = (transfer(pending, available, sales_net - held) + transfer(pending, reserve, held)
                 + transfer(reserve, available, released))
        if lines:
            repo.post_journal(conn, JournalDraft(
                JournalKind.SETTLEMENT, reference, f"settlement:{merchant_id}:{currency}:{day.isoformat()}",
                f"settlement of {day.isoformat()}: {len(items)} items", tuple(lines), self.party_merchant(merchant_id),
                now), now, journal_id)
        else:
            conn.execute(update(settlement_batches).where(settlement_batches.c.id == batch_id).values(journal_id=""))
        # A split receiver (or merchant) that owes split money refunded after its payout pays it back first.
        recover_receivable(conn, self.party_account, merchant_id, currency, reference, f"split-recovery:{batch_id}",
                           self.party_merchant(merchant_id), now)
        payout_id = self._automatic_payout(conn, merchant_id, currency, batch_id, policy)
        return 1, payout_id

    @staticmethod
    def _hold_reserve(conn: Connection, merchant_id: str, currency: str, batch_id: str, held: int, day: date,
                      policy: Any, now: datetime) -> None:
        """The batch's reserve item (settled now) and its release, due `reserve_days` later."""
        release = day + timedelta(days=int(policy.reserve_days))
        reference = f"merchants/{merchant_id}/settlementBatches/{batch_id}"
        common = {"merchant_id": merchant_id, "currency": currency, "kind": RESERVE, "reference": reference,
                  "merchant_reference": "", "amount_minor": held, "fee_minor": 0}
        conn.execute(insert(settlement_queue), [
            common | {"journal_id": new_id("rsv"), "net_minor": -held, "event_time": now, "batch_id": batch_id},
            common | {"journal_id": new_id("rsv"), "net_minor": held, "event_time": day_start(release),
                      "batch_id": None}])

    def _automatic_payout(self, conn: Connection, merchant_id: str, currency: str, batch_id: str,
                          policy: Any) -> str:
        """Automatic payouts are on when the policy names a minimum payout in this currency: the whole
        available balance goes out once it reaches the minimum (and is positive)."""
        if getattr(policy, "minimum_payout_currency", "") != currency:
            return ""
        account = repo.account_by_ref(conn, self.party_account(AccountKind.MERCHANT_AVAILABLE, merchant_id, currency))
        balance = account.balance if account else 0
        if balance <= 0 or balance < policy.minimum_payout_minor:
            return ""
        try:
            info = self.party_info(merchant_id)
        except Exception:
            log.exception("automatic payout skipped: merchant unavailable", merchant=merchant_id)
            return ""
        if info.state != "ACTIVE" or not info.settlement_account_last4:
            return ""
        payout_id = self.insert_payout(conn, merchant_id, currency, balance, "automatic payout", "AUTOMATIC",
                                       batch_id, info)
        conn.execute(update(settlement_batches).where(settlement_batches.c.id == batch_id)
                     .values(payout_id=payout_id))
        return payout_id

    # -- the daily job ----------------------------------------------------------------------------
    def scheduled_run(self, now: datetime | None = None) -> int:
        """Run today's settlement once, after the configured Beijing time; the replica that records the
        run does it. Returns how many batches it created."""
        if not self.settings.settlement_time.strip():
            return 0
        now = now or clock.now()
        local = now.astimezone(SHANGHAI)
        hour, _, minute = self.settings.settlement_time.partition(":")
        if (local.hour, local.minute) < (int(hour), int(minute or 0)):
            return 0
        day = local.date()
        with self.db.begin() as conn:
            if not insert_ignore(conn, settlement_runs, {"settlement_date": day.isoformat(), "start_time": now}):
                return 0
        result = self.settle_day(day)
        log.info("settlement run", date=day.isoformat(), created=result.created, payouts=len(result.payouts))
        return result.created


def parse_date(v: Violations, field: str, text: str) -> date | None:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        v.add(field, "must be a date YYYY-MM-DD")
        return None

