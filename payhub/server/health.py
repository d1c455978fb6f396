"""grpc.health.v1 for the whole server ("") and each payhub service by its full name.

A service is SERVING only while the database answers and is at the migration head and every listener
of the process besides gRPC (the HTTP server, when one is configured) is up; a monitor thread
re-checks the database every few seconds, so a lost database turns the probes NOT_SERVING and a
recovered one turns them back. Shutdown marks everything NOT_SERVING for good.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2
from sqlalchemy import text

from payhub.kernel.db import Database
from payhub.kernel.logging import get_logger
from payhub.kernel.migrate import head_revision

log = get_logger("payhub.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(self, db: Database, service_names: list[str], interval: float = 2.0,
                 listeners: Iterable[str] = ()) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._db, self._names, self._interval = db, ["", *service_names], interval
        self._head = head_revision()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._database_ok = False
        self._listeners = dict.fromkeys(listeners, False)  # e.g. {"http": False} until it accepts
        self._ready: bool | None = None
        self._publish()

    @property
    def ready(self) -> bool:
        return bool(self._ready) and not self._stop.is_set()

    def _publish(self) -> None:
        with self._lock:
            ready = self._database_ok and all(self._listeners.values())
            if ready == self._ready or self._stop.is_set():
                return
            self._ready = ready
            for name in self._names:
                self.servicer.set(name, SERVING if ready else NOT_SERVING)
        log.info("health", status="SERVING" if ready else "NOT_SERVING", database=self._database_ok,
                 **{f"{name}_listener": up for name, up in self._listeners.items()})

    def listener(self, name: str, up: bool) -> None:
        """A listener (e.g. "http") started or stopped accepting connections."""
        self._listeners[name] = up
        self._publish()

    def check(self) -> bool:
        try:
            with self._db.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return bool(current == self._head)
        except Exception:
            return False

    def _check_database(self) -> None:
        self._database_ok = self.check()
        self._publish()

    def start(self) -> None:
        self._check_database()
        threading.Thread(target=self._monitor, name="health-monitor", daemon=True).start()

    def _monitor(self) -> None:
        while not self._stop.wait(self._interval):
            self._check_database()

    def shutdown(self) -> None:
        with self._lock:
            self._stop.set()
            self.servicer.enter_graceful_shutdown()
