"""The system under test: a scratch database, `payhub serve` processes, and the merchant the load uses.

Everything here is created by the benchmark and removed at the end: a fresh PostgreSQL database on
127.0.0.1:5432 (PAYHUB_BENCH_POSTGRES_URL overrides the admin URL) or a temporary SQLite file, and a
`payhub serve --migrate --workers N` process tree that logs at `warning` only.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

PG_ADMIN_URL = os.environ.get("PAYHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class BenchDatabase:
    kind: str          # "postgres" | "sqlite"
    url: str           # SQLAlchemy URL payhub uses
    libpq_url: str     # psycopg URL (PostgreSQL only, else "")
    name: str          # database name or file path


@contextmanager
def postgres_database() -> Iterator[BenchDatabase]:
    """A fresh, empty PostgreSQL database (payhub migrates it at start-up); dropped on exit."""
    name = f"payhub_bench_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    libpq = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield BenchDatabase("postgres", libpq.replace("postgresql://", "postgresql+psycopg://", 1), libpq, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database(directory: Path) -> Iterator[BenchDatabase]:
    path = directory / "payhub-bench.db"
    yield BenchDatabase("sqlite", f"sqlite:///{path}", "", str(path))


def postgres_version() -> str:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except psycopg.Error:
        return "unreachable"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `payhub serve` process tree."""

    address: str
    admin_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_token}"),)

    def pids(self) -> list[int]:
        """The supervisor and its forked workers."""
        return [self.process.pid, *children_of(self.process.pid)]

    def worker_pids(self) -> list[int]:
        children = children_of(self.process.pid)
        return children or [self.process.pid]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def payhub_server(database: BenchDatabase, workers: int, directory: Path) -> Iterator[Server]:
    """Start `payhub serve --migrate --workers N` and wait until every worker answers SERVING."""
    port = free_port()
    admin = f"admin-{secrets.token_hex(16)}"
    env = {**os.environ,
           "PAYHUB_LISTEN": f"127.0.0.1:{port}", "PAYHUB_ADMIN_TOKEN": admin,
           "PAYHUB_DATA_DIR": str(directory), "PAYHUB_DATABASE_URL": database.url,
           "PAYHUB_LOG_LEVEL": "warning", "PAYHUB_METRICS_LISTEN": "",
           "PAYHUB_HTTP_LISTEN": f"127.0.0.1:{free_port()}", "PAYHUB_DRAIN_SECONDS": "0.1",
           "PAYHUB_GRACE_SECONDS": "2", "PAYHUB_INTERNAL_TOKEN": f"internal-{secrets.token_hex(16)}"}
    log_path = directory / f"server-{database.kind}-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - this Python, our own arguments
            [sys.executable, "-m", "payhub.cli.main", "serve", "--migrate", "--workers", str(workers)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(f"127.0.0.1:{port}", admin, process, log_path, workers)
    try:
        _wait_serving(server)
        yield server
    finally:
        server.stop()


def _wait_serving(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    # Several fresh connections, so that with SO_REUSEPORT every worker has probably been asked.
    confirmations = 0
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"payhub serve exited with {server.process.returncode}:\n{server.logs()}")
        if len(children_of(server.process.pid)) >= (server.workers if server.workers > 1 else 0):
            with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                try:
                    stub: Any = health_pb2_grpc.HealthStub(ch)
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    confirmations += reply.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    confirmations = 0
        if confirmations >= 4 * server.workers:
            return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"payhub serve did not become SERVING in {timeout:.0f} s:\n{server.logs()}")


# -- CPU accounting -------------------------------------------------------------------------------

