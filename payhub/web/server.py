"""uvicorn inside a `payhub serve` worker: its own thread and asyncio event loop, on a socket the
worker bound before start-up (so a taken port is a start-up error, and with several workers each
binds the same port with SO_REUSEPORT and the kernel spreads connections over them).

Idle cost: uvicorn's own main loop wakes ten times a second; this one waits on an event and wakes
once a second (to refresh the Date header), so an idle listener costs next to no CPU.

Shutdown: `stop()` closes the listening socket (no new connections), closes idle keep-alive
connections, and lets requests in flight finish within `grace_seconds` before cancelling them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from payhub.kernel.logging import get_logger

log = get_logger("payhub.web")

START_TIMEOUT_SECONDS = 10.0
_DATE_REFRESH_SECONDS = 1.0


def bind_socket(host: str, port: int, *, reuse_port: bool, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket; OSError when the address is taken or invalid. SO_REUSEADDR only lets a
    restart reuse a port whose old connections linger in TIME_WAIT (Linux never shares a listening
    port through it); SO_REUSEPORT shares the port between the workers of one `payhub serve`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class _UvicornLogBridge(logging.Handler):
    """uvicorn's warnings and errors (malformed requests, cancelled tasks) as payhub's JSON log lines."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(log, level)(record.getMessage(), source=record.name, exc_info=record.exc_info or False)


def _bridge_uvicorn_logs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(h, _UvicornLogBridge) for h in logger.handlers):
        logger.addHandler(_UvicornLogBridge(logging.WARNING))
    logger.propagate = False


class _Server(uvicorn.Server):
    """uvicorn's server with a quieter main loop that reports when it is up and wakes on stop()."""

    def __init__(self, config: uvicorn.Config, on_state: Callable[[bool], None]) -> None:
        super().__init__(config)
        self._on_state = on_state
        self._wake: asyncio.Event | None = None
        self.up = threading.Event()

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self.up.set()
        self._on_state(True)
        try:
            while not await self.on_tick(0):  # counter 0: refresh the Date header, check should_exit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _DATE_REFRESH_SECONDS)
        finally:
            self._on_state(False)

    def request_exit(self) -> None:
        """Called on the server's own loop."""
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()


class HttpServer:
    """One uvicorn server on a pre-bound socket. `on_state(True)` once it accepts connections,
    `on_state(False)` when it stops accepting."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, grace_seconds: float,
                 on_state: Callable[[bool], None] = lambda _up: None) -> None:
        _bridge_uvicorn_logs()
        config = uvicorn.Config(
            app, http="h11", loop="asyncio", ws="none", lifespan="off", interface="asgi3",
            log_config=None, access_log=False, server_header=False, proxy_headers=False,
            timeout_keep_alive=5, timeout_graceful_shutdown=max(1, round(grace_seconds)))
        self.sock = sock
        self._server = _Server(config, on_state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._failure: BaseException | None = None

    @property
    def address(self) -> tuple[Any, ...]:
        return tuple(self.sock.getsockname())

    def start(self) -> None:
        """Start serving; raises RuntimeError when uvicorn could not start."""
        self._thread.start()
        if not self._server.up.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"the HTTP server did not start: {self._failure!r}")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self.sock]))
        except BaseException as exc:  # SystemExit from uvicorn's start-up failure included
            self._failure = exc
            log.exception("HTTP server failed")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self) -> None:
        """Stop accepting and let in-flight requests finish (within the grace period). Non-blocking."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._server.request_exit)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until shut down; False if still running after `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
