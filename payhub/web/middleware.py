"""Middleware every HTTP request passes, as plain ASGI (no per-request task or body buffering).

Outermost first: `RequestLog` (one JSON access-log line per request, and no exception ever reaches the
caller), `SecurityHeaders` (defaults a response did not set itself), `BodyLimit` (refuses bodies over
the limit before the route reads them).
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payhub.kernel.logging import get_logger

log = get_logger("payhub.web")

# Channel notifications are a few KB; the cashier's forms are smaller still.
MAX_BODY_BYTES = 1024 * 1024
# A checkout session id in a path (/cashier/cs_...) is the bearer capability to pay that session:
# the log keeps a short prefix, enough to tell requests of one session apart from another's.
_SESSION_ID = re.compile(r"\b(cs_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]+")


def loggable_path(path: str) -> str:
    """The request path as the access log may show it."""
    return _SESSION_ID.sub(r"\1...", path) if "cs_" in path else path


async def send_plain(send: Send, status: int, text: str) -> None:
    """A complete plain-text response (for answers the middleware gives itself)."""
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    """Logs method, path (never the query string: it may carry tokens), status, bytes and duration of
    every request - never headers or bodies. An exception the route let escape is logged here and
    answered 500 without details: no stack trace reaches the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 0, "bytes": 0}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            log.exception("http request failed", method=scope["method"], path=loggable_path(scope["path"]))
            if not state["status"]:
                await send_plain(observe, 500, "internal error")
        finally:
            client = scope.get("client")
            log.info("http request", method=scope["method"], path=loggable_path(scope["path"]), status=state["status"],
                     bytes_out=state["bytes"], duration_ms=round((time.perf_counter() - started) * 1000, 2),
                     client=client[0] if client else "")


class SecurityHeaders:
    """Conservative defaults for every response; a route that needs others (a page with its own
    Content-Security-Policy, say) sets them itself and they are kept."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.defaults = {
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
            "cache-control": "no-store",
        }
        if hsts:  # only meaningful when payhub is reached over https (public_base_url)
            self.defaults["strict-transport-security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, add_headers)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, or as soon as a chunked
    body grows past it (the route never sees the rest)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")  # h11 has checked it is a number
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_plain(send, 413, f"request body over {self.max_bytes} bytes")
            return
        received = 0
        responded = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal responded
            responded = True
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except _TooLarge:
            if not responded:
                await send_plain(send, 413, f"request body over {self.max_bytes} bytes")
