"""What payhub's own RPC layer costs per payment, without a network, a gRPC server or a database:

    python -m payhub.bench.pipeline [--payments 20000] [--cprofile 30] [--mode layer|service]

The trade servicer's handlers are wrapped by the server's call pipeline exactly as `build_server`
registers them (`CallPipeline.serve_on`), with the credential store, the log level (`warning`) and the
tokens a bench server has. Each payment is CreatePayment + ConfirmPayment as the bench's client sends
them: request bytes parsed by the registered deserializer, the wrapped handler called with a stand-in
ServicerContext (a merchant API key's bearer, a deadline), the response serialized.

`--mode layer` (default) answers the service calls with payments captured from one real create and
confirm (SQLite), so what is measured is the layer alone: metadata, contexts, authentication,
authorization, validation, request conversion, the response, metrics. `--mode requests` times only
the making of the request bytes (the harness's own cost, to subtract). Prints process CPU per payment.

Instruction counts (the machine's CPU time is noisy): run under callgrind with collection toggled on
the C function behind `operator.call`, through which each measured payment is made:

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        .venv/bin/python -m payhub.bench.pipeline --payments 200
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import operator
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from payhub.bench.scenarios import approved_card


class Aborted(Exception):
    pass


class StandInContext:
    """The part of grpc.ServicerContext the pipeline and the trade servicer use."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata
        self._code: Any = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return 9.99

    def abort_with_status(self, status: Any) -> None:
        self._code = status.code
        raise Aborted(status.code)

    def code(self) -> Any:
        return self._code

    def is_active(self) -> bool:
        return True


def _requests(parent: str, prefix: str, serial: int, card: str) -> tuple[bytes, Any]:
    """CreatePayment's request bytes and a maker of ConfirmPayment's (as payhub.bench.scenarios sends)."""
    from payhub.common.v1.common_pb2 import CLIENT_TYPE_PC, PAYMENT_METHOD_TYPE_CARD, Money
    from payhub.trade.v1 import trade_pb2 as pb
    create = pb.CreatePaymentRequest(
        parent=parent, request_id=uuid.uuid4().hex,
        payment=pb.Payment(merchant_order_no=f"{prefix}-{serial}", subject="bench",
                           amount=Money(currency_code="CNY", amount_minor=10_000),
                           capture_method=pb.CAPTURE_METHOD_AUTOMATIC)).SerializeToString()

    def confirm(name: str) -> bytes:
        return pb.ConfirmPaymentRequest(
            name=name, request_id=uuid.uuid4().hex,
            payment_method=pb.PaymentMethod(type=PAYMENT_METHOD_TYPE_CARD, client_type=CLIENT_TYPE_PC,
                                            card=pb.CardDetails(number=card, exp_month=12, exp_year=2034,
                                                                cvc="123"))).SerializeToString()
    return create, confirm


