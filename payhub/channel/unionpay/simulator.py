"""`payhub simulate unionpay`: a local UnionPay online gateway (ACP 5.1.0), faithful on the wire.

    payhub simulate unionpay --listen 127.0.0.1:8092 --keys var/unionpay-sim [--notify-delay-scale 0.001]

It has its own development CA (root -> middle -> UnionPay's signing certificate, made with
`cryptography`) and issues the merchant's signing certificate under it. It checks payhub's requests
(certId known for the merId, signMethod 01 signature: respCode 11 otherwise), answers signed `k=v` text
carrying `signPubKeyCert`, keeps each order's state, and POSTs signed notifications to the backUrl of
every successful consume, refund and undo, again until answered HTTP 200 (UnionPay's 5 deliveries, 1 2
4 5 minutes apart, times --notify-delay-scale). Keys (--keys DIR): root/middle/UnionPay signing keys
and the merchant's `merchant_sign_key.pem` + `merchant.json` (mer_id), created on first use;
DIR/config.json (printed too) holds the merchant's credentials as ConfigureChannel takes them: mer_id,
sign_cert, verify_root_cert, verify_middle_cert, gateway_url.

Front consumes (PC/H5): the browser POSTs the signed form to /gateway/api/frontTransReq.do, which shows
a page; the order exists once the buyer pays (control `pay`). Token consumes (backTransReq, bizType
000902): a token ending 9995 is refused (61), one ending 0005 stays in progress until control `settle`.

Control API (JSON over HTTP, POST unless noted, under /__simulator, a path UnionPay never uses):
  pay      {"form": {...signed front form fields}}       the buyer pays a front consume
  settle   {"mer_id", "order_id", "code": "00"}          an in-progress order ends with that respCode
  order    {"mer_id", "order_id"}                        the order as the simulator holds it
  notification {"mer_id", "order_id"}                    a genuine signed notification body (not sent)
  merchants {}                                           another merchant: its credentials (as config.json)
  faults   {"kind": "latency|status|timeout|reset", "count": 1, "match": "backTransReq:01"}
           (operation = `<endpoint>:<txnType>`; GET lists, DELETE clears)
  notifications/faults {"drop": N, "duplicate": N, "delay": N, "delay_seconds": S}
  notifications  (GET ?subject=ORDER_ID)  every notification and its deliveries
  clock    {"advance_seconds": N}  (GET shows) move the simulator's clock (statement files, undo day)
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from payhub.channel import simkit
from payhub.channel.simkit import ControlError, Delivery, KeyDir, Notifier, SimClock
from payhub.channel.unionpay import wire
from payhub.channel.unionpay.dev_ca import DevCA
from payhub.channel.unionpay.sim_book import SimBook, SimOrder
from payhub.channel.unionpay.sim_gateway import Gateway, GatewayError

RETRY_SCHEDULE = (60.0, 120.0, 240.0, 300.0)  # §3.1: up to 5 deliveries
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
_ENDPOINTS = {wire.FRONT_PATH: "frontTransReq", wire.BACK_PATH: "backTransReq", wire.QUERY_PATH: "queryTrans",
              wire.FILE_PATH: "fileTransRequest"}


def new_mer_id() -> str:
    return "777" + f"{secrets.randbelow(10**12):012d}"


class UnionPaySimulator:
    """The gateway, its book, CA, clock, faults and notifier; `app()` is the ASGI app serving them."""

    def __init__(self, ca: DevCA, *, notify_delay_scale: float = 1.0) -> None:
        self.ca = ca
        self.book = SimBook()
        self.clock = SimClock(wire.BEIJING)
        self.faults = simkit.Faults()
        self.notifier = Notifier(RETRY_SCHEDULE, scale=notify_delay_scale)
        self.gateway = Gateway(self.book, ca, self.clock, self._notify)
        self.base_url = ""

    def register(self, mer_id: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
        """A merchant signing certificate for `key`, registered; the merchant's credentials."""
        cert = self.ca.merchant_cert(key, mer_id)
        with self.book.lock:
            self.book.add_cert(mer_id, wire.cert_id(cert), key.public_key())
        return {"mer_id": mer_id, "sign_cert": simkit.private_pem(key) + wire.certificate_pem(cert),
                "verify_root_cert": wire.certificate_pem(self.ca.root),
                "verify_middle_cert": wire.certificate_pem(self.ca.middle), "gateway_url": self.base_url}

    def new_merchant(self) -> dict[str, str]:
        return self.register(new_mer_id(), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def stop(self) -> None:
        self.notifier.stop()

    def _notify(self, order: SimOrder) -> None:
        if not order.back_url:
            return
        body = urlencode(self.gateway.notification(order)).encode()  # the same body on every retry
        self.notifier.send(secrets.token_hex(16), order.back_url, order.order_id,
                           lambda: Delivery(body, {"content-type": FORM}), lambda status, answer: status == 200)

    # -- HTTP ----------------------------------------------------------------------------------
    def app(self) -> ASGIApp:
        routes: list[BaseRoute] = [Route(path, self._endpoint, methods=["POST"]) for path in _ENDPOINTS]
        routes += simkit.control_routes(self._actions(), faults=self.faults, notifier=self.notifier,
                                        clock=self.clock)
        return simkit.build_app(routes)

    async def _endpoint(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        params = dict(parse_qsl(body, keep_blank_values=True))
        return await run_in_threadpool(self._call, request.url.path, params)

    def _call(self, path: str, params: dict[str, str]) -> Response:
        fault = self.faults.take(f"{_ENDPOINTS[path]}:{params.get('txnType', '')}")
        early = simkit.apply_fault_before(fault)
        if early is not None:
            return early
        if path == wire.FRONT_PATH:
            return simkit.apply_fault_after(fault, self._front_page(params))
        text = self.gateway.answer(path, params)
        return simkit.apply_fault_after(fault, Response(text.encode(), 200, media_type="text/plain;charset=UTF-8"))

    def _front_page(self, params: dict[str, str]) -> Response:
        try:
            with self.book.lock:
                self.gateway.check_request(params)
        except GatewayError as exc:
            return HTMLResponse(f"<html><body>{exc.code} {exc}</body></html>", 400)
        return HTMLResponse(f"<html><body>UnionPay simulator cashier: order {params.get('orderId', '')}, "
                            f"{params.get('txnAmt', '')} fen. Pay through the control API.</body></html>")

    # -- the control API -----------------------------------------------------------------------
    def _actions(self) -> dict[str, simkit.ControlHandler]:
        return {"pay": self._control_pay, "settle": self._control_settle, "order": self._control_order,
                "notification": self._control_notification, "merchants": lambda body: self.new_merchant()}

    def _control_pay(self, body: dict[str, Any]) -> dict[str, Any]:
        form = body.get("form")
        if not isinstance(form, dict):
            raise ControlError("give the signed front form as {\"form\": {...}}")
        try:
            return _show(self.gateway.buyer_pays({str(k): str(v) for k, v in form.items()}))
        except GatewayError as exc:
            raise ControlError(f"{exc.code}: {exc}", 409) from exc

    def _control_settle(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            order = self._order(body)
            if order.resp_code:
                raise ControlError(f"the order has ended ({order.resp_code})", 409)
            self.gateway.settle(order, str(body.get("code", "00")))
            return _show(order)

    def _control_order(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            return _show(self._order(body))

    def _control_notification(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.book.lock:
            order = self._order(body)
            return {"content_type": FORM, "body": urlencode(self.gateway.notification(order))}

    def _order(self, body: dict[str, Any]) -> SimOrder:
        order = self.book.find(str(body.get("mer_id", "")), str(body.get("order_id", "")))
        if order is None:
            raise ControlError("no such order (mer_id, order_id)", 404)
        return order


def _show(order: SimOrder) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(order).items()}


# -- the command line ----------------------------------------------------------------------------
def load(keys: KeyDir, scale: float) -> tuple[UnionPaySimulator, str, rsa.RSAPrivateKey]:
    ca = DevCA(keys.private_key("root_key"), keys.private_key("middle_key"), keys.private_key("unionpay_sign_key"))
    mer_id = str(keys.json("merchant", lambda: {"mer_id": new_mer_id()})["mer_id"])
    return UnionPaySimulator(ca, notify_delay_scale=scale), mer_id, keys.private_key("merchant_sign_key")


def parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="payhub simulate unionpay", description=doc.split("\n\n")[0],
                                epilog=doc.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:8092", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument("--keys", default="var/unionpay-simulator", help="directory of keys and config.json "
                   "(created on first use; default %(default)s)")
    p.add_argument("--notify-delay-scale", type=float, default=1.0,
                   help="multiply the notification retry delays (0.001: the whole schedule in about a second)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    keys = KeyDir(Path(args.keys))
    simulator, mer_id, key = load(keys, args.notify_delay_scale)
    try:
        sock = simkit.bind(args.listen)
    except (OSError, ValueError) as exc:
        print(f"payhub simulate unionpay: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    simulator.base_url = f"http://{host}:{port}"
    keys.write_config(simulator.register(mer_id, key))
    print(f"unionpay simulator: gateway {simulator.base_url}/gateway/api/..., control API "
          f"{simulator.base_url}{simkit.CONTROL_PREFIX}/..., config {keys.path / 'config.json'}",
          file=sys.stderr, flush=True)
    try:
        simkit.serve_socket(simulator.app(), sock)
    finally:
        simulator.stop()
    return 0
