"""The hosted page's HTTP routes behind payhub's real middleware, on an in-memory CashierClient:
what the consumer's browser receives (language, amount, CSP, CSRF) and what never leaves (card data)."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from payhub.cashier.client import CashierClient
from payhub.cashier.domain import OtpStep, RedirectStep, SessionState
from payhub.cashier.http import page_routes
from payhub.cashier.page_csrf import COOKIE
from payhub.cashier.page_logo import LogoFetcher
from payhub.kernel import clock
from payhub.kernel.crypto import KeyRing
from payhub.web.app import build_app
from payhub.web.server import HttpServer, bind_socket
from tests.unit.cashier.fake_cashier import DECLINED, SESSION_ID, WRONG_CODE, FakeCashier, new_session

PAGE = f"/cashier/{SESSION_ID}"
CARD = "4242424242424242"


@pytest.fixture
def fake() -> FakeCashier:
    return FakeCashier()


@contextmanager
def serve(fake: CashierClient, logos: LogoFetcher | None = None, client_ip_header: str = "") -> Iterator[httpx.Client]:
    """The routes behind payhub's real HTTP server and middleware (on a fake or the real cashier)."""
    keyring = KeyRing.parse("k1:" + base64.b64encode(os.urandom(32)).decode())
    app = build_app(page_routes(lambda: fake, keyring, secure_cookies=False, logos=logos,
                                client_ip_header=client_ip_header), ready=lambda: True)
    server = HttpServer(app, bind_socket("127.0.0.1", 0, reuse_port=False), grace_seconds=1)
    server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.address[1]}", timeout=10, trust_env=False) as client:
        yield client
    server.stop()
    assert server.join(10)


@pytest.fixture
def browser(fake: FakeCashier) -> Iterator[httpx.Client]:
    with serve(fake) as client:
        yield client


def csrf_of(html: str) -> str:
    return html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def card_form(token: str, number: str = CARD) -> dict[str, str]:
    return {"csrf_token": token, "request_id": "r1", "payment_method": "CARD", "card_number": number,
            "expiry_month": "12", "expiry_year": str(clock.now().year + 2), "security_code": "123"}


def test_the_page_shows_the_order_in_the_sessions_language_with_a_strict_csp(browser: httpx.Client) -> None:
    answer = browser.get(PAGE)
    assert answer.status_code == 200
    html = answer.text
    assert "Tea House" in html and "1,234.56" in html and "CNY" in html
    assert "Oolong tea &lt;b&gt;x2&lt;/b&gt;" in html, "the subject is escaped"
    assert 'value="CARD" data-flow="CARD_FORM" checked' in html, "the recommended method is preselected"
    assert "Used last time" in html and 'data-remaining="' in html
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors https://shop.example" in csp
    assert "<script>" not in html and " style=" not in html and "onclick" not in html
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Path={PAGE}" in cookie


def test_chinese_session_and_browser_language_fallback(browser: httpx.Client, fake: FakeCashier) -> None:
    fake.session = replace(fake.session, locale="zh-CN")
    assert "选择支付方式" in browser.get(PAGE).text
    fake.session = replace(fake.session, locale="")
    assert "Choose a payment method" in browser.get(PAGE, headers={"accept-language": "en-GB,en;q=0.9"}).text
    assert "选择支付方式" in browser.get(PAGE, headers={"accept-language": "fr, zh-TW;q=0.5"}).text


def test_a_post_without_the_pages_csrf_token_is_refused_and_submits_nothing(browser: httpx.Client,
                                                                            fake: FakeCashier) -> None:
    token = csrf_of(browser.get(PAGE).text)
    forged = browser.post(f"{PAGE}/pay", data=card_form("x.y"))
    assert forged.status_code == 303 and forged.headers["location"].endswith("?notice=form_expired")
    browser.cookies.clear()
    no_cookie = browser.post(f"{PAGE}/pay", data=card_form(token))
    assert no_cookie.headers["location"].endswith("?notice=form_expired")
    assert fake.submissions == []


