"""The shared simulator toolkit: a served app, key directories, faults, the control API and the
notification dispatcher with its retry schedule - against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from payhub.channel import simkit
from payhub.channel.simkit import ControlClient, ControlError, Delivery, Fault, Faults, KeyDir, Notifier, SimClock


class Receiver:
    """An HTTP endpoint that refuses the first `refuse` deliveries, then answers `success`."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            if self.refuse > 0:
                self.refuse -= 1
                return PlainTextResponse("fail", 500)
        return PlainTextResponse("success")


def accepted(status: int, body: bytes) -> bool:
    return status == 200 and body == b"success"


def test_keydir_creates_keys_once_and_writes_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = KeyDir(tmp_path / "keys")
    first = keys.private_key("app", pkcs1=True)
    assert (tmp_path / "keys" / "app.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert keys.private_key("app").private_numbers() == first.private_numbers()
    ident = keys.json("ids", lambda: {"app_id": "2021000000000001"})
    assert keys.json("ids", lambda: {"app_id": "other"}) == ident
    path = keys.write_config({"app_id": ident["app_id"], "public": simkit.public_pem(first)})
    assert json.loads(path.read_text())["app_id"] == "2021000000000001"
    assert '"app_id": "2021000000000001"' in capsys.readouterr().out
    assert oct(path.stat().st_mode & 0o777) == "0o600", "the config holds a private key"


def kind(fault: Fault | None) -> str:
    return fault.kind if fault else ""


def test_faults_are_consumed_by_count_and_match() -> None:
    faults = Faults()
    faults.add(Fault("status", count=1, status=503, match="query"))
    faults.add(Fault("latency", count=-1, seconds=0.0))
    assert kind(faults.take("alipay.trade.refund")) == "latency"
    taken = faults.take("alipay.trade.query")
    assert taken is not None and taken.kind == "status" and taken.status == 503
    assert kind(faults.take("alipay.trade.query")) == "latency", "the 5xx hit once"
    faults.clear()
    assert faults.take("alipay.trade.query") is None
    with pytest.raises(ValueError):
        Fault.from_json({"kind": "explode"})
    assert Fault.from_json({"kind": "timeout"}).processes_first()
    assert not Fault.from_json({"kind": "status"}).processes_first()


def test_the_clock_only_moves_forward() -> None:
    clock = SimClock()
    before = clock.now()
    assert (clock.advance(86400) - before).days == 1
    with pytest.raises(ValueError):
        clock.advance(-1)


def protocol_app(faults: Faults, notifier: Notifier, clock: SimClock, receiver_url: str) -> ASGIApp:
    def gateway(request: Request) -> Response:
        fault = faults.take("gateway")
        early = simkit.apply_fault_before(fault)
        if early is not None:
            return early
        return simkit.apply_fault_after(fault, PlainTextResponse("ok"))

    def notify(body: dict[str, object]) -> dict[str, object]:
        if "subject" not in body:
            raise ControlError("subject is required")
        record = notifier.send(f"n-{body['subject']}", receiver_url, str(body["subject"]),
                               lambda: Delivery(b"trade_status=TRADE_SUCCESS", {"content-type": "text/plain"}),
                               accepted)
        return {"id": record.id}

    routes = [Route("/gateway.do", gateway, methods=["GET", "POST"]),
              *simkit.control_routes({"notify": notify}, faults=faults, notifier=notifier, clock=clock)]
    return simkit.build_app(routes)


def test_a_simulator_app_with_faults_and_notifications_over_http() -> None:
    receiver = Receiver(refuse=2)
    with simkit.running(simkit.build_app([Route("/notify", receiver.endpoint, methods=["POST"])])) as target:
        faults, clock = Faults(), SimClock()
        notifier = Notifier([60, 600], scale=0.0005)
        try:
            with simkit.running(protocol_app(faults, notifier, clock, f"{target.url}/notify")) as sim, \
                    ControlClient(sim.url) as control, httpx.Client(base_url=sim.url, trust_env=False) as http:
                assert http.get("/gateway.do").text == "ok"
                control.call("faults", kind="status", status=504)
                assert http.get("/gateway.do").status_code == 504
                control.call("faults", kind="reset")
                with pytest.raises(httpx.HTTPError):
                    http.get("/gateway.do")
                assert http.get("/gateway.do").text == "ok", "each fault hit once"
                with pytest.raises(ControlError):
                    control.call("notify")
                control.call("notify", subject="A")
                assert notifier.wait_idle()
                record = control.get("notifications", subject="A")["notifications"][0]
                assert record["delivered"] and record["attempts"] == 3, record
                assert receiver.bodies == [b"trade_status=TRADE_SUCCESS"] * 3
                before = datetime.fromisoformat(control.get("clock")["now"])
                advanced = datetime.fromisoformat(control.call("clock", advance_seconds=86400)["now"])
                assert (advanced - before).days == 1
        finally:
            notifier.stop()


def test_notification_faults_drop_duplicate_and_give_up() -> None:
    receiver = Receiver(refuse=100)
    with simkit.running(simkit.build_app([Route("/n", receiver.endpoint, methods=["POST"])])) as target:
        notifier = Notifier([1, 1], scale=0.001)
        try:
            notifier.faults.drop = 1
            refused = notifier.send("x", f"{target.url}/n", "x", lambda: Delivery(b"x"), accepted)
            assert notifier.wait_idle()
            assert refused.given_up and refused.attempts == 3 and refused.dropped == 1
            assert len(receiver.bodies) == 2, "the dropped attempt never reached the receiver"
            receiver.refuse = 0
            notifier.faults.duplicate = 1
            twice = notifier.send("y", f"{target.url}/n", "y", lambda: Delivery(b"y"), accepted)
            assert notifier.wait_idle()
            assert twice.delivered and receiver.bodies.count(b"y") == 2
        finally:
            notifier.stop()


def test_a_request_line_in_absolute_form_is_routed_on_its_path() -> None:
    async def ok(request: Request) -> Response:
        return PlainTextResponse(f"{request.url.path}?{request.url.query}")

    with simkit.running(simkit.build_app([Route("/gateway.do", ok, methods=["POST"])])) as served, \
            socket.create_connection((served.host, served.port), timeout=5) as sock:
        sock.sendall(b"POST http://example.com/gateway.do?a=1 HTTP/1.1\r\nHost: example.com\r\n"
                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"/gateway.do?a=1")
