"""Which payment methods a session offers, how each one runs on the consumer's device, in which
order they are shown and which one is recommended. Pure: the service gathers the facts (routable
channels, the customer's last method, success counts, costs) and these functions decide.

Client types: on PC wallets show a QR code (Alipay precreate, WeChat native) and cards a form; on
phones (H5) wallets redirect to their H5 pay page, except WeChat Pay inside WeChat's own browser,
which runs the JSAPI flow; in apps (APP) wallets hand parameters to their SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from payhub.cashier.domain import METHODS, MethodOption, Reason

# (session client type, method) -> (trade client type, flow the page runs)
_FLOWS: dict[tuple[str, str], tuple[str, str]] = {
    ("PC", "ALIPAY"): ("NATIVE_QR", "QR_CODE"), ("PC", "WECHAT_PAY"): ("NATIVE_QR", "QR_CODE"),
    ("PC", "CARD"): ("PC", "CARD_FORM"), ("PC", "UNIONPAY"): ("PC", "REDIRECT"), ("PC", "WALLET"): ("PC", "INSTANT"),
    ("H5", "ALIPAY"): ("H5", "REDIRECT"), ("H5", "WECHAT_PAY"): ("H5", "REDIRECT"),
    ("H5", "CARD"): ("H5", "CARD_FORM"), ("H5", "UNIONPAY"): ("H5", "REDIRECT"), ("H5", "WALLET"): ("H5", "INSTANT"),
    ("APP", "ALIPAY"): ("APP", "APP_SDK"), ("APP", "WECHAT_PAY"): ("APP", "APP_SDK"),
    ("APP", "CARD"): ("APP", "CARD_FORM"), ("APP", "UNIONPAY"): ("APP", "APP_SDK"),
    ("APP", "WALLET"): ("APP", "INSTANT"),
}
JSAPI = ("JSAPI", "JSAPI")

_NAMES = {
    "ALIPAY": ("支付宝", "Alipay"), "WECHAT_PAY": ("微信支付", "WeChat Pay"), "CARD": ("银行卡", "Bank card"),
    "UNIONPAY": ("银联", "UnionPay"), "WALLET": ("余额", "Wallet balance"),
}
_REASONS = {
    Reason.LAST_USED: ("上次使用", "Used last time"),
    Reason.HIGHEST_SUCCESS_RATE: ("支付成功率高", "Most likely to succeed"),
    Reason.LOWEST_COST: ("推荐", "Recommended"),
    Reason.MERCHANT_PREFERENCE: ("推荐", "Recommended"),
}
# A success rate recommends only with this many recent attempts and this much lead over the next.
MIN_SAMPLE = 5
RATE_LEAD = 0.05


def in_wechat(user_agent: str) -> bool:
    return "MicroMessenger" in user_agent


def flow_of(client_type: str, method: str, user_agent: str = "") -> tuple[str, str]:
    """(trade client type, page flow) for a method in a session of this client type."""
    if method == "WECHAT_PAY" and client_type == "H5" and in_wechat(user_agent):
        return JSAPI
    return _FLOWS[(client_type, method)]


def text(pair: tuple[str, str], locale: str) -> str:
    return pair[1] if locale == "en" else pair[0]


def display_name(method: str, locale: str) -> str:
    return text(_NAMES[method], locale)


def candidates(hidden: Sequence[str], has_customer: bool) -> list[str]:
    """Methods worth asking the router about: not hidden; the wallet only for a known customer."""
    return [m for m in METHODS if m not in hidden and (m != "WALLET" or has_customer)]


def display_order(available: Sequence[str], merchant_order: Sequence[str]) -> list[str]:
    """The merchant's order first, then payhub's default order."""
    ranked = [m for m in merchant_order if m in available]
    return ranked + [m for m in METHODS if m in available and m not in ranked]


@dataclass(frozen=True)
class Signals:
    """What the recommendation knows: the customer's last successful method, recent (succeeded,
    attempts) per method for the merchant, and the merchant's cost per method (None: unknown)."""

    last_used: str = ""
    outcomes: Mapping[str, tuple[int, int]] | None = None
    costs: Mapping[str, int | None] | None = None


def recommend(ordered: Sequence[str], signals: Signals) -> tuple[str, Reason] | None:
    """The recommended method and why: the customer's last successful method, else a clearly higher
    success rate, else the lowest cost among methods with similar success, else the merchant's first."""
    if not ordered:
        return None
    if signals.last_used in ordered:
        return signals.last_used, Reason.LAST_USED
    rates = _rates(ordered, signals.outcomes or {})
    if rates:
        best = max(rates, key=lambda m: (rates[m], -ordered.index(m)))
        others = [r for m, r in rates.items() if m != best]
        if others and rates[best] - max(others) >= RATE_LEAD:
            return best, Reason.HIGHEST_SUCCESS_RATE
    cheapest = _cheapest(ordered, signals.costs or {})
    if cheapest:
        return cheapest, Reason.LOWEST_COST
    return ordered[0], Reason.MERCHANT_PREFERENCE


def _rates(ordered: Sequence[str], outcomes: Mapping[str, tuple[int, int]]) -> dict[str, float]:
    """Smoothed success rates of the methods with enough recent attempts."""
    return {m: (outcomes[m][0] + 1) / (outcomes[m][1] + 2) for m in ordered
            if m in outcomes and outcomes[m][1] >= MIN_SAMPLE}


def _cheapest(ordered: Sequence[str], costs: Mapping[str, int | None]) -> str:
    priced = {m: c for m in ordered if (c := costs.get(m)) is not None}
    if len(priced) < 2:
        return ""
    low = min(priced.values())
    winners = [m for m, c in priced.items() if c == low]
    return winners[0] if len(winners) < len(priced) else ""


def options(ordered: Sequence[str], flows: Mapping[str, str], locale: str,
            pick: tuple[str, Reason] | None, icon_base: str = "") -> list[MethodOption]:
    """The options in display order, the recommended one first and marked; icons are the hosted
    page's (`{icon_base}/{method}.svg`, served by payhub.cashier.http)."""
    if pick is not None:
        ordered = [pick[0], *[m for m in ordered if m != pick[0]]]
    result = []
    for method in ordered:
        chosen = pick is not None and pick[0] == method
        reason = pick[1] if chosen and pick else None
        result.append(MethodOption(
            method=method, display_name=display_name(method, locale), flow=flows[method],
            icon_url=f"{icon_base}/{method.lower()}.svg" if icon_base else "",
            recommended=chosen, recommendation_reason=reason.value if reason else "",
            recommendation_text=text(_REASONS[reason], locale) if reason else ""))
    return result