def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat and int(stat[1]) == pid:
                found.append(int(entry))
    return found


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, …]."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process (its threads included), in seconds."""
    usage = {}
    for pid in pids:
        stat = _read_stat(pid)
        if stat:
            usage[pid] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
    return usage


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def postgres_backend_pids(database: BenchDatabase) -> list[int]:
    """The PostgreSQL backends serving the benchmark database (the server's pool)."""
    if database.kind != "postgres":
        return []
    with psycopg.connect(database.libpq_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchall()
    return [int(r[0]) for r in rows]


def postgres_commits(database: BenchDatabase) -> int | None:
    """Committed transactions in the benchmark database so far (pg_stat_database)."""
    if database.kind != "postgres":
        return None
    with psycopg.connect(database.libpq_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else None


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@contextmanager
def scratch_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="payhub-bench-") as name:
        yield Path(name)


@dataclass(frozen=True)
class WindowSample:
    seconds: float
    server_cpu: float           # seconds of CPU used by the payhub processes
    postgres_cpu: float | None  # seconds of CPU used by the backends of the benchmark database
    commits: int | None         # transactions committed in the benchmark database
    machine_busy: float         # fraction of all cores busy (everything on the box)
    worker_busy: tuple[float, ...] = ()  # fraction of one core each server worker used


class ServerMeter:
    """Samples the server, its database backends and the machine around a measured window."""

    def __init__(self, server: Server, database: BenchDatabase) -> None:
        self.server, self.database = server, database

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.server0 = cpu_seconds(self.server.pids())
        self.pg_pids = postgres_backend_pids(self.database)
        self.pg0 = cpu_seconds(self.pg_pids)
        self.commits0 = postgres_commits(self.database)
        self.busy0 = machine_busy()

    def stop(self) -> WindowSample:
        busy1 = machine_busy()
        server1 = cpu_seconds(self.server.pids())
        pg_pids = sorted(set(self.pg_pids) | set(postgres_backend_pids(self.database)))
        pg1 = cpu_seconds(pg_pids)
        commits1 = postgres_commits(self.database)
        busy = (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1])
        seconds = time.monotonic() - self.t0
        workers = tuple(sorted(((server1[p] - self.server0.get(p, 0.0)) / seconds
                                for p in self.server.worker_pids() if p in server1), reverse=True))
        return WindowSample(
            seconds, cpu_delta(self.server0, server1),
            cpu_delta(self.pg0, pg1) if self.database.kind == "postgres" else None,
            commits1 - self.commits0 if commits1 is not None and self.commits0 is not None else None, busy,
            workers)


def create_merchant(server: Server) -> tuple[str, str]:
    """An approved merchant with an API key and the sandbox channel for cards, made through
    MerchantService with the admin token. Returns (merchant name, API key secret)."""
    from payhub.common.v1 import common_pb2
    from payhub.merchant.v1 import merchant_pb2 as pb
    from payhub.merchant.v1 import merchant_pb2_grpc

    def rid() -> str:
        return secrets.token_hex(16)

    md = server.admin_metadata()
    with grpc.insecure_channel(server.address) as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        merchant = stub.CreateMerchant(pb.CreateMerchantRequest(request_id=rid(), merchant=pb.Merchant(
            legal_name="Bench Load Co., Ltd.", display_name="Bench", business_category="ecommerce",
            country_code="CN", contact=pb.Contact(name="Bench", email="bench@example.com"),
            settlement_account=pb.SettlementAccount(account_name="Bench Load Co., Ltd.", bank_name="Bench Bank",
                                                    account_number="6222020000000000"))),
            metadata=md, timeout=10).merchant
        stub.ApproveMerchant(pb.ApproveMerchantRequest(name=merchant.name, request_id=rid()), metadata=md, timeout=10)
        stub.ConfigureChannel(pb.ConfigureChannelRequest(parent=merchant.name, request_id=rid(),
                                                         channel_config=pb.ChannelConfig(
            channel="sandbox", payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD], priority=0,
            credentials={"merchant_no": "bench", "secret": "bench-secret"})), metadata=md, timeout=10)
        key = stub.CreateApiKey(pb.CreateApiKeyRequest(parent=merchant.name, request_id=rid(),
                                                       api_key=pb.ApiKey(description="payhub bench")),
                                metadata=md, timeout=10)
    return merchant.name, key.secret
