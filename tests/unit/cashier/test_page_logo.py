"""The merchant's logo is fetched by payhub (public https hosts only, raster images only, bounded) and
served from payhub's origin."""

from __future__ import annotations

import httpx

from payhub.cashier.page_logo import MAX_LOGO_BYTES, LogoFetcher, public_host

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def fetcher(answer: httpx.Response, addresses: tuple[str, ...] = ("93.184.216.34",)) -> tuple[LogoFetcher, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return answer

    return LogoFetcher(transport=httpx.MockTransport(handle), resolve=lambda _host: list(addresses)), seen


def test_a_public_png_logo_is_passed_on_and_cached() -> None:
    logos, seen = fetcher(httpx.Response(200, content=PNG, headers={"content-type": "image/png"}))
    first = logos.get("https://shop.example/logo.png")
    assert first is not None and first.body == PNG and first.content_type == "image/png"
    assert logos.get("https://shop.example/logo.png") == first and len(seen) == 1


def test_private_hosts_svg_big_or_redirected_answers_and_plain_http_are_not_fetched_or_shown() -> None:
    private, seen = fetcher(httpx.Response(200, content=PNG, headers={"content-type": "image/png"}),
                            addresses=("10.0.0.7",))
    assert private.get("https://intranet.example/logo.png") is None and seen == []
    assert fetcher(httpx.Response(200, content=PNG, headers={"content-type": "image/png"}))[0].get(
        "http://shop.example/logo.png") is None
    svg = fetcher(httpx.Response(200, content=b"<svg/>", headers={"content-type": "image/svg+xml"}))[0]
    assert svg.get("https://shop.example/logo.svg") is None
    big = fetcher(httpx.Response(200, content=b"\0" * (MAX_LOGO_BYTES + 1), headers={"content-type": "image/png"}))[0]
    assert big.get("https://shop.example/big.png") is None
    moved = fetcher(httpx.Response(302, headers={"location": "http://169.254.169.254/"}))[0]
    assert moved.get("https://shop.example/logo.png") is None


def test_public_host_checks_every_address() -> None:
    assert public_host("x", lambda _h: ["93.184.216.34", "2606:2800:220:1::1"])
    assert not public_host("x", lambda _h: ["93.184.216.34", "127.0.0.1"])
    assert not public_host("x", lambda _h: ["fe80::1%eth0"])
    assert not public_host("x", lambda _h: [])
