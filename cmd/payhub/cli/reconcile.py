"""`payhub reconcile import`: ImportStatement for a statement file on disk, in process (streamed: no
size limit, unlike the gRPC message). Prints the statement's summary; exit 0 when the day reconciled
with no discrepancy, 1 when it found some, 2 when the file could not be imported."""

from __future__ import annotations

from pathlib import Path

from payhub.kernel.config import Settings
from payhub.kernel.errors import PayhubError, Violations
from payhub.kernel.migrate import is_migrated
from payhub.server.context import AppContext


def import_file(settings: Settings, channel: str, day: str, path: Path, merchant: str = "", account: str = "",
                fmt: str = "") -> int:
    ctx = AppContext.create(settings.replace(services="all", background_workers=False))
    try:
        if not is_migrated(ctx.db):
            print("the database is not migrated: run `payhub migrate`")
            return 2
        service = ctx.component("settlement").service  # type: ignore[attr-defined]
        v = Violations()
        src = service._source(v, channel, account, day, fmt, f"merchants/{merchant}" if merchant else "", True)
        v.raise_if_any()
        with path.open("rb") as stream:
            row = service.import_stream(src, stream)
    except (PayhubError, OSError) as exc:
        print(f"not imported: {exc}")
        return 2
    finally:
        ctx.db.dispose()
    print(f"statements/{row['id']} {row['channel']} {row['statement_date']}: {row['line_count']} lines, "
          f"{row['matched_count']} matched, {row['discrepancy_count']} discrepancies, "
          f"{row['carried_over_count']} carried to the next day, summary "
          f"{'matches' if row['summary_matches'] else 'DIFFERS: ' + row['summary_mismatch_detail']}")
    return 0 if row["discrepancy_count"] == 0 else 1
