"""`payhub simulate wechatpay --listen HOST:PORT --keys DIR`: a local WeChat Pay API v3 (direct merchant).

It verifies every request's `WECHATPAY2-SHA256-RSA2048` Authorization with the merchant's public key
and refuses bad ones as WeChat Pay does (401 SIGN_ERROR ...), signs every answer with the platform
("WeChat Pay public key") key and its PUB_KEY_ID_..., keeps each order's state machine, sends
AEAD_AES_256_GCM-encrypted notifications to the notify_url with WeChat's retry schedule
(15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h; `--notify-scale` compresses it), and writes
trade bills in the real CSV format behind a download URL with a SHA1.

Endpoints: GET /v3/certificates; POST /v3/pay/transactions/{native,jsapi,app,h5,codepay}; GET
/v3/pay/transactions/out-trade-no/{no}?mchid= and /id/{transaction_id}?mchid=; POST .../{no}/close;
POST /v3/refund/domestic/refunds; GET /v3/refund/domestic/refunds/{no}; GET /v3/bill/tradebill;
GET /v3/billdownload/file.

Keys: DIR holds platform_private_key.pem, merchant_private_key.pem (PKCS#8) and ids.json, created on
first use; DIR/config.json (also printed) has exactly the credential keys payhub's `wechatpay`
channel configuration takes: mchid, appid, merchant_serial_no, merchant_private_key, apiv3_key,
platform_public_key, platform_public_key_id, base_url.

Control API (JSON over HTTP, POST unless noted, under /__simulator):
  pay {code_url | out_trade_no[, mchid]} the buyer scans the QR code and pays (-> SUCCESS, notifies)
  fail {out_trade_no[, reason]}          the buyer's payment fails (-> PAYERROR)
  cancel {out_trade_no}                  the buyer gives up a payment code payment (USERPAYING -> PAYERROR)
  expire {out_trade_no}                  the order's time runs out (NOTPAY -> CLOSED)
  trade {out_trade_no} / refund {out_refund_no}   the order / refund as the simulator holds it
  notification {out_trade_no | out_refund_no}     a genuine notification (headers, body) signed now
  merchant {[platform: "certificate"]}   a new merchant account; answers its credentials (certificate
                                         mode: answers signed under the platform certificate's serial)
  refunds {processing: bool}             new refunds stay PROCESSING until settle_refund
  settle_refund {out_refund_no, status}  PROCESSING -> SUCCESS (notifies) / CLOSED / ABNORMAL
  tamper {count}                         sign the next N answers wrongly
  faults (GET|POST|DELETE)               endpoint faults: {"kind": latency|status|timeout|reset, "count",
                                         "seconds", "status", "after", "match"} (match: a path or out_trade_no)
  notifications (GET) / notifications/faults {drop, duplicate, delay, delay_seconds}
  clock (GET; POST {advance_seconds})
Payment codes (codepay auth_code, 18 digits from 10-15): ...0002 NOT_ENOUGH, ...0119 USER_PAYING, else paid.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.types import ASGIApp

from payhub.channel.simkit import (
    ControlError,
    Faults,
    KeyDir,
    Notifier,
    RunningApp,
    SimClock,
    build_app,
    control_routes,
    parse_listen,
    private_pem,
    public_pem,
    serve_forever,
    serve_in_thread,
)
from payhub.channel.wechatpay import wire
from payhub.channel.wechatpay.sim_api import PlatformKey, WechatPayApiSim
from payhub.channel.wechatpay.sim_book import Book, Merchant, Refused

BEIJING = timezone(timedelta(hours=8))
RETRY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def new_ids() -> dict[str, str]:
    return {"mchid": "19" + _digits(8), "appid": "wx" + secrets.token_hex(8),
            "merchant_serial_no": secrets.token_hex(20).upper(),
            "platform_public_key_id": "PUB_KEY_ID_01" + _digits(26),
            "apiv3_key": secrets.token_urlsafe(24)[:32]}


@dataclass
class Simulator:
    """A WeChat Pay simulator's parts; `app` serves both the API and the control API."""

    api: WechatPayApiSim
    book: Book
    notifier: Notifier
    app: ASGIApp
    default: dict[str, str]  # the --keys merchant's credentials (without base_url)

    def credentials(self, base_url: str, merchant: dict[str, str] | None = None) -> dict[str, str]:
        return {**(merchant or self.default), "base_url": base_url}

    def new_merchant(self, certificate_mode: bool = False) -> dict[str, str]:
        """A new merchant account. In certificate mode WeChat names its platform key by the platform
        certificate's serial (what /v3/certificates serves) instead of its PUB_KEY_ID_..."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._register(new_ids(), key, certificate_mode)

    def _register(self, ids: dict[str, str], key: rsa.RSAPrivateKey, certificate_mode: bool = False) -> dict[str, str]:
        platform = self.api.platform
        serial = platform.certificate_serial if certificate_mode else ""
        self.book.add_merchant(Merchant(ids["mchid"], ids["appid"], ids["merchant_serial_no"], key.public_key(),
                                        ids["apiv3_key"], serial))
        return {"mchid": ids["mchid"], "appid": ids["appid"], "merchant_serial_no": ids["merchant_serial_no"],
                "merchant_private_key": private_pem(key), "apiv3_key": ids["apiv3_key"],
                "platform_public_key": platform.certificate_pem if certificate_mode else public_pem(platform.key),
                "platform_public_key_id": serial or platform.key_id}


def build(keys_dir: str | Path, *, notify_scale: float = 1.0, bill_zone: timezone = BEIJING) -> Simulator:
    keys = KeyDir(keys_dir)
    ids = keys.json("ids", new_ids)
    platform = _platform(keys, ids["platform_public_key_id"])
    clock = SimClock(BEIJING)
    book, faults = Book(clock.now), Faults()
    notifier = Notifier(RETRY_SCHEDULE, scale=notify_scale)
    api = WechatPayApiSim(platform, book, notifier, faults, clock, bill_zone)
    sim = Simulator(api, book, notifier, build_app([]), {})
    sim.default = sim._register(ids, keys.private_key("merchant_private_key"))
    sim.app = build_app([*api.routes(), *control_routes(_actions(sim), faults=faults, notifier=notifier,
                                                        clock=clock)])
    return sim


def _platform(keys: KeyDir, key_id: str) -> PlatformKey:
    """The platform key and its certificate (self-signed, ten years), made on first use."""
    key = keys.private_key("platform_private_key")
    file = keys.path / "platform_certificate.pem"
    if not file.exists():
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WeChat Pay platform (payhub simulator)")])
        start = datetime.now(UTC) - timedelta(days=1)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(start + timedelta(days=3650)).sign(key, hashes.SHA256()))
        file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = file.read_text()
    cert = x509.load_pem_x509_certificate(pem.encode())
    return PlatformKey(key, key_id, pem, wire.certificate_serial(pem),
                       (cert.not_valid_before_utc.astimezone(BEIJING), cert.not_valid_after_utc.astimezone(BEIJING)))


def _actions(sim: Simulator) -> dict[str, Any]:
    book, api = sim.book, sim.api

    def refused(fn: Any) -> Any:
        def run(body: dict[str, Any]) -> dict[str, Any]:
            try:
                result: dict[str, Any] = fn(body)
            except Refused as exc:
                raise ControlError(str(exc), 409) from exc
            return result
        return run

    def pay(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("code_url"):
            scanned = book.scanned(str(body["code_url"]))
            body = {"out_trade_no": scanned.out_trade_no, "mchid": scanned.mchid}
        trade = book.buyer_pays(str(body["out_trade_no"]), str(body.get("mchid", "")))
        api.notify_trade(trade)
        return {"trade_state": trade.state, "transaction_id": trade.transaction_id}

    def fail(body: dict[str, Any]) -> dict[str, Any]:
        trade = book.buyer_fails(str(body["out_trade_no"]), str(body.get("mchid", "")),
                                 str(body.get("reason") or "支付失败, 请重试"))
        return {"trade_state": trade.state}

    def cancel(body: dict[str, Any]) -> dict[str, Any]:
        trade = book.find(str(body["out_trade_no"]), str(body.get("mchid", "")))
        if trade.state == "USERPAYING":
            trade = book.buyer_fails(trade.out_trade_no, trade.mchid, "用户取消支付")
        return {"trade_state": trade.state}

    def expire(body: dict[str, Any]) -> dict[str, Any]:
        return {"trade_state": book.expire(str(body["out_trade_no"]), str(body.get("mchid", ""))).state}

    def trade(body: dict[str, Any]) -> dict[str, Any]:
        found = book.find(str(body["out_trade_no"]), str(body.get("mchid", "")))
        return found.resource(lambda m: m.isoformat(timespec="seconds"))

    def refund(body: dict[str, Any]) -> dict[str, Any]:
        found = book.find_refund(str(body["out_refund_no"]), str(body.get("mchid", "")))
        return found.resource(lambda m: m.isoformat(timespec="seconds"))

    def notification(body: dict[str, Any]) -> dict[str, Any]:
        mchid = str(body.get("mchid", ""))
        subject = book.find_refund(str(body["out_refund_no"]), mchid) if body.get("out_refund_no") \
            else book.find(str(body["out_trade_no"]), mchid)
        data = api.notification_body(subject)
        return {"headers": api.notification_headers(data, subject.mchid), "body": data.decode()}

    def refunds(body: dict[str, Any]) -> dict[str, Any]:
        book.refunds_processing = bool(body.get("processing", False))
        return {"processing": book.refunds_processing}

    def settle_refund(body: dict[str, Any]) -> dict[str, Any]:
        settled = book.settle_refund(str(body["out_refund_no"]), str(body.get("status", "SUCCESS")))
        if settled.status == "SUCCESS":
            api.notify_refund(settled)
        return {"status": settled.status}

    def tamper(body: dict[str, Any]) -> dict[str, Any]:
        api.tamper = int(body.get("count", 1))
        return {"tamper": api.tamper}

    handlers = {"pay": pay, "fail": fail, "cancel": cancel, "expire": expire, "trade": trade, "refund": refund,
                "notification": notification, "refunds": refunds, "settle_refund": settle_refund,
                "tamper": tamper,
                "merchant": lambda body: sim.new_merchant(body.get("platform") == "certificate")}
    return {name: refused(fn) for name, fn in handlers.items()}


def start(keys_dir: str | Path, listen: str = "127.0.0.1:0", *, notify_scale: float = 1.0,
          bill_zone: timezone = BEIJING) -> tuple[Simulator, RunningApp]:
    """A simulator on a background thread (tests and contract kits)."""
    sim = build(keys_dir, notify_scale=notify_scale, bill_zone=bill_zone)
    return sim, serve_in_thread(sim.app, listen)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payhub simulate wechatpay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:8091", help="HOST:PORT to serve on (default %(default)s)")
    parser.add_argument("--keys", required=True, help="directory of key files; created and filled on first use")
    parser.add_argument("--notify-scale", type=float, default=1.0,
                        help="multiply the notification retry delays (0.001: a day's schedule in ~90 s)")
    parser.add_argument("--bill-utc-offset", type=float, default=8.0,
                        help="hours east of UTC where bill days are cut (WeChat: 8, Beijing)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"payhub simulate wechatpay: {exc}", file=sys.stderr)
        return 2
    zone = timezone(timedelta(hours=args.bill_utc_offset))
    sim = build(args.keys, notify_scale=args.notify_scale, bill_zone=zone)
    KeyDir(args.keys).write_config(sim.credentials(f"http://{host}:{port}"))
    print(f"WeChat Pay simulator on http://{host}:{port} (control API under /__simulator)", file=sys.stderr,
          flush=True)
    try:
        serve_forever(sim.app, args.listen)
    finally:
        sim.notifier.stop()
    return 0
