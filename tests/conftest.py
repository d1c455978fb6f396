"""Shared fixtures: databases on SQLite and PostgreSQL, and real `payhub serve` processes.

PostgreSQL tests use the server at 127.0.0.1:5432 (PAYHUB_TEST_POSTGRES_URL overrides); each test
session creates its own database and drops it at the end. An unreachable server fails the run
instead of skipping it, unless PAYHUB_TEST_SKIP_POSTGRES=1 is set.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select, text

from payhub.kernel.db import Database
from payhub.kernel.migrate import upgrade
from payhub.kernel.outbox import outbox_events
from payhub.kernel.outbox_horizon import safe_position
from payhub.kernel.schema import full_metadata

PG_ADMIN_URL = os.environ.get("PAYHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("PAYHUB_TEST_SKIP_POSTGRES") == "1"


def _sqlalchemy_url(libpq_url: str) -> str:
    return libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """Create a fresh, migrated PostgreSQL database; drop it on exit."""
    if SKIP_PG:
        pytest.skip("PAYHUB_TEST_SKIP_POSTGRES=1")
    name = f"payhub_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({exc}); the suite proves correctness "
                    "on PostgreSQL. Set PAYHUB_TEST_SKIP_POSTGRES=1 to skip those tests locally.")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _sqlalchemy_url(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session's `db`/`pg_db` fixtures."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'payhub.db'}"
    upgrade(url)
    return url


def _wipe(db: Database) -> None:
    tables = [t.name for t in reversed(full_metadata().sorted_tables)]
    with db.begin() as conn:
        if db.is_postgres:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated, empty database on each engine (the test runs once per engine)."""
    url = request.getfixturevalue(f"{request.param}_database_url")
    database = Database(url, pool_size=8)
    _wipe(database)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(postgres_database_url: str) -> Iterator[Database]:
    """A migrated, empty PostgreSQL database, for concurrency tests that only PostgreSQL can prove."""
    database = Database(postgres_database_url, pool_size=32)
    _wipe(database)
    yield database
    database.dispose()


def sequence_all(db: Database, timeout: float = 30.0) -> None:
    """Wait until every committed event is readable: on PostgreSQL, until the outbox's safe horizon
    has passed them (it waits for this database's transactions that are writing events)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as conn:
            head = conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one()
            safe = safe_position(conn, fresh=True)
        if safe is None or safe >= head:
            return
        assert time.monotonic() < deadline, f"events up to {head} never became readable (horizon {safe})"
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    address: str
    admin_token: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin_token}"),)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_server(tmp: Path, *, database_url: str | None = None, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), own_process_group: bool = False) -> RunningServer:
    """Start `payhub serve --migrate` as a real process and wait until health says SERVING.
    `own_process_group`: in a session of its own, so a test can kill -9 it with all its workers
    (os.killpg(server.process.pid, SIGKILL)) the way an orchestrator kills a pod."""
    extra_env = extra_env or {}
    listen = extra_env.get("PAYHUB_LISTEN", f"127.0.0.1:{free_port()}")
    admin = extra_env.get("PAYHUB_ADMIN_TOKEN", f"admin-{secrets.token_hex(16)}")
    env = {**os.environ, "PAYHUB_LISTEN": listen, "PAYHUB_ADMIN_TOKEN": admin,
           "PAYHUB_DATA_DIR": str(tmp), "PAYHUB_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
           "PAYHUB_HTTP_LISTEN": f"127.0.0.1:{free_port()}", "PAYHUB_DRAIN_SECONDS": "0.2",
           "PAYHUB_INTERNAL_TOKEN": f"internal-{secrets.token_hex(16)}", **extra_env}
    if database_url:
        env["PAYHUB_DATABASE_URL"] = database_url
    log_path = tmp / f"server-{listen.rsplit(':', 1)[1]}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "payhub.cli.main", "serve", "--migrate", *args],
                                   env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=own_process_group)
    server = RunningServer(listen, admin, tmp, process, log_path, env)
    wait_serving(server)
    return server


def wait_serving(server: RunningServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"payhub serve exited with {server.process.returncode}:\n{server.logs()}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)  # type: ignore[attr-defined]
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    server.stop(9)
    raise RuntimeError(f"payhub serve did not become SERVING:\n{server.logs()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One `payhub serve` process (all services, SQLite) shared by a test module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One `payhub serve` process on its own PostgreSQL database, shared by a test module."""
    with new_postgres_database() as url:
        running = start_server(tmp_path_factory.mktemp("pgserver"), database_url=url)
        yield running
        running.stop()
