"""`payhub simulate bank --listen HOST:PORT`: a local ISO 8583 card switch (switch.py has its
cards and rules) with a small HTTP control interface beside it.

The switch speaks framed ISO 8583 over TCP (`--framing`, `--spec`: the same choices as the
adapter's credentials). The control port (`--control`, default: the switch port + 1) answers:

    GET  /health                       "ok"
    POST /control   {"next": "timeout"|"drop"|"late"|"decline:05"|"approve", "count": 1,
                     "reversals": "answer"|"ignore"|"refuse:96"}
    POST /accounts  {"pan": "...", "balance_minor": 100, "expiry": "YYMM", "decline_code": ""}
    GET  /reversals                    the reversals received, oldest first (JSON)
    GET  /transactions                 the book, card numbers shown as last four (JSON)
    GET  /settlement?date=YYYYMMDD&terminal_id=T   the day's settlement file (CSV)
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import socketserver
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import iso8583

from payhub.channel.bankcard import specs, wire
from payhub.channel.bankcard.switch import Account, CardSwitch

HOLD_SECONDS = 120.0  # a "timeout" holds the connection open, answering nothing, at most this long


@dataclass
class SwitchServer:
    """The switch and its two listeners, started in daemon threads (for tests and `main`)."""

    switch: CardSwitch
    tcp: socketserver.ThreadingTCPServer
    http: ThreadingHTTPServer

    @property
    def port(self) -> int:
        return int(self.tcp.server_address[1])

    @property
    def control_url(self) -> str:
        host, port = self.http.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        for server in (self.tcp, self.http):
            server.shutdown()
            server.server_close()


def start(host: str = "127.0.0.1", port: int = 0, control_port: int | None = None, framing: str = "binary2",
          spec_name: str = specs.DEFAULT_PROFILE, switch: CardSwitch | None = None) -> SwitchServer:
    switch = switch or CardSwitch()
    _, spec = specs.resolve(spec_name)
    tcp = _Tcp((host, port), _tcp_handler(switch, spec, framing))
    http = ThreadingHTTPServer((host, control_port if control_port is not None else
                                (tcp.server_address[1] + 1 if port else 0)), _http_handler(switch))
    http.daemon_threads = True
    for server in (tcp, http):
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="bank-simulator").start()
    return SwitchServer(switch, tcp, http)


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


def _http_handler(switch: CardSwitch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/health":
                self._reply(200, b"ok", "text/plain")
            elif url.path == "/reversals":
                self._reply(200, json.dumps(switch.reversal_log()).encode())
            elif url.path == "/transactions":
                self._reply(200, json.dumps(switch.transactions()).encode())
            elif url.path == "/settlement":
                day = query.get("date") or datetime.now(UTC).strftime("%Y%m%d")
                self._reply(200, switch.settlement_file(day, query.get("terminal_id", "")), "text/csv")
            else:
                self._reply(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                if self.path == "/control":
                    switch.control(str(body.get("next", "")), int(body.get("count", 1)), str(body.get("reversals", "")))
                elif self.path == "/accounts":
                    switch.add_account(str(body["pan"]), Account(int(body["balance_minor"]), str(body.get(
                        "expiry", "9912")), str(body.get("decline_code", ""))))
                else:
                    self._reply(404, b'{"error": "not found"}')
                    return
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, json.dumps({"error": str(exc)}).encode())
                return
            self._reply(200, b"{}")
    return Handler


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="payhub simulate bank", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8583", help="HOST:PORT of the ISO 8583 switch")
    parser.add_argument("--control", default="", help="HOST:PORT of the HTTP control port (default: port + 1)")
    parser.add_argument("--framing", default=wire.DEFAULT_FRAMING, choices=wire.FRAMINGS)
    parser.add_argument("--spec", default=specs.DEFAULT_PROFILE, choices=sorted(specs.PROFILES))
    args = parser.parse_args(argv)
    host, port = _address(args.listen)
    control_port = _address(args.control)[1] if args.control else None
    server = start(host, port, control_port, args.framing, args.spec)
    print(f"bank switch listening on {host}:{server.port} ({args.framing}, spec {args.spec}); "
          f"control {server.control_url}", flush=True)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    server.close()
    return 0
