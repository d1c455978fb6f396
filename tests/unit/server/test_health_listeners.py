"""grpc.health.v1 covers the HTTP listener: NOT_SERVING until it accepts, again when it stops, and
for good after shutdown."""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2

from payhub.kernel.db import Database
from payhub.server.health import NOT_SERVING, SERVING, Readiness

SERVICE = "payhub.trade.v1.TradeService"


def _status(readiness: Readiness, service: str = "") -> int:
    no_context: Any = None  # Check only uses the context for an unknown service
    return int(readiness.servicer.Check(health_pb2.HealthCheckRequest(service=service), no_context).status)


def test_serving_only_while_the_database_is_ready_and_the_http_listener_is_up(db: Database) -> None:
    readiness = Readiness(db, [SERVICE], interval=3600, listeners=["http"])
    readiness.start()
    assert (_status(readiness), _status(readiness, SERVICE), readiness.ready) == (NOT_SERVING, NOT_SERVING, False)
    readiness.listener("http", True)
    assert (_status(readiness), _status(readiness, SERVICE), readiness.ready) == (SERVING, SERVING, True)
    readiness.listener("http", False)
    assert _status(readiness) == NOT_SERVING
    readiness.listener("http", True)
    readiness.shutdown()
    readiness.listener("http", True)
    assert (_status(readiness), readiness.ready) == (NOT_SERVING, False)


def test_without_an_http_listener_the_database_decides(db: Database) -> None:
    readiness = Readiness(db, [SERVICE], interval=3600)
    assert _status(readiness) == NOT_SERVING
    readiness.start()
    assert _status(readiness, SERVICE) == SERVING
    readiness.shutdown()
