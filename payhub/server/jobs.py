"""Background jobs: each runs on its own thread every `interval` seconds until shutdown.

Jobs must be safe with several replicas running them at once (they claim work with compare-and-set
or SKIP LOCKED); a job that fails is logged and tried again at its next tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from payhub.kernel.logging import get_logger

log = get_logger("payhub.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    interval: float
    run: Callable[[], object]
    busy_interval: float | None = None  # the wait after a run that returned a truthy value (it found work)
    close: Callable[[], object] | None = None  # after its thread has stopped (e.g. give up a leadership)


class JobRunner:
    def __init__(self, jobs: list[Job]) -> None:
        self._jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self._jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, job: Job) -> None:
        wait = job.interval
        while not self._stop.wait(wait):
            wait = job.interval
            try:
                if job.run() and job.busy_interval is not None:
                    wait = job.busy_interval
            except Exception:
                log.exception("job failed", job=job.name)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for job in self._jobs:
            if job.close is not None:
                try:
                    job.close()
                except Exception:
                    log.exception("job close failed", job=job.name)
