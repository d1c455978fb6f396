"""The hosted cashier page (收银台), served by payhub's HTTP edge.

    GET  /cashier/{session}           the page (server-rendered; zh-CN or en)
    GET  /cashier/{session}/state     JSON for the page's script: the panel again when the session changed
    GET  /cashier/{session}/qr.svg    the current QR code, drawn by payhub
    GET  /cashier/{session}/logo      the merchant's logo, fetched and served by payhub (page_logo.py)
    POST /cashier/{session}/pay       choose a method (card details in the body), CSRF-checked
    POST /cashier/{session}/otp       the risk challenge's one-time code, CSRF-checked
    GET  /cashier/static/{file}       CSS, script, icons;  GET /cashier/theme/{RRGGBB}.css  the merchant colour

Thin: every route calls the CashierClient (blocking, so in the thread pool). The session id in the
path is the consumer's capability; the page never puts card data in a URL and posts redirect (303)
back to the page, which shows the outcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from payhub.cashier.client import CashierClient
from payhub.cashier.domain import (
    CheckoutSession,
    Consumer,
    MethodOption,
    OtpStep,
    QrCodeStep,
    SessionState,
    StepResult,
)
from payhub.cashier.page_assets import assets, content_security_policy, theme_css
from payhub.cashier.page_client_ip import client_ip
from payhub.cashier.page_csrf import COOKIE, FIELD, CsrfTokens
from payhub.cashier.page_format import choose_locale
from payhub.cashier.page_forms import notice_for, parse_form, request_id, submission
from payhub.cashier.page_logo import LogoFetcher
from payhub.cashier.page_qr import qr_svg
from payhub.cashier.page_render import render_error, render_page, render_panel
from payhub.cashier.page_text import Texts
from payhub.cashier.page_view import build_page, build_panel, form_targets, panel_kind
from payhub.kernel import clock
from payhub.kernel.crypto import KeyRing
from payhub.kernel.errors import NotFound, PayhubError
from payhub.kernel.logging import get_logger

if TYPE_CHECKING:
    from payhub.server.context import AppContext

log = get_logger("payhub.cashier.http")

_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_-]{16,64}$")
_THEME = re.compile(r"^(?:[0-9a-f]{6}|default)$")
_IMMUTABLE = "public, max-age=31536000, immutable"


class CashierPages:
    def __init__(self, client: Callable[[], CashierClient], csrf: CsrfTokens, secure_cookies: bool,
                 logos: LogoFetcher, client_ip_header: str = "") -> None:
        self._client = client
        self._client_ip_header = client_ip_header
        self._csrf = csrf
        self._secure = secure_cookies
        self._logos = logos

    # -- reading --------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        sid = request.path_params["session"]
        loaded = await self._load(request, sid)
        if isinstance(loaded, Response):
            return loaded
        session, options = loaded
        t, token, fresh = self._texts(request, session), *self._token(request, sid)
        now = clock.now()
        panel = build_panel(session, options, token, now, request.query_params.get("notice", ""))
        response = HTMLResponse(render_page(build_page(session, panel, t, now)), headers={
            "content-security-policy": content_security_policy(session.branding.frame_ancestors,
                                                               form_targets(panel))})
        return self._with_cookie(response, sid, token, fresh)

    async def state(self, request: Request) -> Response:
        """What the page's script polls: {"changed": false} while nothing changed (one cheap read),
        else the state and the panel to swap in."""
        sid = request.path_params["session"]
        if not _SESSION_ID.match(sid):
            return JSONResponse({"error": "not_found"}, status_code=404)
        seen, seen_kind = request.query_params.get("v", ""), request.query_params.get("k", "")
        try:
            version = await run_in_threadpool(self._client().session_version, sid)
        except NotFound:
            return JSONResponse({"error": "not_found"}, status_code=404)
        now = clock.now()
        quiet = version.state is SessionState.OPEN and version.expire_time > now
        if quiet and seen == str(version.version) and seen_kind == "methods":
            return JSONResponse({"changed": False, "state": version.state.value})
        loaded = await self._load(request, sid)
        if isinstance(loaded, Response):
            return JSONResponse({"error": "unavailable"}, status_code=loaded.status_code)
        session, options = loaded
        kind = panel_kind(session, now)
        if seen == str(session.version) and seen_kind == kind:
            return JSONResponse({"changed": False, "state": session.state.value})
        token, fresh = self._token(request, sid)
        panel = build_panel(session, options, token, now)
        body = {"changed": True, "state": session.state.value, "version": session.version, "kind": kind,
                "remaining": max(0, int((session.expire_time - now).total_seconds())),
                "panel": render_panel(panel, self._texts(request, session))}
        return self._with_cookie(JSONResponse(body), sid, token, fresh)

    async def qr(self, request: Request) -> Response:
        session = await self._session(request.path_params["session"])
        if session is None or session.ended or not isinstance(session.next_step, QrCodeStep):
            return Response(status_code=404)
        svg = await run_in_threadpool(qr_svg, session.next_step.content)
        return Response(svg, media_type="image/svg+xml")

    async def logo(self, request: Request) -> Response:
        session = await self._session(request.path_params["session"])
        url = session.branding.logo_url if session is not None else ""
        logo = await run_in_threadpool(self._logos.get, url) if url else None
        if logo is None:
            return Response(status_code=404)
        return Response(logo.body, media_type=logo.content_type, headers={"cache-control": "private, max-age=600"})

    # -- posting --------------------------------------------------------------------------------
    async def pay(self, request: Request) -> Response:
        return await self._post(request, lambda sid, form, consumer: self._client().submit_method(
            sid, submission(form, consumer), request_id(form)))

    async def otp(self, request: Request) -> Response:
        return await self._post(request, lambda sid, form, _consumer: self._client().verify_challenge(
            sid, form.get("code", "").strip(), request_id(form)))

    async def _post(self, request: Request, act: Callable[[str, dict[str, str], Consumer], StepResult]) -> Response:
        sid = request.path_params["session"]
        if not _SESSION_ID.match(sid):
            return self._not_found(request)
        form = parse_form(await request.body())
        if not self._csrf.check(sid, request.cookies.get(COOKIE, ""), form.get(FIELD, "")):
            return _back(sid, "form_expired")
        consumer = Consumer(ip_address=client_ip(request, self._client_ip_header),
                            user_agent=request.headers.get("user-agent", "")[:512])
        try:
            result = await run_in_threadpool(act, sid, form, consumer)
        except PayhubError as exc:
            try:
                notice = notice_for(exc)
            except NotFound:
                return self._not_found(request)
            # The reason only: messages may quote input, and this form may hold a card.
            log.info("cashier post refused", session=sid[:12], reason=exc.reason, notice=notice)
            return _back(sid, notice)
        wrong_code = isinstance(result.step, OtpStep) and result.step.previous_code_incorrect
        return _back(sid, "otp_wrong" if wrong_code else "")

    # -- helpers --------------------------------------------------------------------------------
    async def _session(self, sid: str) -> CheckoutSession | None:
        if not _SESSION_ID.match(sid):
            return None
        try:
            return await run_in_threadpool(self._client().get_session, sid)
        except NotFound:
            return None

    async def _load(self, request: Request, sid: str) -> tuple[CheckoutSession, list[MethodOption]] | Response:
        """The session and, while it is open, the methods on offer; an error page otherwise."""
        if not _SESSION_ID.match(sid):
            return self._not_found(request)
        client = self._client()
        try:
            session = await run_in_threadpool(client.get_session, sid)
            options: list[MethodOption] = []
            if _offers_methods(session):
                options = await run_in_threadpool(client.list_methods, sid, request.headers.get("user-agent", ""))
        except NotFound:
            return self._not_found(request)
        except PayhubError as exc:
            log.warning("cashier page unavailable", session=sid[:12], reason=exc.reason)
            t = Texts(choose_locale("", request.headers.get("accept-language", "")))
            return _error_page(t, t.unavailable, 503)
        return session, options

    def _not_found(self, request: Request) -> Response:
        t = Texts(choose_locale("", request.headers.get("accept-language", "")))
        return _error_page(t, t.not_found, 404)

    @staticmethod
    def _texts(request: Request, session: CheckoutSession) -> Texts:
        return Texts(choose_locale(session.locale, request.headers.get("accept-language", "")))

    def _token(self, request: Request, sid: str) -> tuple[str, bool]:
        """This browser's CSRF token for the session (the cookie's when it is valid), and whether it is new."""
        cookie = request.cookies.get(COOKIE, "")
        if cookie and self._csrf.valid_for(sid, cookie):
            return cookie, False
        return self._csrf.issue(sid), True

    def _with_cookie(self, response: Response, sid: str, token: str, fresh: bool) -> Response:
        if fresh:
            response.set_cookie(COOKIE, token, path=f"/cashier/{sid}", httponly=True, samesite="strict",
                                secure=self._secure)
        return response


def _offers_methods(session: CheckoutSession) -> bool:
    """An open session lists its methods; one showing a QR code, redirect or app step offers the others
    (an OTP challenge must be answered first)."""
    if session.ended or session.expire_time <= clock.now():
        return False
    return session.state is SessionState.OPEN or (
        session.state is SessionState.AWAITING_ACTION and not isinstance(session.next_step, OtpStep))


def _back(sid: str, notice: str) -> Response:
    """Post/redirect/get: back to the page, which shows the session's new state (and the notice)."""
    url = f"/cashier/{sid}" + (f"?notice={notice}" if notice else "")
    return RedirectResponse(url, status_code=303)


