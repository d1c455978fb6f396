"""python -m payhub.bench [--quick] [--db postgres|sqlite|both] [--workers N] [--duration S] [--scenarios a,b]"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from payhub.bench.runner import QUICK, Options, run
from payhub.bench.scenarios import PAYMENT_SCENARIOS


def parse(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m payhub.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few seconds per scenario (smoke test)")
    p.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    p.add_argument("--workers", type=int, help="payhub server processes (default: 2 on PostgreSQL, 1 on SQLite)")
    p.add_argument("--clients", type=int, help="load-generator processes (default 2)")
    p.add_argument("--concurrency", type=int, help="calls in flight per load-generator process (default 32)")
    p.add_argument("--duration", type=float, help="measured seconds per scenario (default 10)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per scenario (default 2)")
    p.add_argument("--scenarios", help=f"comma-separated subset of {','.join(PAYMENT_SCENARIOS)} "
                                       "(empty: ceilings only)")
    p.add_argument("--rate", type=float, help="open-loop rate of the paced `pay` run, followed by one at half "
                   "the closed-loop `pay` rate (default 800; 0: no paced runs)")
    p.add_argument("--profile", metavar="DIR", help="py-spy the server workers during `pay`, summary into DIR")
    p.add_argument("--output", default="bench-results", help="directory for the Markdown table ('' : none)")
    args = p.parse_args(argv)
    options = Options(**QUICK) if args.quick else Options()  # type: ignore[arg-type]
    changes: dict[str, object] = {}
    if args.db != "both":
        changes["databases"] = (args.db,)
    if args.scenarios is not None:
        names = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
        unknown = [n for n in names if n not in PAYMENT_SCENARIOS]
        if unknown:
            p.error(f"unknown scenario(s) {unknown}; choose from {','.join(PAYMENT_SCENARIOS)}")
        changes["scenarios"] = names
    for name, value in [("workers", args.workers), ("clients", args.clients), ("concurrency", args.concurrency),
                        ("duration", args.duration), ("warmup", args.warmup), ("fixed_rate", args.rate)]:
        if value is not None:
            changes[name] = value
    changes["output"] = Path(args.output) if args.output else None
    changes["profile"] = Path(args.profile) if args.profile else None
    return replace(options, **changes)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    report = run(options)
    print(report.text())
    if options.output is not None:
        print(f"\nwritten to {report.write(options.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
