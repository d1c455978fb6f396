"""grpc.health.v1 for the whole server ("") and each payhub service by its full name.

A service is SERVING only while the database answers and is at the migration head; a monitor thread
re-checks every few seconds, so a lost database turns the probes NOT_SERVING and a recovered one
turns them back. Shutdown marks everything NOT_SERVING for good.
"""

from __future__ import annotations

import threading

from grpc_health.v1 import health, health_pb2
from sqlalchemy import text

from payhub.kernel.db import Database
from payhub.kernel.logging import get_logger
from payhub.kernel.migrate import head_revision

log = get_logger("payhub.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(self, db: Database, service_names: list[str], interval: float = 2.0) -> None:
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._db, self._names, self._interval = db, ["", *service_names], interval
        self._head = head_revision()
        self._stop = threading.Event()
        self._ready: bool | None = None
        self._set(False)

    def _set(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        for name in self._names:
            self.servicer.set(name, SERVING if ready else NOT_SERVING)
        log.info("health", status="SERVING" if ready else "NOT_SERVING")

    def check(self) -> bool:
        try:
            with self._db.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return bool(current == self._head)
        except Exception:
            return False

    def start(self) -> None:
        self._set(self.check())
        threading.Thread(target=self._monitor, name="health-monitor", daemon=True).start()

    def _monitor(self) -> None:
        while not self._stop.wait(self._interval):
            self._set(self.check())

    def shutdown(self) -> None:
        self._stop.set()
        self.servicer.enter_graceful_shutdown()
