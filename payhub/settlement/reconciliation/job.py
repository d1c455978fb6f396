"""The daily statement fetch: after the channels publish day D's statements (around 10:00 Beijing on
D+1), fetch and import each (channel, merchant) account that had traffic on D and has no statement
for D yet. "Not generated yet" answers are retried on the next tick; a day already imported is
skipped, and importing the same file again changes nothing, so every replica may run the job."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, distinct, select

from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, Unavailable
from payhub.settlement.base import log
from payhub.settlement.reconciliation.importing import CHANNEL_FETCH, StatementSource
from payhub.settlement.reconciliation.lines import BEIJING, DAY_ZONES
from payhub.settlement.reconciliation.parsing import NATIVE_FORMATS
from payhub.settlement.reconciliation.tables import recon_book, recon_lines, recon_statements

PUBLISHED_AFTER = time(10, 30)   # Beijing; channels publish day D's statement around 10:00 on D+1
FETCH_INTERVAL = 300.0
LINES_KEPT_DAYS = 7   # staged lines are needed for the next day's run (carry-over); kept a week for queries


def purge_lines(service: Any, before: date) -> int:
    """Drop the staged lines of statements dated before `before` (the statements themselves and their
    discrepancies stay)."""
    with service.db.begin() as conn:
        old = select(recon_statements.c.id).where(recon_statements.c.statement_date < before.isoformat())
        return int(conn.execute(delete(recon_lines).where(recon_lines.c.statement_id.in_(old))).rowcount or 0)


def accounts_with_traffic(service: Any, day: date) -> list[tuple[str, str]]:
    """(channel, merchant) pairs with a completed transaction on `day` (in the channel's zone)."""
    pairs = []
    with service.db.read() as conn:
        for channel in NATIVE_FORMATS:
            start = datetime.combine(day, time(), DAY_ZONES.get(channel, BEIJING)).astimezone(UTC)
            rows = conn.execute(select(distinct(recon_book.c.merchant_id)).where(
                recon_book.c.channel == channel, recon_book.c.complete_time >= start,
                recon_book.c.complete_time < start + timedelta(days=1)))
            pairs += [(channel, str(m)) for m in rows.scalars()]
    return pairs


def fetch_due(service: Any, now: datetime | None = None) -> int:
    """One tick: import yesterday's statements that are published and not imported yet."""
    local = (now or clock.now()).astimezone(BEIJING)
    if local.time() < PUBLISHED_AFTER:
        return 0
    day = local.date() - timedelta(days=1)
    purge_lines(service, day - timedelta(days=LINES_KEPT_DAYS))
    service.catch_up_book()
    imported = 0
    for channel, merchant_id in accounts_with_traffic(service, day):
        src = StatementSource(channel, merchant_id, merchant_id, day, NATIVE_FORMATS[channel], CHANNEL_FETCH)
        if service._current(src) is not None:
            continue
        try:
            content = service.fetch_from_channel(channel, merchant_id, day)
            if not content:
                continue  # WeChat Pay: no statement for the day (yet)
            service.import_stream(src, io.BytesIO(content))
            imported += 1
        except (FailedPrecondition, Unavailable) as exc:
            log.info("statement not available yet", channel=channel, merchant=merchant_id, date=day.isoformat(),
                     reason=str(exc))
        except InvalidArgument as exc:
            log.error("statement could not be read", channel=channel, merchant=merchant_id, date=day.isoformat(),
                      error=str(exc))
    return imported
