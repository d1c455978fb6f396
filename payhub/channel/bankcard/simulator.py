"""`payhub simulate bank --listen HOST:PORT`: a local ISO 8583 card switch (switch.py has its
cards and rules) with a small HTTP control interface beside it (served like every simulator's, by
payhub.channel.simkit).

The switch speaks framed ISO 8583 over TCP (`--framing`, `--spec`: the same choices as the
adapter's credentials). The HTTP port (`--control`, default: the switch port + 1) serves the
settlement file a card switch publishes, and the control API under simkit.CONTROL_PREFIX:

    GET  /settlement?date=YYYYMMDD&terminal_id=T   the day's settlement file (CSV)
    POST /__simulator/control   {"next": "timeout"|"drop"|"late"|"decline:05"|"approve", "count": 1,
                                 "reversals": "answer"|"ignore"|"refuse:96"}
    POST /__simulator/accounts  {"pan": "...", "balance_minor": 100, "expiry": "YYMM", "decline_code": ""}
    GET  /__simulator/reversals     the reversals received, oldest first (JSON)
    GET  /__simulator/transactions  the book, card numbers shown as last four (JSON)
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import iso8583
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from payhub.channel import simkit
from payhub.channel.bankcard import specs, wire
from payhub.channel.bankcard.switch import Account, CardSwitch

HOLD_SECONDS = 120.0  # a "timeout" holds the connection open, answering nothing, at most this long
CONTROL = simkit.CONTROL_PREFIX


@dataclass
class SwitchServer:
    """The switch's TCP listener and its HTTP side, on daemon threads (for tests and kits)."""

    switch: CardSwitch
    tcp: socketserver.ThreadingTCPServer
    http: simkit.RunningApp

    @property
    def port(self) -> int:
        return int(self.tcp.server_address[1])

    @property
    def control_url(self) -> str:
        return self.http.url

    def close(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()
        self.http.stop()


def start(host: str = "127.0.0.1", port: int = 0, control_port: int | None = None, framing: str = "binary2",
          spec_name: str = specs.DEFAULT_PROFILE, switch: CardSwitch | None = None) -> SwitchServer:
    switch = switch or CardSwitch()
    tcp = start_tcp(switch, host, port, framing, spec_name)
    http_port = control_port if control_port is not None else (tcp.server_address[1] + 1 if port else 0)
    return SwitchServer(switch, tcp, simkit.serve_in_thread(http_app(switch), f"{host}:{http_port}"))


def start_tcp(switch: CardSwitch, host: str, port: int, framing: str,
              spec_name: str) -> socketserver.ThreadingTCPServer:
    _, spec = specs.resolve(spec_name)
    tcp = _Tcp((host, port), _tcp_handler(switch, spec, framing))
    threading.Thread(target=tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                     name="bank-simulator").start()
    return tcp


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _tcp_handler(switch: CardSwitch, spec: specs.Spec, framing: str) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(HOLD_SECONDS)
            while True:
                try:
                    request = wire.decode(wire.read_frame(sock, framing), spec)
                except (OSError, wire.FramingError, iso8583.DecodeError):
                    return  # closed, timed out or garbage: drop the connection
                reply = switch.handle(request)
                if reply.fault == "drop":
                    return
                if reply.message is None:
                    continue  # "timeout": answer nothing; the acquirer gives up and closes
                sock.sendall(wire.frame(wire.encode(reply.message, spec), framing))
    return Handler


def http_app(switch: CardSwitch) -> ASGIApp:
    def settlement(request: Request) -> Response:
        day = request.query_params.get("date") or datetime.now(UTC).strftime("%Y%m%d")
        body = switch.settlement_file(day, request.query_params.get("terminal_id", ""))
        return Response(body, media_type="text/csv")

    async def control(request: Request) -> Response:
        body = await _json(request)
        switch.control(str(body.get("next", "")), int(body.get("count", 1)), str(body.get("reversals", "")))
        return JSONResponse({})

    async def accounts(request: Request) -> Response:
        body = await _json(request)
        switch.add_account(str(body["pan"]), Account(int(body["balance_minor"]), str(body.get("expiry", "9912")),
                                                     str(body.get("decline_code", ""))))
        return JSONResponse({})

    return simkit.build_app([
        Route("/settlement", settlement, methods=["GET"]),
        Route(f"{CONTROL}/control", _guard(control), methods=["POST"]),
        Route(f"{CONTROL}/accounts", _guard(accounts), methods=["POST"]),
        Route(f"{CONTROL}/reversals", lambda _: JSONResponse(switch.reversal_log()), methods=["GET"]),
        Route(f"{CONTROL}/transactions", lambda _: JSONResponse(switch.transactions()), methods=["GET"]),
    ])


def _guard(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad control request: {exc}"}, 400)
    return run


async def _json(request: Request) -> dict[str, Any]:
    data = json.loads(await request.body() or b"{}")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="payhub simulate bank", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8583", help="HOST:PORT of the ISO 8583 switch")
    parser.add_argument("--control", default="", help="HOST:PORT of the HTTP side (default: the port + 1)")
    parser.add_argument("--framing", default=wire.DEFAULT_FRAMING, choices=wire.FRAMINGS)
    parser.add_argument("--spec", default=specs.DEFAULT_PROFILE, choices=sorted(specs.PROFILES))
    args = parser.parse_args(argv)
    host, port = simkit.parse_listen(args.listen)
    switch = CardSwitch()
    tcp = start_tcp(switch, host, port, args.framing, args.spec)
    control = args.control or f"{host}:{tcp.server_address[1] + 1}"
    print(f"bank switch listening on {host}:{tcp.server_address[1]} ({args.framing}, spec {args.spec}); "
          f"settlement and control on http://{control}", flush=True)
    try:
        simkit.serve_forever(http_app(switch), control)  # until SIGINT/SIGTERM
    finally:
        tcp.shutdown()
        tcp.server_close()
    return 0
