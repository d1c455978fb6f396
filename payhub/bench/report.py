"""The results table: aligned text for the terminal, Markdown (with the machine it ran on) for the file."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


@dataclass
class Row:
    db: str
    name: str
    rate: float | None = None            # operations/s
    p50: float | None = None             # ms
    p95: float | None = None
    p99: float | None = None
    errors: int | None = None
    server_cpu: float | None = None      # ms of server CPU per operation
    postgres_cpu: float | None = None    # ms of PostgreSQL backend CPU per operation
    client_cpu: float | None = None      # ms of load-generator CPU per operation
    commits: float | None = None         # database commits per operation (measured)
    busy: float | None = None            # fraction of the machine's cores busy
    rpc_ceiling: float | None = None     # operations/s the near-empty RPC rate allows
    commit_ceiling: float | None = None  # operations/s the commit rate allows
    note: str = ""

    @property
    def rpc_ratio(self) -> float | None:
        return _ratio(self.rate, self.rpc_ceiling)

    @property
    def commit_ratio(self) -> float | None:
        return _ratio(self.rate, self.commit_ceiling)

    @property
    def ceiling_ratio(self) -> float | None:
        ceilings = [c for c in (self.rpc_ceiling, self.commit_ceiling) if c]
        return _ratio(self.rate, min(ceilings)) if ceilings else None


def _ratio(value: float | None, ceiling: float | None) -> float | None:
    return value / ceiling if value is not None and ceiling else None


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


COLUMNS: list[tuple[str, Callable[[Row], str], bool]] = [  # header, cell, right-aligned
    ("db", lambda r: r.db, False),
    ("scenario", lambda r: r.name, False),
    ("ops/s", lambda r: _num(r.rate), True),
    ("p50 ms", lambda r: _num(r.p50, 1), True),
    ("p95 ms", lambda r: _num(r.p95, 1), True),
    ("p99 ms", lambda r: _num(r.p99, 1), True),
    ("errors", lambda r: _num(r.errors), True),
    ("server CPU ms/op", lambda r: _num(r.server_cpu, 2), True),
    ("PG CPU ms/op", lambda r: _num(r.postgres_cpu, 2), True),
    ("client CPU ms/op", lambda r: _num(r.client_cpu, 2), True),
    ("commits/op", lambda r: _num(r.commits, 2), True),
    ("box busy", lambda r: "-" if r.busy is None else f"{r.busy:.0%}", True),
    ("RPC ceiling ops/s", lambda r: _num(r.rpc_ceiling), True),
    ("x RPC", lambda r: _num(r.rpc_ratio, 2), True),
    ("commit ceiling ops/s", lambda r: _num(r.commit_ceiling), True),
    ("x commit", lambda r: _num(r.commit_ratio, 2), True),
    ("x ceiling", lambda r: _num(r.ceiling_ratio, 2), True),
    ("note", lambda r: r.note, False),
]

LEGEND = """\
- ops/s: operations completed per second in the measured window (a `pay` operation is CreatePayment +
  ConfirmPayment); latencies are per operation, from the client; errors are failed operations.
- server / PG / client CPU: utime+stime of the payhub processes, of the PostgreSQL backends serving the
  benchmark database, and of the load-generator processes, per operation. box busy: all cores, everything.
- commits/op: transactions committed in the benchmark database per operation (pg_stat_database, includes
  background jobs; sampled at the window's edges, so approximate).
- RPC ceiling: the near-empty RPC rate (Health/Check with the same grpc.aio client processes) divided by
  the RPCs per operation; commit ceiling: the single-row commit rate from 8 connections divided by the
  nominal commits per operation (pay 2, refund 1, mixed 1.5). x ceiling is against the lower of the two."""


def text_table(rows: Sequence[Row]) -> str:
    cells = [[c[0] for c in COLUMNS], *[[c[1](r) for c in COLUMNS] for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def fmt(line: list[str]) -> str:
        return "  ".join(v.rjust(w) if COLUMNS[i][2] else v.ljust(w)
                         for i, (v, w) in enumerate(zip(line, widths, strict=True))).rstrip()
    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    out.extend(fmt(line) for line in cells[1:])
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    head = "| " + " | ".join(c[0] for c in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if c[2] else "---" for c in COLUMNS) + "|"
    body = ["| " + " | ".join(c[1](r).replace("|", "/") for c in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


# -- the machine ------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _h2load_version() -> str:
    exe = shutil.which("h2load")
    if not exe:
        return "not installed"
    run = subprocess.run([exe, "--version"],  # noqa: S603 - h2load from PATH
                          capture_output=True, text=True, timeout=10, check=False)
    return run.stdout.strip() or "?"


def machine_info(postgres_version: str) -> dict[str, str]:
    return {
        "cores": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": _memory(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "SQLAlchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "PostgreSQL": postgres_version,
        "SQLite": sqlite3.sqlite_version,
        "h2load": _h2load_version(),
    }


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def text(self) -> str:
        lines = [text_table(self.rows)]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        machine = ", ".join(f"{k} {v}" for k, v in self.machine.items())
        settings = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        parts = [f"# payhub benchmark, {self.started:%Y-%m-%d %H:%M} UTC", "",
                 f"Machine: {machine}.", "", f"Settings: {settings}.", "",
                 "Server, database and load generator share the machine.", "",
                 markdown_table(self.rows), "", LEGEND]
        if self.notes:
            parts += ["", "Notes:", "", *(f"- {n}" for n in self.notes)]
        return "\n".join(parts) + "\n"

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"bench-{self.started:%Y%m%d-%H%M%S}.md"
        path.write_text(self.markdown())
        return path
