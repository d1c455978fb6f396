"""`payhub demo checkout`: a payment for the demo merchant and its hosted checkout page, for trying the
cashier in a browser. Talks to the running server (`make run`) over gRPC with the demo merchant's API
key from `<data_dir>/demo.json`, like any merchant back end would, and prints the page's URL."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import grpc
from payhub.cli.demo import DEMO_FILE, load_state

from payhub.kernel.config import Settings


def _address(settings: Settings) -> str:
    host, _, port = settings.listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):  # noqa: S104 - listening on all addresses: call loopback
        host = "127.0.0.1"
    return f"{host}:{port}"


def checkout(settings: Settings, *, amount_minor: int, currency: str, client_type: str, locale: str,
             return_url: str) -> int:
    from payhub.cashier.v1 import cashier_pb2, cashier_pb2_grpc
    from payhub.common.v1 import common_pb2
    from payhub.trade.v1 import trade_pb2, trade_pb2_grpc

    state = load_state(Path(settings.data_dir) / DEMO_FILE)
    if not state.api_key:
        print("payhub demo checkout: no demo merchant yet: run `make run` (or `payhub demo seed`) first",
              file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {state.api_key}"),)
    order = f"demo-{secrets.token_hex(4)}"
    try:
        with grpc.insecure_channel(_address(settings)) as channel:
            payment = trade_pb2_grpc.TradeServiceStub(channel).CreatePayment(trade_pb2.CreatePaymentRequest(
                parent=f"merchants/{state.merchant_id}", request_id=order, payment=trade_pb2.Payment(
                    merchant_order_no=order, subject=f"Demo order {order}",
                    amount=common_pb2.Money(currency_code=currency, amount_minor=amount_minor))),
                metadata=metadata, timeout=10).payment
            session = cashier_pb2_grpc.CashierServiceStub(channel).CreateCheckoutSession(
                cashier_pb2.CreateCheckoutSessionRequest(request_id=f"{order}-checkout", checkout_session=(
                    cashier_pb2.CheckoutSession(
                        payment=payment.name, locale=locale, return_url=return_url.format(order=order),
                        client_type=common_pb2.ClientType.Value(f"CLIENT_TYPE_{client_type}")))),
                metadata=metadata, timeout=10).checkout_session
    except grpc.RpcError as exc:
        print(f"payhub demo checkout: {exc.code().name}: {exc.details()} (is `make run` serving on "
              f"{_address(settings)}?)", file=sys.stderr)
        return 1
    print(f"{payment.name}: {currency} {amount_minor} minor units, {client_type}, {locale}")
    print(f"open the checkout page: {session.hosted_url}")
    print("  a card that pays: 4242 4242 4242 4242, any future expiry, any CVC; one that is declined: "
          "4000 0000 0000 0002")
    return 0
