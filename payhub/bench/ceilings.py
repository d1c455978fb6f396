"""Ceilings measured in the same run, so every scenario's figure is also a ratio to what this box can do.

- a near-empty RPC (grpc.health.v1.Health/Check) on the same server set-up: with the benchmark's own
  grpc.aio client processes (see load.py) and, when installed, with h2load (nghttp2-client), whose C
  client costs far less CPU per call;
- single-row commits from 8 connections: PostgreSQL (psycopg, autocommit INSERTs into a scratch
  table) and SQLite (WAL, synchronous=FULL, one writer at a time, as payhub configures it).
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from grpc_health.v1 import health_pb2

from payhub.bench.orchestration import BenchDatabase

COMMIT_CONNECTIONS = 8
H2LOAD_MISSING = "h2load not installed (apt-get install nghttp2-client)"


@dataclass(frozen=True)
class CommitCeiling:
    rate: float          # commits/s
    connections: int
    note: str = ""


# -- h2load -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class H2loadResult:
    rate: float | None   # successful requests/s, None when h2load is missing or failed
    note: str


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: 1 byte "not compressed", 4 bytes big-endian length, payload."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_health(address: str, seconds: float, *, clients: int = 8, streams: int = 16,
                  threads: int = 1) -> H2loadResult:
    """Drive Health/Check with h2load for `seconds` (after a 1 s warm-up)."""
    exe = shutil.which("h2load")
    if exe is None:
        return H2loadResult(None, H2LOAD_MISSING)
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        body.write(grpc_frame(health_pb2.HealthCheckRequest().SerializeToString()))
        body.flush()
        cmd = [exe, "-D", f"{max(seconds, 1):.0f}", "--warm-up-time", "1", "-c", str(clients),
               "-m", str(streams), "-t", str(threads), "-d", body.name,
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://{address}/grpc.health.v1.Health/Check"]
        try:
            run = subprocess.run(cmd,  # noqa: S603 - h2load from PATH, our own arguments
                                  capture_output=True, text=True, timeout=seconds + 30, check=False)
        except subprocess.TimeoutExpired:
            return H2loadResult(None, "h2load timed out")
    return parse_h2load(run.stdout)


def parse_h2load(output: str) -> H2loadResult:
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", output)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored", output)
    if not rate or not requests:
        return H2loadResult(None, "h2load failed: " + (output.strip().splitlines() or ["no output"])[-1])
    total, failed, errored = int(requests.group(1)), int(requests.group(5)), int(requests.group(6))
    ok2xx = int(codes.group(1)) if codes else 0
    if total == 0 or ok2xx == 0:
        return H2loadResult(None, f"h2load got no 2xx answers ({failed} failed, {errored} errored)")
    return H2loadResult(float(rate.group(1)) * (total - failed - errored) / total,
                        f"{ok2xx} HTTP 200 (grpc-status not checked)")


# -- commit rates -----------------------------------------------------------------------------------

def _pg_committer(url: str, table: str, window: _Window) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        insert = f"INSERT INTO {table} (payload) VALUES (%s)"
        start_at, stop_at = window.wait()
        done = 0
        while (now := time.time()) < stop_at:
            conn.execute(insert, ("x" * 32,))
            done += now >= start_at
    window.counts.put(done)


def postgres_commit_rate(database: BenchDatabase, seconds: float) -> CommitCeiling:
    """Single-row autocommit INSERTs from 8 processes (one connection each) into a scratch table."""
    table = "bench_commit_scratch"
    with psycopg.connect(database.libpq_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload text NOT NULL, "
                     "created timestamptz NOT NULL DEFAULT now())")
    with psycopg.connect(database.libpq_url, autocommit=True) as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    sync = str(row[0]) if row else "?"
    try:
        total = _run_committers(_pg_committer, (database.libpq_url, table), seconds)
    finally:
        with psycopg.connect(database.libpq_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return CommitCeiling(total / seconds, COMMIT_CONNECTIONS, f"synchronous_commit={sync}")


def _sqlite_committer(path: str, table: str, window: _Window) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    start_at, stop_at = window.wait()
    done = 0
    while (now := time.time()) < stop_at:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO {table} (payload) VALUES (?)", ("x" * 32,))
        conn.execute("COMMIT")
        done += now >= start_at
    conn.close()
    window.counts.put(done)


def sqlite_commit_rate(directory: Path, seconds: float) -> CommitCeiling:
    """Single-row write transactions from 8 processes on one SQLite file (they take turns)."""
    path = directory / "commit-ceiling.db"
    table = "bench_commit_scratch"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    try:
        total = _run_committers(_sqlite_committer, (str(path), table), seconds)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return CommitCeiling(total / seconds, COMMIT_CONNECTIONS, "WAL, synchronous=FULL")


@dataclass
class _Window:
    """Starts every committer together once all are connected: a warm-up, then the measured window."""

    barrier: Any
    counts: Any
    warmup: float
    seconds: float

    def wait(self) -> tuple[float, float]:
        self.barrier.wait(60)
        start_at = time.time() + self.warmup
        return start_at, start_at + self.seconds


def _run_committers(target: Callable[[str, str, _Window], None], args: tuple[str, str], seconds: float) -> int:
    ctx = multiprocessing.get_context("spawn")
    window = _Window(ctx.Barrier(COMMIT_CONNECTIONS), ctx.Queue(), min(1.0, seconds / 2), seconds)
    procs = [ctx.Process(target=target, args=(*args, window), daemon=True) for _ in range(COMMIT_CONNECTIONS)]
    for proc in procs:
        proc.start()
    total = sum(int(window.counts.get(timeout=seconds + 90)) for _ in procs)
    for proc in procs:
        proc.join(10)
    return total
