"""The recommendation and the device flows (pure): the customer's last method first, then a clearly
better success rate, then the lowest cost, else the merchant's first choice."""

from __future__ import annotations

from payhub.cashier.domain import Reason
from payhub.cashier.methods import Signals, display_order, flow_of, options, recommend

ORDER = ["ALIPAY", "WECHAT_PAY", "CARD"]


def test_last_used_wins_when_it_is_on_offer() -> None:
    assert recommend(ORDER, Signals(last_used="CARD")) == ("CARD", Reason.LAST_USED)
    assert recommend(ORDER, Signals(last_used="UNIONPAY")) == ("ALIPAY", Reason.MERCHANT_PREFERENCE)


def test_a_clearly_higher_success_rate_with_enough_attempts_wins() -> None:
    clear = Signals(outcomes={"ALIPAY": (5, 10), "CARD": (19, 20)})
    assert recommend(ORDER, clear) == ("CARD", Reason.HIGHEST_SUCCESS_RATE)
    close = Signals(outcomes={"ALIPAY": (18, 20), "CARD": (19, 20)})
    pick = recommend(ORDER, close)
    assert pick is not None and pick[1] is not Reason.HIGHEST_SUCCESS_RATE
    thin = Signals(outcomes={"ALIPAY": (0, 3), "CARD": (4, 4)})  # too few attempts to judge
    assert recommend(ORDER, thin) == ("ALIPAY", Reason.MERCHANT_PREFERENCE)


def test_among_similar_methods_the_cheapest_wins() -> None:
    assert recommend(ORDER, Signals(costs={"ALIPAY": 6, "WECHAT_PAY": 4, "CARD": None})) == \
        ("WECHAT_PAY", Reason.LOWEST_COST)
    assert recommend(ORDER, Signals(costs={"ALIPAY": 6, "WECHAT_PAY": 6})) == ("ALIPAY", Reason.MERCHANT_PREFERENCE)
    assert recommend([], Signals()) is None


def test_display_order_and_marking() -> None:
    ordered = display_order(["CARD", "ALIPAY", "UNIONPAY"], ["UNIONPAY", "WALLET"])
    assert ordered == ["UNIONPAY", "ALIPAY", "CARD"]
    shown = options(ordered, {"UNIONPAY": "REDIRECT", "ALIPAY": "QR_CODE", "CARD": "CARD_FORM"}, "en",
                    ("CARD", Reason.LAST_USED))
    assert [(o.method, o.recommended, o.recommendation_text) for o in shown] == [
        ("CARD", True, "Used last time"), ("UNIONPAY", False, ""), ("ALIPAY", False, "")]
    assert shown[0].display_name == "Bank card"


def test_flows_follow_the_device() -> None:
    assert flow_of("PC", "ALIPAY") == ("NATIVE_QR", "QR_CODE")
    assert flow_of("H5", "ALIPAY") == ("H5", "REDIRECT")
    assert flow_of("H5", "WECHAT_PAY", "Mozilla/5.0 MicroMessenger/8.0") == ("JSAPI", "JSAPI")
    assert flow_of("PC", "WECHAT_PAY", "Mozilla/5.0 MicroMessenger/8.0") == ("NATIVE_QR", "QR_CODE")
    assert flow_of("APP", "ALIPAY") == ("APP", "APP_SDK")
