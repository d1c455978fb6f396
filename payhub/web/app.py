"""The one ASGI application of a `payhub serve` process, assembled from the routes its components
contribute (`Component.http_routes()`), behind the shared middleware."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from payhub.web.middleware import MAX_BODY_BYTES, BodyLimit, RequestLog, SecurityHeaders


def build_app(routes: Sequence[BaseRoute], *, ready: Callable[[], bool], hsts: bool = False,
              max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """`ready` answers GET /healthz (the same verdict as grpc.health.v1's overall status), for load
    balancers that probe over HTTP."""

    async def healthz(_request: Request) -> Response:
        serving = ready()
        return PlainTextResponse("SERVING" if serving else "NOT_SERVING", status_code=200 if serving else 503)

    return Starlette(
        routes=[*routes, Route("/healthz", healthz, methods=["GET"])],
        middleware=[Middleware(RequestLog), Middleware(SecurityHeaders, hsts=hsts),
                    Middleware(BodyLimit, max_bytes=max_body_bytes)])
