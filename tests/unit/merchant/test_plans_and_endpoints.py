"""Fee plans, the webhook endpoint with secret rotation, and the settlement policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.kernel.idempotency import idempotency_keys
from payhub.merchant.client import LocalMerchantClient
from payhub.merchant.domain import FeeRule, SettlementCycle, SettlementPolicy
from payhub.merchant.service import MerchantCenter
from payhub.merchant.tables import merchant_webhook_secrets
from tests.unit.merchant.factories import ManualClock, acting_as, create_active, fresh, key, merchant_key

CARD = FeeRule("CARD", "CNY", 60, 0, 10, 2_500)
ALIPAY = FeeRule("ALIPAY", "CNY", 55, 0, 0, 0)


def fields_of(exc: InvalidArgument) -> list[str]:
    return [v.field for v in exc.violations]


# -- fee plan -------------------------------------------------------------------------------------

def test_fee_plan_is_replaced_as_a_whole_and_feeds_the_client(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    assert mc.get_fee_plan(merchant.id).rules == ()
    mc.set_fee_plan(merchant.id, (CARD, ALIPAY), fresh())
    plan = mc.set_fee_plan(merchant.id, (CARD,), fresh())
    assert plan.rules == (CARD,) and plan.update_time is not None
    assert mc.get_fee_plan(merchant.id) == plan
    client_plan = LocalMerchantClient(mc).fee_plan(merchant.id)
    assert client_plan.fee("CARD", "CNY", 1_250) == 10       # 7.5 fen -> 8, raised to the minimum 10
    assert client_plan.fee("CARD", "CNY", 1_000_000) == 2_500  # capped


@pytest.mark.parametrize(("rule", "field"), [
    (FeeRule("UNSPECIFIED", "CNY", 60, 0, 0, 0), "fee_plan.rules[0].payment_method"),
    (FeeRule("CARD", "cny", 60, 0, 0, 0), "fee_plan.rules[0].currency_code"),
    (FeeRule("CARD", "CNY", 10_001, 0, 0, 0), "fee_plan.rules[0].rate_bps"),
    (FeeRule("CARD", "CNY", 60, -1, 0, 0), "fee_plan.rules[0].fixed_fee_minor"),
    (FeeRule("CARD", "CNY", 60, 0, 500, 100), "fee_plan.rules[0].minimum_fee_minor"),
])
def test_bad_fee_rule_names_the_field_and_keeps_the_old_plan(mc: MerchantCenter, rule: FeeRule, field: str) -> None:
    merchant = create_active(mc)
    old = mc.set_fee_plan(merchant.id, (ALIPAY,), fresh())
    with pytest.raises(InvalidArgument) as info:
        mc.set_fee_plan(merchant.id, (rule,), fresh())
    assert fields_of(info.value) == [field]
    assert mc.get_fee_plan(merchant.id) == old


def test_duplicate_method_and_currency_is_rejected(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.set_fee_plan(merchant.id, (CARD, ALIPAY, CARD), fresh())
    assert fields_of(info.value) == ["fee_plan.rules[2].payment_method"]


def test_fee_plan_of_unknown_merchant_is_not_found(mc: MerchantCenter) -> None:
    with pytest.raises(NotFound):
        mc.set_fee_plan("mch_missing", (CARD,), fresh())
    with pytest.raises(NotFound):
        mc.get_fee_plan("mch_missing")


# -- webhook endpoint --------------------------------------------------------------------------

def test_first_set_generates_a_secret_and_later_sets_keep_it(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    first = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", False, None, fresh())
    assert first.new_secret.startswith("whsec_")
    moved = mc.set_webhook_endpoint(merchant.id, "https://shop.example/v2/hooks", False, None, fresh())
    assert moved.new_secret == ""
    assert moved.endpoint.url == "https://shop.example/v2/hooks"
    assert mc.webhook_target_of(merchant.id) == ("https://shop.example/v2/hooks", [first.new_secret])
    public = mc.get_webhook_endpoint(merchant.id)
    assert first.new_secret not in repr(public)
    assert public.secrets[0].display_prefix == first.new_secret[:10]


def test_rotation_keeps_the_old_secret_for_the_grace_period(mc: MerchantCenter, clock_at: ManualClock) -> None:
    merchant = create_active(mc)
    client = LocalMerchantClient(mc, cache_seconds=0)
    old = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", False, None, fresh()).new_secret
    clock_at.advance(timedelta(minutes=1))
    new = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", True, None, fresh()).new_secret
    assert new and new != old
    target = client.webhook_target(merchant.id)
    assert target is not None and target.secrets == (new, old)
    infos = mc.get_webhook_endpoint(merchant.id).secrets
    assert [i.expire_time for i in infos] == [None, clock_at.now + timedelta(hours=24)]
    clock_at.advance(timedelta(hours=23, minutes=59))
    assert mc.webhook_target_of(merchant.id) == ("https://shop.example/hooks", [new, old])
    clock_at.advance(timedelta(minutes=2))
    assert mc.webhook_target_of(merchant.id) == ("https://shop.example/hooks", [new])


def test_rotation_with_a_custom_grace_period(mc: MerchantCenter, clock_at: ManualClock, db: Database) -> None:
    merchant = create_active(mc)
    mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", False, None, fresh())
    new = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", True, timedelta(0), fresh()).new_secret
    assert mc.webhook_target_of(merchant.id) == ("https://shop.example/hooks", [new])
    assert mc.purge_expired_secrets() == 1
    with db.read() as conn:
        assert len(conn.execute(select(merchant_webhook_secrets)).all()) == 1


def test_webhook_secrets_are_encrypted_at_rest(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    secret = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", False, None, fresh()).new_secret
    with db.read() as conn:
        rows = [*conn.execute(select(merchant_webhook_secrets)).all(), *conn.execute(select(idempotency_keys)).all()]
    dump = " ".join(str(v) for row in rows for v in row)
    assert secret not in dump and secret[6:] not in dump


@pytest.mark.parametrize(("url", "grace", "field"), [
    ("", None, "webhook_endpoint.url"),
    ("http://shop.example/hooks", None, "webhook_endpoint.url"),
    ("ftp://shop.example/hooks", None, "webhook_endpoint.url"),
    ("https://user:pw@shop.example/hooks", None, "webhook_endpoint.url"),
    ("https://shop.example/hooks", timedelta(days=8), "rotation_grace_period"),
    ("https://shop.example/hooks", timedelta(seconds=-1), "rotation_grace_period"),
])
def test_bad_webhook_input_names_the_field(mc: MerchantCenter, url: str, grace: timedelta | None,
                                           field: str) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.set_webhook_endpoint(merchant.id, url, True, grace, fresh())
    assert fields_of(info.value) == [field]
    assert mc.webhook_target_of(merchant.id) is None


def test_plain_http_is_allowed_for_localhost(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    assert mc.set_webhook_endpoint(merchant.id, "http://127.0.0.1:8099/hooks", False, None, fresh()).new_secret


def test_missing_endpoint_is_not_found_and_the_client_says_none(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    with pytest.raises(NotFound):
        mc.get_webhook_endpoint(merchant.id)
    assert LocalMerchantClient(mc).webhook_target(merchant.id) is None


def test_replayed_rotation_returns_the_same_secret_and_rotates_once(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", False, None, fresh())
    request = key("rotate-1", merchant.id, True)
    first = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", True, None, request)
    again = mc.set_webhook_endpoint(merchant.id, "https://shop.example/hooks", True, None, request)
    assert again == first
    target = mc.webhook_target_of(merchant.id)
    assert target is not None and len(target[1]) == 2


# -- settlement policy ---------------------------------------------------------------------------

def test_settlement_policy_defaults_to_t_plus_1_and_can_be_set(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    default = mc.get_settlement_policy(merchant.id)
    assert (default.cycle, default.n_days, default.minimum_payout_minor, default.update_time) == (
        SettlementCycle.T_PLUS_1, 0, 0, None)
    saved = mc.set_settlement_policy(SettlementPolicy(merchant.id, SettlementCycle.D_PLUS_N, 3, "CNY", 10_000, None),
                                     fresh())
    assert (saved.cycle, saved.n_days, saved.minimum_payout_currency, saved.minimum_payout_minor) == (
        SettlementCycle.D_PLUS_N, 3, "CNY", 10_000)
    assert mc.get_settlement_policy(merchant.id) == saved
    assert LocalMerchantClient(mc).settlement_policy(merchant.id) == saved


@pytest.mark.parametrize(("policy", "field"), [
    ((SettlementCycle.D_PLUS_N, 0, "", 0), "settlement_policy.n_days"),
    ((SettlementCycle.D_PLUS_N, 31, "", 0), "settlement_policy.n_days"),
    ((SettlementCycle.T_PLUS_0, 2, "", 0), "settlement_policy.n_days"),
    ((SettlementCycle.T_PLUS_1, 0, "XYZ", 100), "settlement_policy.minimum_payout.currency_code"),
    ((SettlementCycle.T_PLUS_1, 0, "CNY", -1), "settlement_policy.minimum_payout.amount_minor"),
])
def test_bad_settlement_policy_names_the_field(mc: MerchantCenter, policy: tuple[SettlementCycle, int, str, int],
                                               field: str) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.set_settlement_policy(SettlementPolicy(merchant.id, *policy, None), fresh())
    assert fields_of(info.value) == [field]
    assert mc.get_settlement_policy(merchant.id).update_time is None


def test_policies_of_another_merchant_are_not_found(mc: MerchantCenter) -> None:
    mine, other = create_active(mc), create_active(mc)
    with acting_as(merchant_key(mine.id)):
        for read in (mc.get_settlement_policy, mc.get_fee_plan, mc.get_webhook_endpoint):
            with pytest.raises(NotFound):
                read(other.id)
        with pytest.raises(NotFound):
            mc.set_webhook_endpoint(other.id, "https://evil.example/hooks", False, None, fresh())
    assert mc.webhook_target_of(other.id) is None
