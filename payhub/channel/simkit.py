"""The pieces every channel simulator (`payhub simulate <channel>`) needs, written once.

A simulator is the channel's server side on loopback: a Starlette app under uvicorn that speaks the
channel's real wire protocol, plus a small JSON control API under `CONTROL_PREFIX` (a path no real
channel uses) that stands in for the buyer and for faults. This module knows no channel: the
channel's simulator module supplies the protocol routes, its signing and its state machine.

- `serve_in_thread(app, "127.0.0.1:0")` / `serve_forever(app, listen)` (or `bind` + `serve_socket`): run an
  ASGI app (tests, kits / the CLI).
- `KeyDir`: a `--keys DIR` of PEM/JSON files, created on first use; `write_config` prints and writes
  DIR/config.json (everything a client needs).
- `Notifier`: asynchronous notifications with the channel's retry schedule, a delay scale (0.001 makes
  a day's schedule take seconds) and notification faults (drop, duplicate, delay the next N).
- `Faults`: switches for the protocol endpoints (latency, 5xx, timeout, reset), consumed per request.
- `SimClock`: the simulator's clock, which the control API can move forward (expiry, T+1 bills).
- `control_routes(...)`: the control API skeleton (faults, notifications, clock) plus the channel's own
  buyer actions.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from payhub.kernel.logging import get_logger

CONTROL_PREFIX = "/__simulator"

log = get_logger("payhub.channel.simkit")


# -- running an app ------------------------------------------------------------------------------
def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (port 0: any free port) -> (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(listen: str) -> socket.socket:
    """A listening-ready socket bound to `HOST:PORT` (port 0: a free one; see getsockname())."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class RunningApp:
    """An app served by uvicorn on a background thread; `url` is its base URL."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host, self.port = str(host), int(port)
        self.url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def _server(app: ASGIApp) -> uvicorn.Server:
    # No access log: requests carry signed parameters, and tests run many simulators.
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                         timeout_graceful_shutdown=2))


def serve_in_thread(app: ASGIApp, listen: str = "127.0.0.1:0") -> RunningApp:
    """Serve `app` on a daemon thread until `stop()`; returns once it accepts connections."""
    sock = bind(listen)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"simulator-{sock.getsockname()[1]}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    return RunningApp(server, thread, sock)


def serve_forever(app: ASGIApp, listen: str) -> None:
    """Serve `app` in the foreground until SIGINT/SIGTERM (the `payhub simulate` command)."""
    serve_socket(app, bind(listen))


def serve_socket(app: ASGIApp, sock: socket.socket) -> None:
    """Serve `app` in the foreground on a socket from `bind` (when the address must be known first)."""
    try:
        _server(app).run(sockets=[sock])
    finally:
        sock.close()


def build_app(routes: Sequence[BaseRoute]) -> ASGIApp:
    """A Starlette app over `routes` (the protocol routes plus `control_routes`). A request line in
    absolute form (`POST http://host/gateway.do?... HTTP/1.1`, as the official Alipay Python SDK sends
    it; RFC 9112 §3.2.2 says a server must accept it) is routed on its path."""
    return _AbsoluteForm(Starlette(routes=list(routes)))


class _AbsoluteForm:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            scope = dict(scope) | {"path": parts.path or "/", "raw_path": (parts.path or "/").encode()}
        await self.app(scope, receive, send)


class BrokenResponse(Response):
    """An answer that breaks off: the status line and half a body, then the connection closes (the
    fault `reset`: the request was processed, the client never learns how)."""

    def __init__(self) -> None:
        super().__init__(b"", 200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        # Returning without the rest makes uvicorn close the connection mid-answer.


# -- key material ----------------------------------------------------------------------------------
class KeyDir:
    """A directory of PEM and JSON files; what is missing is created on first use (mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def private_key(self, name: str, *, pkcs1: bool = False, bits: int = 2048) -> rsa.RSAPrivateKey:
        """`name.pem`: an RSA private key (PKCS#8 PEM, or PKCS#1 when `pkcs1`), made if absent."""
        file = self.path / f"{name}.pem"
        if file.exists():
            key = serialization.load_pem_private_key(file.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{file} is not an RSA private key")
            return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self._write(file, private_pem(key, pkcs1=pkcs1))
        return key

    def json(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`name.json`, made with `make()` if absent."""
        file = self.path / f"{name}.json"
        if file.exists():
            data = json.loads(file.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"{file} does not hold a JSON object")
            return data
        data = make()
        self._write(file, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return data

    def write_config(self, config: Mapping[str, Any], *, echo: bool = True) -> Path:
        """Write (and print) DIR/config.json: what a client needs to talk to the simulator."""
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        file = self.path / "config.json"
        self._write(file, text)
        if echo:
            print(text, end="", flush=True)
        return file

    @staticmethod
    def _write(file: Path, text: str) -> None:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)


def private_pem(key: rsa.RSAPrivateKey, *, pkcs1: bool = False) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- the simulator's clock -------------------------------------------------------------------------
class SimClock:
    """Wall time plus an offset the control API moves forward (never back)."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        self.zone = zone
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(self.zone) + offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()


# -- faults on the protocol endpoints ---------------------------------------------------------------
FAULT_KINDS = ("latency", "status", "timeout", "reset")


@dataclass
class Fault:
    """One switched-on fault. `latency`: answer after `seconds`. `status`: answer HTTP `status` (5xx)
    instead. `timeout`: hold the request `seconds` before answering (longer than the client waits).
    `reset`: drop the connection without an answer. `after`: the request is processed first (the
    client cannot know whether it arrived) - the default for timeout and reset. `count`: how many
    requests it hits (-1: until cleared). `match`: only requests whose operation contains it."""

    kind: str
    count: int = 1
    seconds: float = 0.0
    status: int = 502
    after: bool | None = None
    match: str = ""

    def processes_first(self) -> bool:
        return self.after if self.after is not None else self.kind in ("timeout", "reset")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        kind = str(data.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        after = data.get("after")
        return cls(kind, int(data.get("count", 1)), float(data.get("seconds", 0.0)), int(data.get("status", 502)),
                   None if after is None else bool(after), str(data.get("match", "")))


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, operation: str) -> Fault | None:
        """The first fault matching `operation`, counted as used."""
        with self._lock:
            for fault in self._faults:
                if fault.match and fault.match not in operation:
                    continue
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
        return None


def apply_fault_before(fault: Fault | None) -> Response | None:
    """What the endpoint does before processing: wait (latency), or answer an error instead."""
    if fault is None or fault.processes_first():
        return None
    if fault.kind == "latency":
        time.sleep(fault.seconds)
        return None
    if fault.kind == "status":
        return Response(b"<html><body>Service Unavailable</body></html>", fault.status,
                        media_type="text/html")
    return None


def apply_fault_after(fault: Fault | None, response: Response) -> Response:
    """What the endpoint does after processing: hold the answer (timeout), drop it, or replace it."""
    if fault is None or not fault.processes_first():
        return response
    if fault.kind in ("timeout", "latency"):
        time.sleep(fault.seconds)
        return response
    if fault.kind == "status":
        return Response(b"<html><body>Bad Gateway</body></html>", fault.status, media_type="text/html")
    return BrokenResponse()


# -- asynchronous notifications ---------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """One notification as sent: the body and headers of a POST."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class NotificationRecord:
    """What the control API shows of one notification."""

    id: str
    url: str
    subject: str
    attempts: int = 0
    delivered: bool = False
    given_up: bool = False
    dropped: int = 0
    duplicated: int = 0
    last_status: int | None = None
    last_error: str = ""


@dataclass
class NotifyFaults:
    """Faults on the next notifications: `drop` of them are not sent (the attempt counts as failed),
    `duplicate` are sent twice, `delay_seconds` is added before the next `delay` of them."""

    drop: int = 0
    duplicate: int = 0
    delay: int = 0
    delay_seconds: float = 0.0


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    record: NotificationRecord = field(compare=False)
    build: Callable[[], Delivery] = field(compare=False)
    accepted: Callable[[int, bytes], bool] = field(compare=False)


class Notifier:
    """Sends notifications on a background thread: the first at once, then after each failure (an
    answer `accepted` refuses, or no answer) the next after `schedule[i] * scale` seconds, until the
    schedule is exhausted. `build()` is called per delivery, so a channel that signs a timestamp can
    sign afresh; a channel whose retries are byte-identical returns the same Delivery."""

    def __init__(self, schedule: Sequence[float], *, scale: float = 1.0, timeout: float = 5.0) -> None:
        self.schedule = tuple(schedule)
        self.scale = scale
        self.faults = NotifyFaults()
        self._records: dict[str, NotificationRecord] = {}
        self._queue: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._in_flight = 0
        self._client = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, daemon=True, name="simulator-notifier")
        self._thread.start()

    def send(self, notification_id: str, url: str, subject: str, build: Callable[[], Delivery],
             accepted: Callable[[int, bytes], bool]) -> NotificationRecord:
        record = NotificationRecord(notification_id, url, subject)
        with self._cond:
            self._records[notification_id] = record
            self._push(time.monotonic(), record, build, accepted)
        return record

    def records(self, subject: str = "") -> list[NotificationRecord]:
        with self._cond:
            return [r for r in self._records.values() if not subject or r.subject == subject]

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once nothing is queued (tests)."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.pending()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self._client.close()

    def _push(self, due: float, record: NotificationRecord, build: Callable[[], Delivery],
              accepted: Callable[[int, bytes], bool]) -> None:
        heapq.heappush(self._queue, _Job(due, next(self._seq), record, build, accepted))
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._stopped:
                    return
                job = heapq.heappop(self._queue)
                delay = self._take_delay()
                if delay:
                    self._push(time.monotonic() + delay, job.record, job.build, job.accepted)
                    continue
                drop = self._take_drop()
                duplicate = not drop and self._take_duplicate()  # a dropped one is not also sent twice
                self._in_flight += 1
            ok = self._attempt(job, drop)
            if duplicate and not drop:
                job.record.duplicated += 1
                ok = self._attempt(job, False) or ok
            with self._cond:
                self._in_flight -= 1
                self._after(job, ok)

    def _take_delay(self) -> float:
        if self.faults.delay > 0:
            self.faults.delay -= 1
            return self.faults.delay_seconds
        return 0.0

    def _take_drop(self) -> bool:
        if self.faults.drop > 0:
            self.faults.drop -= 1
            return True
        return False

    def _take_duplicate(self) -> bool:
        if self.faults.duplicate > 0:
            self.faults.duplicate -= 1
            return True
        return False

    def _attempt(self, job: _Job, drop: bool) -> bool:
        record = job.record
        record.attempts += 1
        if drop:
            record.dropped += 1
            record.last_error = "dropped (fault)"
            return False
        delivery = job.build()
        try:
            answer = self._client.post(record.url, content=delivery.body, headers=dict(delivery.headers))
        except httpx.HTTPError as exc:
            record.last_status, record.last_error = None, type(exc).__name__
            return False
        record.last_status, record.last_error = answer.status_code, ""
        return job.accepted(answer.status_code, answer.content)

    def _after(self, job: _Job, ok: bool) -> None:
        record = job.record
        if ok:
            record.delivered = True
            return
        retry = record.attempts - 1 - record.duplicated
        if retry >= len(self.schedule):
            record.given_up = True
            log.info("notification given up", notification_id=record.id, attempts=record.attempts)
            return
        self._push(time.monotonic() + self.schedule[retry] * self.scale, record, job.build, job.accepted)


# -- the control API -------------------------------------------------------------------------------
ControlHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """A control request that cannot be done: answered 400 (or `status`) with the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def control_routes(actions: Mapping[str, ControlHandler], *, faults: Faults, notifier: Notifier,
                   clock: SimClock) -> list[BaseRoute]:
    """`POST {CONTROL_PREFIX}/<action>` with a JSON object for each channel action (e.g. `pay`), plus
    the shared ones: `faults` (POST adds one, DELETE clears, GET lists), `notifications` (GET: the
    log, optional `?subject=`), `notifications/faults` (POST drop/duplicate/delay the next ones),
    `clock` (GET; POST {"advance_seconds": N})."""

    def faults_endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            faults.clear()
        elif request.method == "POST":
            faults.add(Fault.from_json(_json_body(request)))
        return JSONResponse({"faults": faults.active()})

    def notifications(request: Request) -> Response:
        subject = request.query_params.get("subject", "")
        return JSONResponse({"notifications": [asdict(r) for r in notifier.records(subject)]})

    def notify_faults(request: Request) -> Response:
        body = _json_body(request)
        nf = notifier.faults
        nf.drop = int(body.get("drop", nf.drop))
        nf.duplicate = int(body.get("duplicate", nf.duplicate))
        nf.delay = int(body.get("delay", nf.delay))
        nf.delay_seconds = float(body.get("delay_seconds", nf.delay_seconds))
        return JSONResponse(asdict(nf))

    def clock_endpoint(request: Request) -> Response:
        if request.method == "POST":
            clock.advance(float(_json_body(request).get("advance_seconds", 0)))
        return JSONResponse({"now": clock.now().isoformat()})

    routes: list[BaseRoute] = [
        Route(f"{CONTROL_PREFIX}/faults", _guarded(faults_endpoint), methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/notifications", _guarded(notifications), methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/notifications/faults", _guarded(notify_faults), methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/clock", _guarded(clock_endpoint), methods=["GET", "POST"]),
    ]
    for name, handler in actions.items():
        routes.append(Route(f"{CONTROL_PREFIX}/{name}", _guarded(_action(handler)), methods=["POST"]))
    return routes


def _action(handler: ControlHandler) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        return JSONResponse(handler(_json_body(request)))
    return endpoint


def _guarded(endpoint: Callable[[Request], Response]) -> Callable[[Request], Any]:
    # Starlette runs a sync endpoint in its thread pool; the request body is read here first.
    async def run(request: Request) -> Response:
        raw = await request.body()
        request.state.json_raw = raw
        try:
            return await run_in_threadpool(endpoint, request)
        except ControlError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad control request: {exc}"}, 400)
    return run


def _json_body(request: Request) -> dict[str, Any]:
    raw: bytes = request.state.json_raw
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


class ControlClient:
    """The control API from Python (tests, contract kits)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._client = httpx.Client(base_url=base_url.rstrip("/") + CONTROL_PREFIX, timeout=timeout,
                                    trust_env=False)

    def call(self, action: str, **body: Any) -> dict[str, Any]:
        answer = self._client.post(f"/{action}", json=body)
        if answer.status_code != 200:
            raise ControlError(answer.json().get("error", answer.text), answer.status_code)
        data = answer.json()
        assert isinstance(data, dict)
        return data

    def get(self, path: str, **params: str) -> dict[str, Any]:
        data = self._client.get(f"/{path}", params=params).json()
        assert isinstance(data, dict)
        return data

    def clear_faults(self) -> None:
        self._client.delete("/faults")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running(app: ASGIApp, listen: str = "127.0.0.1:0") -> Iterator[RunningApp]:
    served = serve_in_thread(app, listen)
    try:
        yield served
    finally:
        served.stop()