async def static_file(request: Request) -> Response:
    asset = assets().get(request.path_params["name"])
    if asset is None:
        return Response(status_code=404)
    cache = _IMMUTABLE if request.query_params.get("v") == asset.version else "no-cache"
    return Response(asset.body, media_type=asset.content_type, headers={"cache-control": cache})


async def theme(request: Request) -> Response:
    color = request.path_params["color"]
    if not _THEME.match(color):
        return Response(status_code=404)
    css = theme_css(f"#{color}" if color != "default" else "")
    return Response(css, media_type="text/css; charset=utf-8", headers={"cache-control": _IMMUTABLE})


def routes(ctx: AppContext, client: Callable[[], CashierClient]) -> list[BaseRoute]:
    """What the cashier component hands the HTTP edge (`Component.http_routes()`)."""
    secure = ctx.settings.effective_cashier_base_url.startswith("https://")  # cookies only over TLS then
    return page_routes(client, ctx.keyring, secure_cookies=secure,
                       client_ip_header=ctx.settings.cashier_client_ip_header)


def page_routes(client: Callable[[], CashierClient], keyring: KeyRing, *, secure_cookies: bool,
                logos: LogoFetcher | None = None, client_ip_header: str = "") -> list[BaseRoute]:
    pages = CashierPages(client, CsrfTokens(keyring), secure_cookies, logos or LogoFetcher(), client_ip_header)
    return [
        Route("/cashier/static/{name:path}", static_file, methods=["GET"]),
        Route("/cashier/theme/{color}.css", theme, methods=["GET"]),
        Route("/cashier/{session}", pages.page, methods=["GET"]),
        Route("/cashier/{session}/state", pages.state, methods=["GET"]),
        Route("/cashier/{session}/qr.svg", pages.qr, methods=["GET"]),
        Route("/cashier/{session}/logo", pages.logo, methods=["GET"]),
        Route("/cashier/{session}/pay", pages.pay, methods=["POST"]),
        Route("/cashier/{session}/otp", pages.otp, methods=["POST"]),
    ]


def _error_page(t: Texts, message: str, status: int) -> HTMLResponse:
    """An error page loads the page's own stylesheet: it needs the page's CSP (no framing), not the
    web edge's default `default-src 'none'`, under which the browser blocks it."""
    return HTMLResponse(render_error(t, message), status_code=status,
                        headers={"content-security-policy": content_security_policy(())})
