"""kill -9 of a real `payhub serve --workers 2` on PostgreSQL in the middle of confirmations: after a
restart, the background jobs alone bring every payment to a final state that agrees with the sandbox
bank's book (issue 8: payments charged at the channel used to stay PROCESSING forever)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from payhub.channel.tables import sandbox_transactions
from payhub.kernel.db import Database
from payhub.trade.tables import payment_attempts, payments, refunds
from tests.conftest import RunningServer, new_postgres_database, start_server
from tests.e2e.test_trade_e2e import Api

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

APPROVE, DECLINE, UNKNOWN_THEN_SUCCESS = "4242424242424242", "4000000000000002", "4000000000000119"
CARDS = (APPROVE,) * 6 + (DECLINE, UNKNOWN_THEN_SUCCESS)
OPEN = ("PROCESSING", "REQUIRES_ACTION")
# Short enough for a test to wait out, long enough that a confirmation on a busy box answers first.
ENV = {"PAYHUB_REQUERY_GRACE_SECONDS": "4", "PAYHUB_THREADS": "8", "PAYHUB_DB_POOL_SIZE": "12"}


@pytest.fixture
def database_url() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


def _start(tmp: Path, url: str) -> RunningServer:
    return start_server(tmp, database_url=url, extra_env=ENV, args=("--workers", "2"), own_process_group=True)


def _kill_group(server: RunningServer) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(30)


def _confirm_until_killed(api: Api, server: RunningServer, db: Database, names: list[str]) -> None:
    """Confirm every payment from 8 threads and kill -9 the server group once some confirmations
    have answered and another is caught between its claim and its result."""
    answered = threading.Event()
    done = [0]

    def confirm(i: int) -> None:
        try:
            api.confirm(names[i], CARDS[i % len(CARDS)])
        except grpc.RpcError:
            return  # the server died under this call
        done[0] += 1
        if done[0] >= 8:
            answered.set()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(confirm, i) for i in range(len(names))]
        answered.wait(60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _caught_in_flight(db):
            time.sleep(0.005)
        _kill_group(server)
        for f in futures:
            f.result()


def _caught_in_flight(db: Database) -> bool:
    """An approving card's attempt still PROCESSING: a confirmation between its claim and its answer."""
    with db.read() as conn:
        rows = conn.execute(select(payment_attempts.c.method).where(
            payment_attempts.c.state == "PROCESSING")).scalars().all()
    return any('"card_last4":"4242"' in m for m in rows)


def _wait_all_final(db: Database, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as conn:
            open_attempts = conn.execute(select(payment_attempts.c.id, payment_attempts.c.channel).where(
                payment_attempts.c.state.in_(OPEN))).all()
            open_payments = conn.execute(select(payments.c.id).where(payments.c.state.in_(OPEN))).all()
        if not open_attempts and not open_payments:
            return
        assert time.monotonic() < deadline, f"still open after restart: {open_attempts} {open_payments}"
        time.sleep(0.5)


def test_every_payment_reaches_a_final_state_that_agrees_with_the_bank_after_kill_9(
        tmp_path: Path, database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    server = _start(tmp_path, database_url)
    try:
        api = Api(server)
        names = [api.create().name for _ in range(80)]
        _confirm_until_killed(api, server, db, names)
        with db.read() as conn:
            in_flight = conn.execute(select(payment_attempts.c.id).where(
                payment_attempts.c.state == "PROCESSING")).all()
        assert in_flight, "the kill caught no confirmation in flight"

        server = _start(tmp_path, database_url)  # same data dir: same development key ring
        _wait_all_final(db)
        _assert_agrees_with_the_bank(db)
    finally:
        _kill_group(server)
        db.dispose()


def _assert_agrees_with_the_bank(db: Database) -> None:
    with db.read() as conn:
        bank = {r.attempt_id: r for r in conn.execute(select(sandbox_transactions))}
        attempts = {r.id: r for r in conn.execute(select(payment_attempts))}
        auto_refunded = set(conn.execute(select(refunds.c.attempt_id).where(refunds.c.automatic)).scalars())
        rows = conn.execute(select(payments)).all()
    assert set(bank) <= set(attempts), "the bank holds a transaction payhub has no attempt for"
    for attempt in attempts.values():
        txn = bank.get(attempt.id)
        paid = txn is not None and txn.state == "SUCCEEDED"
        assert attempt.channel == "sandbox", attempt
        assert (attempt.state == "SUCCEEDED") == paid or attempt.id in auto_refunded, (attempt, txn)
    confirmed = 0
    for p in rows:
        assert p.state in ("CREATED", "SUCCEEDED", "FAILED", "CLOSED"), p
        if p.state == "CREATED":
            continue  # the kill came before its confirmation reached the server
        confirmed += 1
        current = bank.get(p.current_attempt_id)
        if p.state == "SUCCEEDED":
            assert current is not None and current.state == "SUCCEEDED", p
            assert p.amount_captured == p.amount_minor == current.captured_minor
        else:
            assert current is None or current.state != "SUCCEEDED" or p.current_attempt_id in auto_refunded, p
    assert confirmed >= 8