class Harness:
    def __init__(self, directory: Path) -> None:
        from payhub.bench.inprocess import _merchant
        from payhub.identity.principal import SYSTEM, set_current_principal
        from payhub.identity.store import CredentialStore
        from payhub.kernel.config import SERVICE_NAMES, Settings
        from payhub.kernel.crypto import KeyRing
        from payhub.kernel.db import Database
        from payhub.kernel.logging import configure_logging
        from payhub.kernel.migrate import upgrade
        from payhub.server.context import AppContext
        from payhub.server.interceptors import CallPipeline

        configure_logging("warning", "json")
        url = f"sqlite:///{directory / 'pipeline.db'}"
        upgrade(url)
        db = Database(url, pool_size=4)
        keyring = KeyRing.parse(f"b1:{base64.b64encode(os.urandom(32)).decode()}")
        credentials = CredentialStore(db, admin_token=f"admin-{uuid.uuid4().hex}",
                                      internal_token=f"internal-{uuid.uuid4().hex}")
        ctx = AppContext(Settings(database_url=url), db, keyring, credentials, served=SERVICE_NAMES)
        token = set_current_principal(SYSTEM)
        merchant = _merchant(ctx)
        _key, secret = credentials.create_api_key(merchant, read_only=False, description="bench")
        from payhub.identity.principal import reset_current_principal
        reset_current_principal(token)
        self.parent = f"merchants/{merchant}"
        self.metadata = (("authorization", f"Bearer {secret}"),)
        self.trade: Any = ctx.component("trade")  # a TradeComponent
        handlers: dict[str, Any] = {}

        class Server:  # what CallPipeline.serve_on wraps: the handlers the generated code registers
            def add_registered_method_handlers(self, service: str, method_handlers: dict[str, Any]) -> None:
                handlers.update(method_handlers)

            def add_generic_rpc_handlers(self, generic: Any) -> None:
                pass

        self.trade.add_to_server(CallPipeline(credentials).serve_on(Server()))  # type: ignore[arg-type]
        self.create_handler, self.confirm_handler = handlers["CreatePayment"], handlers["ConfirmPayment"]
        self.prefix = f"pipe-{uuid.uuid4().hex[:8]}"
        self.serial = 0
        # One real payment through the pipeline; the service's answers are kept for the stub.
        service, captured = self.trade.service, {}  # type: ignore[attr-defined]
        real_create, real_confirm = service.create_payment, service.confirm_payment

        def create(*args: Any, **kwargs: Any) -> Any:
            captured["created"] = real_create(*args, **kwargs)
            return captured["created"]

        def confirm(*args: Any, **kwargs: Any) -> Any:
            captured["confirmed"] = real_confirm(*args, **kwargs)
            return captured["confirmed"]
        service.create_payment, service.confirm_payment = create, confirm
        self.last_state = 0
        self.pay()
        if self.last_state != 5:  # PAYMENT_STATE_SUCCEEDED
            raise RuntimeError(f"the captured payment ended in state {self.last_state}")
        self.created, self.confirmed = captured["created"], captured["confirmed"]

    def stub_service(self) -> None:
        created, confirmed = self.created, self.confirmed
        service = self.trade.service
        service.create_payment = lambda merchant, draft, request_id: created
        service.confirm_payment = lambda *args, **kwargs: confirmed

    def pay(self) -> None:
        self.serial += 1
        create, confirm = _requests(self.parent, self.prefix, self.serial, approved_card(10 ** 11 + self.serial))
        h = self.create_handler
        created = h.unary_unary(h.request_deserializer(create), StandInContext(self.metadata))
        h.response_serializer(created)
        h = self.confirm_handler
        confirmed = h.unary_unary(h.request_deserializer(confirm(created.payment.name)),
                                  StandInContext(self.metadata))
        h.response_serializer(confirmed)
        self.last_state = confirmed.payment.state


def run(harness: Harness, payments: int, mode: str, cprofile: int) -> float:
    if mode == "requests":
        created, confirmed = harness.created, harness.confirmed

        def one() -> None:
            harness.serial += 1
            _requests(harness.parent, harness.prefix, harness.serial, approved_card(10 ** 11 + harness.serial))
            assert created is not None and confirmed is not None
    else:
        one = harness.pay
    for _ in range(min(500, payments)):  # warm: caches, plans
        one()
    profiler = cProfile.Profile(time.thread_time) if cprofile else None
    begin = time.process_time()
    if profiler:
        profiler.enable()
    call = operator.call
    for _ in range(payments):
        call(one)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - begin
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(cprofile)
    return cpu


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m payhub.bench.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payments", type=int, default=20_000)
    p.add_argument("--mode", choices=["layer", "requests"], default="layer")
    p.add_argument("--cprofile", type=int, default=0, metavar="N")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        harness = Harness(Path(tmp))
        harness.stub_service()
        cpu = run(harness, args.payments, args.mode, args.cprofile)
    print(f"{args.mode:<8} n={args.payments}  process CPU per payment {1000 * cpu / args.payments:.4f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
