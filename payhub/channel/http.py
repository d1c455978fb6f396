"""The channels' HTTP callbacks: `POST /channels/{channel}/notify/{merchant}`.

Thin on purpose: the raw body and the headers (names lower-cased) go to the channel client's
`handle_notification` - in process the router's AsyncOutcomes, otherwise HandleNotification over
gRPC - and the channel gets back exactly the reply its adapter chose. Whatever goes wrong, the
channel gets a failure reply (so it sends the notification again later), never a stack trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from payhub.channel.adapter import HttpReply
from payhub.channel.client import NotificationHandler
from payhub.kernel.errors import InvalidArgument, NotFound, PayhubError
from payhub.kernel.logging import get_logger

if TYPE_CHECKING:
    from payhub.server.context import AppContext

log = get_logger("payhub.channel.http")

NOTIFY_PATH = "/channels/{channel}/notify/{merchant}"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_MERCHANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _failure(status: int, message: str) -> HttpReply:
    """The answer when no adapter chose one. Every channel treats it as a failure and retries: Alipay
    wants the body `success`, WeChat Pay a 2xx; this JSON is WeChat Pay's failure shape."""
    return HttpReply(status, json.dumps({"code": "FAIL", "message": message}).encode(),
                     {"content-type": "application/json"})


UNKNOWN = _failure(404, "unknown channel or merchant")
UNAVAILABLE = _failure(503, "temporarily unavailable, send it again later")


def notify_routes(client: Callable[[], NotificationHandler]) -> list[BaseRoute]:
    """`client` is resolved per request: components are built lazily."""

    async def notify(request: Request) -> Response:
        channel, merchant = request.path_params["channel"], request.path_params["merchant"]
        body = await request.body()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():  # names come lower-cased; repeats join as HTTP says
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        reply = await run_in_threadpool(_handle, client, channel, merchant, headers, body)
        return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))

    return [Route(NOTIFY_PATH, notify, methods=["POST"])]


def _handle(client: Callable[[], NotificationHandler], channel: str, merchant: str, headers: dict[str, str],
            body: bytes) -> HttpReply:
    if not (_CHANNEL.match(channel) and _MERCHANT.match(merchant)):
        log.warning("channel notification for a malformed channel or merchant", channel=channel[:40],
                    merchant_id=merchant[:70])
        return UNKNOWN
    try:
        return client().handle_notification(channel, merchant, headers, body).reply
    except (NotFound, InvalidArgument) as exc:
        log.warning("channel notification refused", channel=channel, merchant_id=merchant, reason=exc.reason,
                    detail=exc.message)
        return UNKNOWN
    except PayhubError as exc:
        log.warning("channel notification not handled; the channel will resend it", channel=channel,
                    merchant_id=merchant, reason=exc.reason, detail=exc.message)
        return UNAVAILABLE
    except Exception:
        log.exception("channel notification failed; the channel will resend it", channel=channel,
                      merchant_id=merchant)
        return UNAVAILABLE


def remote_routes(ctx: AppContext) -> list[BaseRoute]:
    """The callback routes in a process that does not run the channel router: passed on over gRPC."""
    return notify_routes(lambda: ctx.client("channel"))  # type: ignore[no-any-return]
