"""The settlement center in its own process: the wallet channel adapter of another process reaches it
over gRPC (SettlementService's internal wallet RPCs, through payhub.settlement.client.remote_client)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import grpc
import pytest
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.settlement.v1 import settlement_pb2 as spb
from payhub.settlement.v1 import settlement_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import free_port, new_postgres_database, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


def _money(amount: int) -> common_pb2.Money:
    return common_pb2.Money(currency_code="CNY", amount_minor=amount)


def test_wallet_top_up_and_payment_with_settlement_in_another_process(tmp_path: Path) -> None:
    """settlement+merchant in one server, trade, channel and the rest in another, one PostgreSQL database."""
    a_listen, b_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    shared = {"PAYHUB_ADMIN_TOKEN": f"admin-{secrets.token_hex(8)}",
              "PAYHUB_INTERNAL_TOKEN": f"internal-{secrets.token_hex(8)}",
              "PAYHUB_SETTLEMENT_ADDRESS": a_listen, "PAYHUB_MERCHANT_ADDRESS": a_listen,
              "PAYHUB_TRADE_ADDRESS": b_listen, "PAYHUB_CHANNEL_ADDRESS": b_listen, "PAYHUB_RISK_ADDRESS": b_listen}
    with new_postgres_database() as url:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = start_server(tmp_path / "a", database_url=url, args=("--services", "settlement,merchant"),
                         extra_env={**shared, "PAYHUB_LISTEN": a_listen})
        b = start_server(tmp_path / "b", database_url=url, args=("--services", "trade,cashier,risk,analytics,channel"),
                         extra_env={**shared, "PAYHUB_LISTEN": b_listen})
        try:
            api = Api(a)
            api.trade = trade_pb2_grpc.TradeServiceStub(b.channel())
            merchant_pb2_grpc.MerchantServiceStub(a.channel()).ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
                parent=api.merchant, request_id=rid(), channel_config=merchant_pb2.ChannelConfig(
                    channel="wallet", enabled=True, priority=1,
                    payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_WALLET])), metadata=a.admin_metadata())
            ledger = settlement_pb2_grpc.SettlementServiceStub(a.channel())
            wallet = ledger.CreateWallet(spb.CreateWalletRequest(parent=api.merchant, wallet=spb.Wallet(
                customer_id="alice", currency_code="CNY"), request_id=rid()), metadata=api.md).wallet
            top_up = ledger.TopUpWallet(spb.TopUpWalletRequest(wallet=wallet.name, amount=_money(3000),
                                                               request_id=rid()), metadata=api.md)
            assert api.confirm(top_up.payment).state == pb.PAYMENT_STATE_SUCCEEDED

            def balance() -> int:
                reply = ledger.GetWallet(spb.GetWalletRequest(name=wallet.name), metadata=api.md)
                return reply.wallet.balance.amount_minor
            deadline = time.monotonic() + 30
            while balance() != 3000:
                assert time.monotonic() < deadline, "the top-up was never posted"
                time.sleep(0.2)

            def pay_with_wallet(amount: int) -> pb.Payment:
                created = api.create(amount, customer=pb.Customer(id="alice"))
                return api.trade.ConfirmPayment(pb.ConfirmPaymentRequest(
                    name=created.name, request_id=rid(), payment_method=pb.PaymentMethod(
                        type=common_pb2.PAYMENT_METHOD_TYPE_WALLET, client_type=common_pb2.CLIENT_TYPE_H5)),
                    metadata=api.md).payment

            paid = pay_with_wallet(1200)
            assert (paid.state, paid.channel) == (pb.PAYMENT_STATE_SUCCEEDED, "wallet"), paid
            assert balance() == 1800  # the charge debits the wallet in the settlement process's transaction
            refused = pay_with_wallet(5000)
            assert refused.state == pb.PAYMENT_STATE_FAILED, refused
            assert "insufficient_funds" in refused.failure.code.lower(), refused.failure
            assert balance() == 1800

            # The internal wallet RPCs are not open to merchant keys.
            with pytest.raises(grpc.RpcError) as denied:
                ledger.ChargeWallet(spb.ChargeWalletRequest(merchant=api.merchant.split("/")[1], customer_id="alice",
                                                            payment_id="p", attempt_id=rid(), amount=_money(1)),
                                    metadata=api.md)
            assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        finally:
            assert a.stop() == 0
            assert b.stop() == 0
