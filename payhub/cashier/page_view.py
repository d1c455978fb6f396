"""What one render of the hosted page shows, worked out from the session (pure; no I/O).

The page has a fixed frame (merchant, order, amount, countdown) and a panel that changes with the
session: the method list, a QR code, a redirect, the OTP field, waiting, or the result. The panel is
rendered on its own too, so the script swaps it in when polling sees a change (no reload).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from payhub.cashier.domain import (
    CheckoutSession,
    MethodOption,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    RedirectStep,
    SdkStep,
    SessionState,
    Step,
    WaitStep,
)
from payhub.cashier.page_assets import asset_url, origin_of
from payhub.cashier.page_format import format_amount, format_seconds
from payhub.cashier.page_text import Texts

ICONS = {"CARD": "icons/card.svg", "ALIPAY": "icons/alipay.svg", "WECHAT_PAY": "icons/wechat_pay.svg",
         "UNIONPAY": "icons/unionpay.svg", "WALLET": "icons/wallet.svg"}
# Panels that offer another method: the open session's list, and under a QR code, redirect or app step
# (the service closes the shown attempt when the consumer submits another method).
SWITCHABLE = ("qr", "redirect", "sdk")
WITH_METHODS = ("methods", *SWITCHABLE)
# Notices the page shows after a refused post (the redirect carries only this code, never input).
NOTICES = ("otp_wrong", "invalid_card_number", "invalid_expiry", "invalid_cvc", "invalid_input", "form_expired",
           "expired", "not_now", "method_unavailable", "busy", "unavailable")


@dataclass(frozen=True)
class MethodView:
    method: str
    display_name: str
    icon: str
    flow: str
    recommended: bool
    recommendation_text: str
    checked: bool


@dataclass(frozen=True)
class PanelView:
    """The changing part of the page. `kind`: methods | qr | redirect | sdk | otp | wait | succeeded |
    failed | expired."""

    kind: str
    session_id: str
    state: str
    version: int
    csrf_token: str
    methods: list[MethodView] = field(default_factory=list)
    failure_message: str = ""
    notice: str = ""
    qr_url: str = ""
    qr_expire: str = ""
    redirect: RedirectStep | None = None
    otp: OtpStep | None = None
    return_url: str = ""
    poll_seconds: float = 2.0
    request_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def card_selected(self) -> bool:
        return any(m.checked and m.method == "CARD" for m in self.methods)


def panel_kind(session: CheckoutSession, now: datetime) -> str:
    if session.state is SessionState.EXPIRED or (not session.ended and session.expire_time <= now):
        return "expired"
    if session.state is SessionState.SUCCEEDED:
        return "succeeded"
    if session.state is SessionState.FAILED:
        return "failed"
    return _step_kind(session.next_step) if session.state is not SessionState.OPEN else "methods"


def _step_kind(step: Step | None) -> str:
    if isinstance(step, QrCodeStep):
        return "qr"
    if isinstance(step, RedirectStep):
        return "redirect"
    if isinstance(step, SdkStep):
        return "sdk"
    if isinstance(step, OtpStep):
        return "otp"
    if isinstance(step, PaymentResult):
        return "succeeded" if step.status == "SUCCEEDED" else "methods"
    return "wait"


def method_views(options: list[MethodOption], selected: str, avoid: str = "") -> list[MethodView]:
    """The offered methods; the one checked is the consumer's last choice if still offered, else the
    recommended one, else the first, passing over `avoid` (the method that just failed) when there is
    another."""
    names = [o.method for o in options]
    others = [o for o in options if o.method != avoid] or options
    chosen = (selected if selected in names else
              next((o.method for o in others if o.recommended), others[0].method if others else ""))
    return [MethodView(o.method, o.display_name, asset_url(ICONS.get(o.method, "icons/card.svg")), o.flow,
                       o.recommended, o.recommendation_text, o.method == chosen) for o in options]


def build_panel(session: CheckoutSession, options: list[MethodOption], csrf_token: str, now: datetime,
                notice: str = "") -> PanelView:
    kind = panel_kind(session, now)
    step = session.next_step
    if kind == "redirect" and isinstance(step, RedirectStep) and not safe_url(step.url):
        kind, step = "wait", None  # a channel URL that is not http(s) never becomes a link
    failure = session.last_failure if kind in ("methods", "failed") else None
    if kind == "failed" and isinstance(step, PaymentResult) and step.status == "FAILED":
        failure = step
    # After a failed attempt the list preselects another method than the one that just failed.
    selected, avoid = ("", session.selected_method) if failure is not None else (session.selected_method, "")
    if kind in SWITCHABLE:  # "use another method": the ones besides the method being shown
        options, selected = [o for o in options if o.method != session.selected_method], ""
    return PanelView(
        kind=kind, session_id=session.id, state=session.state.value, version=session.version,
        csrf_token=csrf_token, methods=method_views(options, selected, avoid) if kind in WITH_METHODS else [],
        failure_message=failure.failure_message if failure is not None else "",
        notice=notice if notice in NOTICES and not (kind == "expired" and notice == "expired") else "",
        qr_url=f"/cashier/{session.id}/qr.svg?v={session.version}" if kind == "qr" else "",
        qr_expire=_clock(step.expire_time) if isinstance(step, QrCodeStep) and step.expire_time else "",
        redirect=step if isinstance(step, RedirectStep) else None,
        otp=step if isinstance(step, OtpStep) else None,
        return_url=safe_url(session.return_url) if kind == "succeeded" else "",
        poll_seconds=step.poll_interval_seconds if isinstance(step, WaitStep) and step.poll_interval_seconds > 0
        else 2.0)


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class PageView:
    """The whole page: the frame and its first panel."""

    t: Texts
    panel: PanelView
    merchant_name: str
    monogram: str
    logo_url: str
    subject: str
    currency: str
    amount_symbol: str
    amount_number: str
    remaining_seconds: int
    remaining_text: str
    theme_url: str
    client_type: str


def build_page(session: CheckoutSession, panel: PanelView, t: Texts, now: datetime) -> PageView:
    symbol, number = format_amount(session.currency, session.amount_minor)
    remaining = max(0, int((session.expire_time - now).total_seconds())) if not session.ended else 0
    name = session.branding.display_name
    color = session.branding.theme_color.lstrip("#").lower() or "default"
    return PageView(
        t=t, panel=panel, merchant_name=name, monogram=(name[:1] or "¥").upper(),
        logo_url=f"/cashier/{session.id}/logo" if session.branding.logo_url else "",
        subject=session.subject, currency=session.currency, amount_symbol=symbol, amount_number=number,
        remaining_seconds=remaining, remaining_text=format_seconds(remaining),
        theme_url=f"{STATIC_THEME_PREFIX}{color}.css", client_type=session.client_type)


STATIC_THEME_PREFIX = "/cashier/theme/"


def form_targets(panel: PanelView) -> tuple[str, ...]:
    """Origins the page's forms may post to besides payhub: a POST redirect's gateway."""
    if panel.redirect is not None and panel.redirect.method == "POST":
        origin = origin_of(panel.redirect.url)
        return (origin,) if origin else ()
    return ()


def safe_url(url: str) -> str:
    """Only http(s) URLs become links (the service validates return URLs; this keeps a javascript: URL
    from ever reaching an href or a script's navigation)."""
    return url if urlsplit(url).scheme in ("http", "https") else ""
