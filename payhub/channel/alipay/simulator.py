"""`payhub simulate alipay`: a local Alipay Open Platform gateway (server side), faithful on the wire.

    payhub simulate alipay --listen 127.0.0.1:8090 --keys var/alipay-sim [--notify-delay-scale 0.001]

It verifies payhub's RSA2 signatures and rejects bad ones as Alipay does (`isv.invalid-signature`, code
40002, ...), signs every answer with its own Alipay key, keeps each trade's state machine, POSTs signed
asynchronous notifications to the notify_url of the order and retries until the answer is `success`
(Alipay's schedule: 4m 10m 10m 1h 2h 6h 15h, multiplied by --notify-delay-scale), and serves the
`trade` bill of a past day (ZIP of GBK CSVs) from 10:00 the next day. Keys (--keys DIR): the channel's
`alipay_private_key.pem`, the merchant app's `app_private_key.pem` and `app.json` (app_id, seller_id),
created on first use; DIR/config.json (printed too) holds the merchant's credentials under the names
payhub's ConfigureChannel takes: app_id, app_private_key, alipay_public_key, gateway_url, seller_id.

By default `alipay.trade.precreate` opens the trade at once (WAIT_BUYER_PAY); the real gateway shows it
only after the buyer scans (query/close answer ACQ.TRADE_NOT_EXIST before, and a close then leaves the
QR code payable): --trade-exists-after-scan behaves so (control `scan`). Page, WAP and APP orders exist
only once the buyer opens them (control `open` or `pay`).

Control API (JSON over HTTP, POST unless noted, under /__simulator, a path Alipay never uses):
  pay      {"app_id", "out_trade_no"} | {"qr_code"} | {"url"} | {"order_string"}   the buyer pays
  open     {"url"} | {"order_string"}      the buyer opens a page/WAP/APP order (the trade now exists)
  scan     {"app_id", "out_trade_no"}      the buyer scans a QR order (with --trade-exists-after-scan)
  cancel   {"app_id", "out_trade_no"}      the buyer gives up: the unpaid trade closes
  expire   {"app_id", "out_trade_no"}      the order times out now (closes if unpaid)
  finish   {"app_id", "out_trade_no"}      the refund period ends: TRADE_SUCCESS -> TRADE_FINISHED
  trade    {"app_id", "out_trade_no"}      the trade as the simulator holds it
  notification {"app_id", "out_trade_no", "out_request_no"?}  a genuine signed notification body (not sent)
  apps     {}                              register another merchant app: its config (like config.json)
  faults   {"kind": "latency|status|timeout|reset", "count": 1, "seconds": 0, "status": 502,
            "match": "alipay.trade.query"}   (GET lists, DELETE clears) faults on gateway.do
  notifications/faults {"drop": N, "duplicate": N, "delay": N, "delay_seconds": S}
  notifications  (GET ?subject=OUT_TRADE_NO)  every notification and its deliveries
  clock    {"advance_seconds": N}  (GET shows) move the simulator's clock forward (expiry, T+1 bills)
Barcode payments (alipay.trade.pay): a buyer code (auth_code) of 16-24 digits starting 25-30 pays at
once; one ending 9995 is refused (ACQ.BUYER_BALANCE_NOT_ENOUGH); one ending 0003 waits for the buyer to
confirm in the app (code 10003; then control `pay`).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from payhub.channel import simkit
from payhub.channel.alipay import wire
from payhub.channel.alipay.bill import write_bill
from payhub.channel.alipay.sim_book import SimApp, SimBook, SimTrade
from payhub.channel.alipay.sim_gateway import Event, Gateway, GatewayError
from payhub.channel.simkit import ControlError, Delivery, Faults, KeyDir, Notifier, SimClock

RETRY_SCHEDULE = (240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0)  # §1.6: 8 deliveries in ~25 h
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def new_app_ids() -> dict[str, Any]:
    return {"app_id": "2021" + f"{secrets.randbelow(10**12):012d}",
            "seller_id": "2088" + f"{secrets.randbelow(10**12):012d}"}


class AlipaySimulator:
    """The gateway, its book, clock, faults and notifier; `app()` is the ASGI app serving them."""

    def __init__(self, alipay_key: rsa.RSAPrivateKey, *, notify_delay_scale: float = 1.0,
                 exists_after_scan: bool = False) -> None:
        self.alipay_key = alipay_key
        self.book = SimBook()
        self.clock = SimClock(wire.BEIJING)
        self.faults = Faults()
        self.notifier = Notifier(RETRY_SCHEDULE, scale=notify_delay_scale)
        self.gateway = Gateway(self.book, alipay_key, self.clock, self._notify, exists_after_scan=exists_after_scan)
        self.base_url = ""

    def register(self, public_key: rsa.RSAPublicKey, app_id: str, seller_id: str) -> None:
        self.book.add_app(SimApp(app_id, public_key, seller_id))

    def new_app(self) -> dict[str, str]:
        """A fresh merchant app (keys made here): its credentials, as config.json holds them."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ids = new_app_ids()
        self.register(key.public_key(), ids["app_id"], ids["seller_id"])
        return self.credentials(ids["app_id"], simkit.private_pem(key), ids["seller_id"])

    def credentials(self, app_id: str, app_private_pem: str, seller_id: str) -> dict[str, str]:
        return {"app_id": app_id, "app_private_key": app_private_pem,
                "alipay_public_key": simkit.public_pem(self.alipay_key),
                "gateway_url": f"{self.base_url}{wire.GATEWAY_PATH}", "seller_id": seller_id}

    def stop(self) -> None:
        self.notifier.stop()

    # -- notifications -------------------------------------------------------------------------
    def _notify(self, event: Event) -> None:
        trade = event.trade
        if not trade.notify_url:
            return
        notify_id = secrets.token_hex(16)
        body = self.gateway.notification(event, notify_id)  # notify_id and body stay the same on retries
        self.notifier.send(notify_id, trade.notify_url, trade.out_trade_no,
                           lambda: Delivery(body, {"content-type": FORM}), lambda status, answer: answer == b"success")

    # -- HTTP ----------------------------------------------------------------------------------
    def app(self) -> ASGIApp:
        routes: list[BaseRoute] = [
            Route(wire.GATEWAY_PATH, self._gateway_endpoint, methods=["GET", "POST"]),
            Route("/downloadBillFile.resource", self._bill_endpoint, methods=["GET"]),
            *simkit.control_routes(self._actions(), faults=self.faults, notifier=self.notifier, clock=self.clock)]
        return simkit.build_app(routes)

    async def _gateway_endpoint(self, request: Request) -> Response:
        # Parameters may come in the query string, the form body or both (§1.1): merge them.
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method == "POST":
            body = (await request.body()).decode("utf-8", errors="replace")
            params.update(parse_qsl(body, keep_blank_values=True))
        base = str(request.base_url).rstrip("/")
        return await run_in_threadpool(self._gateway_call, params, base)

    def _gateway_call(self, params: Mapping[str, str], base: str) -> Response:
        fault = self.faults.take(params.get("method", ""))
        early = simkit.apply_fault_before(fault)
        if early is not None:
            return early
        text = self.gateway.answer(params, base)
        return simkit.apply_fault_after(fault, Response(text.encode(), 200,
                                                        media_type="application/json;charset=utf-8"))

    def _bill_endpoint(self, request: Request) -> Response:
        token = self.gateway.bill_tokens.get(request.query_params.get("token", ""))
        now = self.clock.now()
        if token is None or token.expires < now:
            return Response("<html><body>链接已过期 (download link expired)</body></html>".encode(), 403,
                            media_type="text/html;charset=utf-8")
        with self.book.lock:
            entries = self.book.bill_entries(token.app_id, token.day)
            pid = self.book.apps[token.app_id].seller_id
        return Response(write_bill(pid, token.day, entries, now), 200, media_type="application/zip")

    # -- the control API -----------------------------------------------------------------------
    def _actions(self) -> dict[str, simkit.ControlHandler]:
        return {"pay": self._control_pay, "open": self._control_open, "scan": self._control_scan,
                "cancel": self._trade_action("cancel"),
                "expire": self._trade_action("expire"), "finish": self._trade_action("finish"),
                "trade": self._trade_action("show"), "notification": self._control_notification,
                "apps": lambda body: self.new_app()}

    def _control_pay(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            trade = self._control_trade(body, create=True)
            self._guard(lambda: self.gateway.buyer_pays(trade))
            return _show(trade)

    def _control_open(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            return _show(self._control_trade(body, create=True))

    def _control_scan(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            trade = self._control_trade(body, create=False)
            if trade.status != "WAIT_BUYER_PAY":
                raise ControlError(f"the trade is {trade.status}: nothing to scan", 409)
            trade.scanned = True
            return _show(trade)

    def _trade_action(self, action: str) -> simkit.ControlHandler:
        def run(body: dict[str, Any]) -> dict[str, Any]:
            with self.book.lock:
                trade = self._control_trade(body, create=False)
                if action in ("cancel", "expire"):
                    self.gateway.buyer_leaves(trade)
                elif action == "finish":
                    if trade.status != "TRADE_SUCCESS":
                        raise ControlError(f"the trade is {trade.status}, not TRADE_SUCCESS", 409)
                    trade.status = "TRADE_FINISHED"
                    self.gateway.notify(Event(trade))
                return _show(trade)
        return run

    def _control_notification(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            trade = self._control_trade(body, create=False)
            refund = trade.refunds.get(str(body.get("out_request_no", ""))) if body.get("out_request_no") else None
            if body.get("out_request_no") and refund is None:
                raise ControlError("no such refund", 404)
            return {"content_type": FORM,
                    "body": self.gateway.notification(Event(trade, refund), secrets.token_hex(16)).decode()}

    def _control_trade(self, body: Mapping[str, Any], *, create: bool) -> SimTrade:
        """The trade a control request names: by app_id + out_trade_no, by QR code, or (create) by the
        signed page URL / APP order string the buyer was given."""
        self.gateway.expire_due()
        signed = body.get("url") or body.get("order_string")
        if signed:
            if not create:
                raise ControlError("name the trade by app_id and out_trade_no")
            query = urlsplit(str(signed)).query if body.get("url") else str(signed)
            params = dict(parse_qsl(query, keep_blank_values=True))
            opened: SimTrade = self._guard(lambda: self.gateway.page_order(params))
            return opened
        if body.get("qr_code"):
            for app in self.book.apps.values():
                for trade in self.book.trades(app.app_id):
                    if trade.qr_code == body["qr_code"]:
                        return trade
            raise ControlError("no order has that QR code", 404)
        found = self.book.find(str(body.get("app_id", "")), str(body.get("out_trade_no", "")))
        if found is None:
            raise ControlError("no such trade (app_id, out_trade_no)", 404)
        return found

    @staticmethod
    def _guard(fn: Any) -> Any:
        try:
            return fn()
        except GatewayError as exc:
            raise ControlError(f"{exc.sub_code}: {exc.sub_msg}", 409) from exc


def _show(trade: SimTrade) -> dict[str, Any]:
    data = {k: v for k, v in asdict(trade).items() if k != "refunds"}
    data |= {"total_amount": wire.yuan(trade.total_fen), "refunded_amount": wire.yuan(trade.refunded_fen),
             "refunds": sorted(trade.refunds)}
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


# -- the command line ----------------------------------------------------------------------------
def load(keys: KeyDir, scale: float, exists_after_scan: bool = False) -> tuple[AlipaySimulator, dict[str, str]]:
    """A simulator with the merchant app of a keys directory registered; the app's credentials
    (gateway_url filled in once the address is known)."""
    simulator = AlipaySimulator(keys.private_key("alipay_private_key"), notify_delay_scale=scale,
                                exists_after_scan=exists_after_scan)
    app_key = keys.private_key("app_private_key")
    ids = keys.json("app", new_app_ids)
    simulator.register(app_key.public_key(), ids["app_id"], ids["seller_id"])
    return simulator, {"app_id": ids["app_id"], "app_private_key": simkit.private_pem(app_key),
                       "seller_id": ids["seller_id"]}


def parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="payhub simulate alipay", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:8090", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument("--keys", default="var/alipay-simulator", help="directory of keys and config.json "
                   "(created on first use; default %(default)s)")
    p.add_argument("--trade-exists-after-scan", action="store_true",
                   help="a QR (precreate) trade is unknown to query/close until the buyer scans, as at Alipay")
    p.add_argument("--notify-delay-scale", type=float, default=1.0,
                   help="multiply the notification retry delays (0.001: a day's schedule in about a minute)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    keys = KeyDir(Path(args.keys))
    simulator, creds = load(keys, args.notify_delay_scale, args.trade_exists_after_scan)
    try:
        sock = simkit.bind(args.listen)
    except (OSError, ValueError) as exc:
        print(f"payhub simulate alipay: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    simulator.base_url = f"http://{host}:{port}"
    keys.write_config(simulator.credentials(creds["app_id"], creds["app_private_key"], creds["seller_id"]))
    print(f"alipay simulator: gateway {simulator.base_url}{wire.GATEWAY_PATH}, control API "
          f"{simulator.base_url}{simkit.CONTROL_PREFIX}/..., config {keys.path / 'config.json'}",
          file=sys.stderr, flush=True)
    try:
        simkit.serve_socket(simulator.app(), sock)
    finally:
        simulator.stop()
    return 0