def test_a_token_issued_for_another_session_does_not_pass(browser: httpx.Client, fake: FakeCashier) -> None:
    other = "cs_" + "B" * 32
    fake.session = new_session(id=other)
    token = csrf_of(browser.get(f"/cashier/{other}").text)
    fake.session = new_session()
    browser.cookies.clear()
    browser.cookies.set(COOKIE, token, domain="127.0.0.1", path=PAGE)
    answer = browser.post(f"{PAGE}/pay", data=card_form(token))
    assert answer.headers["location"].endswith("?notice=form_expired") and fake.submissions == []


def test_a_card_payment_posts_the_number_in_the_body_and_the_page_shows_success(
        browser: httpx.Client, fake: FakeCashier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = csrf_of(browser.get(PAGE).text)
    answer = browser.post(f"{PAGE}/pay", data=card_form(token, "4242 4242 4242 4242"))
    assert answer.status_code == 303 and answer.headers["location"] == PAGE
    submission, _ = fake.submissions[0]
    assert submission.card is not None and submission.card.number == CARD and submission.consumer.ip_address
    assert CARD not in repr(submission), "the dataclass hides the number"
    page = browser.get(PAGE).text
    assert "Payment successful" in page and 'data-return-url="https://shop.example/done"' in page
    assert CARD not in page and CARD not in caplog.text


def test_a_declined_card_shows_the_failure_and_the_methods_again_without_echoing_the_number(
        browser: httpx.Client, fake: FakeCashier) -> None:
    token = csrf_of(browser.get(PAGE).text)
    browser.post(f"{PAGE}/pay", data=card_form(token, DECLINED))
    page = browser.get(PAGE).text
    assert "The card was declined." in page and "Payment not completed" in page
    assert 'id="pay-form"' in page and DECLINED not in page
    assert 'value="ALIPAY" data-flow="QR_CODE" checked' in page, "another method than the declined card is preselected"


def test_a_bad_card_number_comes_back_as_a_notice_not_in_the_url(browser: httpx.Client) -> None:
    token = csrf_of(browser.get(PAGE).text)
    answer = browser.post(f"{PAGE}/pay", data=card_form(token, "1234"))
    assert answer.headers["location"] == f"{PAGE}?notice=invalid_card_number"
    assert "That card number is not valid" in browser.get(answer.headers["location"]).text


def test_a_qr_step_is_drawn_by_payhub_and_polling_sees_the_change(browser: httpx.Client, fake: FakeCashier) -> None:
    page = browser.get(PAGE).text
    token = csrf_of(page)
    quiet = browser.get(f"{PAGE}/state", params={"v": "1", "k": "methods"}).json()
    assert quiet == {"changed": False, "state": "OPEN"}
    browser.post(f"{PAGE}/pay", data={"csrf_token": token, "request_id": "r2", "payment_method": "ALIPAY"})
    polled = browser.get(f"{PAGE}/state", params={"v": "1", "k": "methods"}).json()
    assert polled["changed"] and polled["kind"] == "qr" and 'id="qr-image"' in polled["panel"]
    shown = browser.get(PAGE).text
    assert 'id="switch"' in shown and 'value="CARD"' in shown and 'value="ALIPAY"' not in shown, "the others"
    svg = browser.get(f"{PAGE}/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.content.startswith(b"<svg") and b"<script" not in svg.content
    fake.set(state=SessionState.SUCCEEDED, next_step=None)
    done = browser.get(f"{PAGE}/state", params={"v": str(polled["version"]), "k": "qr"}).json()
    assert done["kind"] == "succeeded" and "Payment successful" in done["panel"]
    assert browser.get(f"{PAGE}/qr.svg").status_code == 404, "no QR code once the session ended"


def test_a_post_redirect_step_is_an_auto_submitted_form_the_csp_lets_through(browser: httpx.Client,
                                                                           fake: FakeCashier) -> None:
    fake.set(state=SessionState.AWAITING_ACTION, next_step=RedirectStep(
        "https://openapi.alipay.com/gateway.do?charset=utf-8", "POST", {"biz_content": '{"a":"<b>"}', "sign": "x"}))
    answer = browser.get(PAGE)
    page = answer.text
    assert 'id="redirect-form" method="post" action="https://openapi.alipay.com/gateway.do?charset=utf-8"' in page
    assert 'name="biz_content" value="{&#34;a&#34;:&#34;&lt;b&gt;&#34;}"' in page and "data-autosubmit" in page
    assert "form-action 'self' https://openapi.alipay.com;" in answer.headers["content-security-policy"]
    fake.set(next_step=RedirectStep("javascript:alert(1)"))
    page = browser.get(PAGE).text
    assert "javascript:" not in page and 'id="wait"' in page


def test_the_otp_step_posts_the_code(browser: httpx.Client, fake: FakeCashier) -> None:
    fake.set(state=SessionState.AWAITING_ACTION, next_step=OtpStep("riskChallenges/c1", "+86 138****8000", 5))
    page = browser.get(PAGE).text
    assert 'id="otp-form"' in page and "+86 138****8000" in page
    wrong = browser.post(f"{PAGE}/otp", data={"csrf_token": csrf_of(page), "request_id": "r3", "code": WRONG_CODE})
    assert wrong.headers["location"] == f"{PAGE}?notice=otp_wrong"
    assert 'id="otp-wrong"' in browser.get(wrong.headers["location"]).text
    answer = browser.post(f"{PAGE}/otp", data={"csrf_token": csrf_of(page), "request_id": "r4", "code": "123456"})
    assert answer.headers["location"] == PAGE and fake.codes == [WRONG_CODE, "123456"]


def test_an_expired_session_refuses_payment_with_a_clear_message(browser: httpx.Client, fake: FakeCashier) -> None:
    token = csrf_of(browser.get(PAGE).text)
    fake.session = replace(fake.session, expire_time=clock.now() - timedelta(seconds=1))
    page = browser.get(PAGE).text
    assert "Checkout expired" in page and 'id="pay-form"' not in page
    answer = browser.post(f"{PAGE}/pay", data=card_form(token))
    assert answer.headers["location"].endswith("?notice=expired")


def test_the_merchants_logo_is_served_from_payhub_and_a_missing_one_falls_back(fake: FakeCashier) -> None:
    fake.session = replace(fake.session, branding=replace(fake.session.branding, logo_url="https://shop.example/l.png"))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    logos = LogoFetcher(transport=httpx.MockTransport(lambda _r: httpx.Response(
        200, content=png, headers={"content-type": "image/png"})), resolve=lambda _h: ["93.184.216.34"])
    with serve(fake, logos) as client:
        page = client.get(PAGE).text
        assert f'src="{PAGE}/logo"' in page and "shop.example" not in page
        assert client.get(f"{PAGE}/logo").content == png
    fake.session = replace(fake.session, branding=replace(fake.session.branding, logo_url=""))
    with serve(fake) as client:
        assert 'id="logo"' not in client.get(PAGE).text
        assert client.get(f"{PAGE}/logo").status_code == 404


def test_unknown_or_malformed_sessions_answer_404(browser: httpx.Client) -> None:
    assert browser.get("/cashier/cs_" + "Z" * 32).status_code == 404
    assert browser.get("/cashier/not-a-session").status_code == 404
    assert browser.get("/cashier/cs_" + "Z" * 32 + "/state").status_code == 404


def test_an_error_page_may_load_its_stylesheet(browser: httpx.Client) -> None:
    answer = browser.get("/cashier/cs_" + "Z" * 32)
    policy = answer.headers["content-security-policy"]
    assert answer.status_code == 404 and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_assets_are_served_by_payhub_with_long_caching(browser: httpx.Client) -> None:
    html = browser.get(PAGE).text
    css = html.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    answer = browser.get(css)
    assert answer.status_code == 200 and answer.headers["cache-control"].endswith("immutable")
    assert browser.get("/cashier/theme/aa3300.css").text == ":root{--theme:#aa3300}\n"
    assert browser.get("/cashier/theme/zz;x.css").status_code == 404
    assert browser.get("/cashier/static/../http.py").status_code == 404
