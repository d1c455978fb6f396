"""The `payhub` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from payhub.identity.principal import Role
from payhub.kernel.config import load_settings, settings_table


def _serve(args: argparse.Namespace) -> int:
    from payhub.server.app import serve
    settings = load_settings(listen=args.listen, services=args.services, workers=args.workers)
    return serve(settings, migrate=args.migrate)


def _migrate(_args: argparse.Namespace) -> int:
    from payhub.kernel.migrate import upgrade
    settings = load_settings()
    upgrade(settings.effective_database_url)
    print(f"migrated {settings.effective_database_url.split('@')[-1]} to the latest schema")
    return 0


def _create_staff_token(args: argparse.Namespace) -> int:
    from payhub.server.context import AppContext
    ctx = AppContext.create(load_settings())
    issued = ctx.credentials.create_staff_token({Role(r) for r in args.role}, args.description)
    print(f"staff token {issued.id} with roles {', '.join(sorted(args.role))} (shown once):")
    print(issued.secret)
    return 0


def _demo_seed(_args: argparse.Namespace) -> int:
    from payhub.cli.demo import seed
    return seed(load_settings())


def _demo_checkout(args: argparse.Namespace) -> int:
    from payhub.cli.demo_checkout import checkout
    return checkout(load_settings(), amount_minor=args.amount, currency=args.currency, client_type=args.client_type,
                    locale=args.locale, return_url=args.return_url)


def _simulate(args: argparse.Namespace) -> int:
    from payhub.cli.simulate import run_simulator
    return run_simulator(args.channel, args.simulator_args)


def _ledger_audit(args: argparse.Namespace) -> int:
    from datetime import datetime

    from payhub.cli.ledger import audit
    start = datetime.fromisoformat(args.start) if args.start else None
    end = datetime.fromisoformat(args.end) if args.end else None
    return audit(load_settings(), start, end)


def _reconcile_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from payhub.cli.reconcile import import_file
    return import_file(load_settings(), args.channel, args.date, Path(args.file), args.merchant, args.account,
                       args.format)


def _config_doc(_args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="payhub", description="payhub payment middle-platform")
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the gRPC services and the HTTP endpoint (PAYHUB_HTTP_LISTEN)")
    serve.add_argument("--listen", help="HOST:PORT (default PAYHUB_LISTEN or 127.0.0.1:50051)")
    serve.add_argument("--services", help="comma-separated subset, e.g. trade,channel (default all)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--migrate", action="store_true", help="migrate the database before serving")
    serve.set_defaults(func=_serve)

    sub.add_parser("migrate", help="migrate the database to the latest schema").set_defaults(func=_migrate)

    staff = sub.add_parser("staff", help="staff credentials").add_subparsers(dest="staff_command", required=True)
    token = staff.add_parser("create-token", help="mint a staff bearer token")
    token.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    token.add_argument("--description", default="")
    token.set_defaults(func=_create_staff_token)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True)
    demo.add_parser("seed", help="create the demo merchant and print its credentials").set_defaults(func=_demo_seed)
    checkout = demo.add_parser("checkout", help="a demo payment and the URL of its hosted checkout page")
    checkout.add_argument("--amount", type=int, default=1234, help="minor units (default 1234: CNY 12.34)")
    checkout.add_argument("--currency", default="CNY")
    checkout.add_argument("--client-type", choices=("PC", "H5"), default="PC")
    checkout.add_argument("--locale", choices=("zh-CN", "en"), default="zh-CN")
    checkout.add_argument("--return-url", default="https://example.com/orders/{order}",
                          help="where the page sends the consumer after paying ({order}: the order number)")
    checkout.set_defaults(func=_demo_checkout)

    simulate = sub.add_parser(
        "simulate", help="run a channel's local protocol simulator (e.g. `payhub simulate alipay --help`)",
        description="Run the local simulator of a channel's server side. Every channel package that ships a "
                    "`simulator` module has one; the arguments after the channel go to it.")
    simulate.add_argument("channel", help="registered channel name, e.g. alipay, wechatpay")
    simulate.add_argument("simulator_args", nargs=argparse.REMAINDER, help="the simulator's own options")
    simulate.set_defaults(func=_simulate)

    ledger = sub.add_parser("ledger", help="the double-entry ledger").add_subparsers(dest="ledger_command",
                                                                                    required=True)
    ledger_audit = ledger.add_parser("audit", help="check every ledger invariant; exit 1 on any violation")
    ledger_audit.add_argument("--start", help="only payments/refunds that succeeded at or after (ISO 8601 with zone)")
    ledger_audit.add_argument("--end", help="only payments/refunds that succeeded before (ISO 8601 with zone)")
    ledger_audit.set_defaults(func=_ledger_audit)

    reconcile = sub.add_parser("reconcile", help="reconciliation with channel statements").add_subparsers(
        dest="reconcile_command", required=True)
    rec_import = reconcile.add_parser("import", help="import and reconcile a statement file (any size)")
    rec_import.add_argument("--channel", required=True, help="alipay, wechatpay, unionpay or sandbox")
    rec_import.add_argument("--date", required=True, help="the statement's business day, YYYY-MM-DD")
    rec_import.add_argument("--file", required=True, help="the file as the channel delivers it")
    rec_import.add_argument("--merchant", default="", help="the merchant id whose channel account it is")
    rec_import.add_argument("--account", default="", help="the channel account (default: the merchant id)")
    rec_import.add_argument("--format", default="", help="ALIPAY_TRADE_BILL, WECHATPAY_TRADE_BILL, UNIONPAY_FILE, "
                                                         "PAYHUB_CSV (default: the channel's own)")
    rec_import.set_defaults(func=_reconcile_import)

    sub.add_parser("config-doc", help="print the settings table").set_defaults(func=_config_doc)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
