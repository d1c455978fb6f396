"""request_id on every mutating request: a replay answers the first response, a reuse with other
parameters is ALREADY_EXISTS/REQUEST_ID_REUSED, and nothing is done twice — also after a restart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from payhub.merchant.v1 import merchant_pb2 as pb
from sqlalchemy import func, select

from payhub.kernel import idempotency
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, FailedPrecondition
from payhub.kernel.idempotency import idempotency_keys
from payhub.merchant import convert
from payhub.merchant.domain import MerchantState
from payhub.merchant.service import MerchantCenter
from payhub.merchant.tables import merchants
from tests.unit.merchant.factories import ManualClock, center, create_active, draft, fresh, key, sandbox_config


def merchant_count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(merchants)).scalar_one())


def test_replay_returns_the_first_response_even_after_a_restart(mc: MerchantCenter, db: Database) -> None:
    request = key("create-1", "demo")
    first = mc.create_merchant(draft(), request)
    assert center(db).create_merchant(draft(), request) == first  # a new process: same answer
    assert merchant_count(db) == 1


def test_same_request_id_with_other_parameters_is_refused(mc: MerchantCenter, db: Database) -> None:
    mc.create_merchant(draft(), key("create-1", "demo"))
    with pytest.raises(AlreadyExists) as info:
        mc.create_merchant(draft(display_name="Other"), key("create-1", "other"))
    assert info.value.reason == "REQUEST_ID_REUSED"
    assert merchant_count(db) == 1


def test_replayed_transition_answers_the_first_result_not_a_state_error(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    approve = key("approve-1", merchant.id)
    first = mc.approve_merchant(merchant.id, approve)
    assert mc.approve_merchant(merchant.id, approve) == first
    with pytest.raises(FailedPrecondition):
        mc.approve_merchant(merchant.id, fresh())  # a new request really is a second approval


def test_replay_answers_the_snapshot_of_the_first_call(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    suspend = key("suspend-1", merchant.id)
    first = mc.suspend_merchant(merchant.id, "risk review", suspend)
    mc.reactivate_merchant(merchant.id, fresh())
    replay = mc.suspend_merchant(merchant.id, "risk review", suspend)
    assert replay == first and replay.state is MerchantState.SUSPENDED
    assert mc.get_merchant(merchant.id).state is MerchantState.ACTIVE


def test_failed_request_is_not_remembered_and_may_be_retried(mc: MerchantCenter, db: Database) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    suspend = key("suspend-early", merchant.id)
    with pytest.raises(FailedPrecondition):
        mc.suspend_merchant(merchant.id, "too early", suspend)
    mc.approve_merchant(merchant.id, fresh())
    assert mc.suspend_merchant(merchant.id, "too early", suspend).state is MerchantState.SUSPENDED


def test_keys_are_scoped_per_merchant_and_rpc(mc: MerchantCenter) -> None:
    a, b = create_active(mc), create_active(mc)
    mc.configure_channel(a.id, sandbox_config(), key("cfg-1", "same"))
    mc.configure_channel(b.id, sandbox_config(), key("cfg-1", "same"))  # another merchant: its own key space
    assert len(mc.list_channel_configs(b.id, 0, "").items) == 1


def test_fingerprint_ignores_map_order() -> None:
    one = pb.ConfigureChannelRequest(parent="merchants/m", request_id="r")
    one.channel_config.credentials.update({"a": "1", "b": "2"})
    two = pb.ConfigureChannelRequest(parent="merchants/m", request_id="r")
    two.channel_config.credentials.update({"b": "2", "a": "1"})
    assert convert.request_key(one) == convert.request_key(two)
    two.channel_config.credentials["b"] = "3"
    assert convert.request_key(one) != convert.request_key(two)


def test_purge_keeps_keys_for_at_least_a_day(mc: MerchantCenter, db: Database, clock_at: ManualClock) -> None:
    mc.create_merchant(draft(), key("old", 1))
    clock_at.advance(timedelta(hours=23))
    mc.create_merchant(draft(), key("new", 2))
    assert idempotency.purge(db) == 0
    assert idempotency.purge(db, timedelta(hours=1)) == 0  # never below the 24 h promise
    clock_at.advance(timedelta(hours=26))  # "old" is 49 h old, "new" 26 h
    assert idempotency.purge(db) == 1
    with db.read() as conn:
        assert conn.execute(select(idempotency_keys.c.key)).scalars().all() == ["new"]


def test_run_once_saves_nothing_when_the_work_fails(db: Database) -> None:
    def boom(_conn: object) -> bytes:
        raise RuntimeError("work failed")

    with pytest.raises(RuntimeError):
        idempotency.run_once(db, "test.scope", "k1", "f" * 64, boom)  # type: ignore[arg-type]
    assert idempotency.run_once(db, "test.scope", "k1", "f" * 64, lambda _c: b"ok") == b"ok"
    assert idempotency.run_once(db, "test.scope", "k1", "f" * 64, lambda _c: b"again") == b"ok"
