"""The e-wallet (电子钱包): CreateWallet, GetWallet, ListWallets, TopUpWallet, and the wallet channel's
money movements (charge, refund), which the `wallet` channel adapter reaches through the settlement
client.

A wallet is a CUSTOMER_WALLET ledger account (never negative). A charge inserts its row in
wallet_charges and posts WALLET_PAYMENT (Dr wallet / Cr clearing[wallet]) in one transaction; the
account UPDATE carries `balance + delta >= 0`, so of concurrent charges exactly those the balance
covers commit (PostgreSQL re-checks the condition after the row lock is released). The trade payment
itself is posted later by the poster (Dr clearing[wallet] / Cr merchant pending), which brings the
wallet channel's clearing back to zero.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from payhub.kernel import clock, idempotency
from payhub.kernel.db import insert_ignore, is_unique_violation
from payhub.kernel.errors import AlreadyExists, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.money import CURRENCY_EXPONENTS, validate_money
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement import repository as repo
from payhub.settlement.base import SettlementBase, not_found, parse_name
from payhub.settlement.domain import JournalDraft, JournalKind, clearing, day_start, transfer, wallet_account
from payhub.settlement.posting import TOP_UP_METADATA_KEY
from payhub.settlement.repository import InsufficientFunds
from payhub.settlement.tables import ledger_accounts, wallet_charges, wallet_top_ups, wallets

WALLET_CHANNEL = "wallet"


@dataclass(frozen=True)
class Wallet:
    id: str
    merchant_id: str
    customer_id: str
    currency: str
    balance: int
    account_id: str
    create_time: datetime
    update_time: datetime

    @property
    def name(self) -> str:
        return f"merchants/{self.merchant_id}/wallets/{self.id}"


@dataclass(frozen=True)
class WalletResult:
    """A wallet channel operation's answer: SUCCEEDED or FAILED (with a normalized code)."""

    succeeded: bool
    amount_minor: int
    currency: str
    reference: str = ""
    failure_code: str = ""
    failure_message: str = ""


_SELECT_WALLET = select(wallets, ledger_accounts.c.balance, ledger_accounts.c.update_time.label("balance_time")) \
    .join(ledger_accounts, ledger_accounts.c.id == wallets.c.account_id)


def _wallet(row: Any) -> Wallet:
    return Wallet(row.id, row.merchant_id, row.customer_id, row.currency, row.balance, row.account_id,
                  row.create_time, row.balance_time)


class WalletService(SettlementBase):
    def create_wallet(self, merchant_id: str, customer_id: str, currency: str, request_id: str) -> Wallet:
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if not 1 <= len(customer_id) <= 64:
            v.add("wallet.customer_id", "is required, 1-64 characters")
        if currency not in CURRENCY_EXPONENTS:
            v.add("wallet.currency_code", f"unsupported currency {currency!r}; use an ISO 4217 code such as CNY")
        v.raise_if_any()
        self._merchants().get_merchant(merchant_id)
        scope = f"settlement.CreateWallet:{merchant_id}"
        fp = idempotency.fingerprint(f"{customer_id}|{currency}".encode())
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        if stored is not None:
            return self.get_wallet(f"merchants/{merchant_id}/wallets/{stored.decode()}")
        now, wallet_id = clock.now(), new_id("wal")
        try:
            with self.db.begin() as conn:
                ref = wallet_account(merchant_id, wallet_id, currency)
                account = repo.open_accounts(conn, [ref], now)[ref.key]
                conn.execute(wallets.insert().values(id=wallet_id, merchant_id=merchant_id, customer_id=customer_id,
                                                     currency=currency, account_id=account.id, create_time=now))
                idempotency.save(conn, scope, request_id, fp, wallet_id.encode())
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            existing = self._find(merchant_id, customer_id, currency)
            if existing is None:  # the same request_id raced: answer the winner
                with self.db.read() as conn:
                    stored = idempotency.check(conn, scope, request_id, fp)
                if stored is None:
                    raise
                return self.get_wallet(f"merchants/{merchant_id}/wallets/{stored.decode()}")
            raise AlreadyExists(f"customer {customer_id!r} already has {existing.name} in {currency}",
                                reason="WALLET_EXISTS", metadata={"wallet": existing.name}) from exc
        return self.get_wallet(f"merchants/{merchant_id}/wallets/{wallet_id}")

    def _find(self, merchant_id: str, customer_id: str, currency: str) -> Wallet | None:
        with self.db.read() as conn:
            row = conn.execute(_SELECT_WALLET.where(wallets.c.merchant_id == merchant_id,
                                                    wallets.c.customer_id == customer_id,
                                                    wallets.c.currency == currency)).first()
        return None if row is None else _wallet(row)

    def get_wallet(self, name: str, field: str = "name") -> Wallet:
        merchant_id, wallet_id = parse_name(name, field, "merchants", "wallets")
        self.scope(merchant_id)
        with self.db.read() as conn:
            row = conn.execute(_SELECT_WALLET.where(wallets.c.id == wallet_id)).first()
        if row is None or row.merchant_id != merchant_id:
            raise not_found(name)
        return _wallet(row)

    def list_wallets(self, parent: str, page_size: int, page_token: str, customer_id: str) -> tuple[list[Wallet], str]:
        (merchant_id,) = parse_name(parent, "parent", "merchants")
        self.scope(merchant_id)
        filters = [parent, customer_id]
        page = parse_page(page_size, page_token, filters)
        query = _SELECT_WALLET.where(wallets.c.merchant_id == merchant_id)
        if customer_id:
            query = query.where(wallets.c.customer_id == customer_id)
        if page.after is not None:
            query = query.where(wallets.c.id > page.after)
        with self.db.read() as conn:
            rows = [_wallet(r) for r in conn.execute(query.order_by(wallets.c.id).limit(page.size + 1))]
        return rows[:page.size], next_token(rows, page, lambda w: w.id, filters)

    def top_up_wallet(self, wallet_name: str, amount_minor: int, currency: str, request_id: str) -> tuple[str, Wallet]:
        """A trade payment for the wallet's merchant whose success credits the wallet (see posting)."""
        wallet = self.get_wallet(wallet_name, "wallet")
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_money(v, "amount", currency, amount_minor)
        v.raise_if_any()
        if currency != wallet.currency:
            raise InvalidArgument.field("amount.currency_code", f"must be the wallet's currency {wallet.currency}")
        digest = hashlib.sha256(f"{wallet.merchant_id}|{request_id}".encode()).hexdigest()[:26]
        top_up_id = f"wtu_{digest}"
        payment = self._trade().create_payment(
            wallet.merchant_id, merchant_order_no=top_up_id, currency=currency, amount_minor=amount_minor,
            subject="Wallet top-up", metadata={TOP_UP_METADATA_KEY: top_up_id, "payhub_wallet": wallet.id},
            customer_id=wallet.customer_id, request_id=top_up_id)
        with self.db.begin() as conn:
            insert_ignore(conn, wallet_top_ups, {"id": top_up_id, "wallet_id": wallet.id,
                                                 "merchant_id": wallet.merchant_id, "payment_id": payment.id,
                                                 "currency": currency, "amount_minor": amount_minor,
                                                 "create_time": clock.now()})
        return payment.name, wallet

    # -- the wallet channel's operations (through the settlement client) ----------------------------
    def wallet_charge(self, merchant_id: str, customer_id: str, payment_id: str, attempt_id: str,
                      amount_minor: int, currency: str) -> WalletResult:
        now = clock.now()
        with self.db.read() as conn:
            done = conn.execute(select(wallet_charges).where(wallet_charges.c.id == attempt_id)).first()
            is_top_up = conn.execute(select(wallet_top_ups.c.id)
                                     .where(wallet_top_ups.c.payment_id == payment_id)).first() is not None
        if done is not None:
            return self._replayed(done, merchant_id, amount_minor, currency)
        if is_top_up:
            return WalletResult(False, amount_minor, currency, failure_code="method_not_allowed",
                                failure_message="a wallet top-up cannot be paid with the wallet")
        wallet = self._find(merchant_id, customer_id, currency) if customer_id else None
        if wallet is None:
            return WalletResult(False, amount_minor, currency, failure_code="wallet_not_found",
                                failure_message="the payment's customer has no wallet in this currency")
        try:
            with self.db.begin() as conn:
                journal_id = new_id("jn")
                if not insert_ignore(conn, wallet_charges, {
                        "id": attempt_id, "kind": "charge", "attempt_id": attempt_id, "wallet_id": wallet.id,
                        "merchant_id": merchant_id, "currency": currency, "amount_minor": amount_minor,
                        "journal_id": journal_id, "create_time": now}):
                    raise _Replay()
                lines = transfer(wallet_account(merchant_id, wallet.id, currency), clearing(WALLET_CHANNEL, currency),
                                 amount_minor)
                repo.post_journal(conn, JournalDraft(
                    JournalKind.WALLET_PAYMENT, f"merchants/{merchant_id}/payments/{payment_id}",
                    f"wallet-charge:{attempt_id}", "paid with the wallet", tuple(lines), merchant_id, now),
                    now, journal_id)
        except InsufficientFunds as exc:
            return WalletResult(False, amount_minor, currency, failure_code="insufficient_funds",
                                failure_message=f"the wallet holds {exc.balance}")
        except _Replay:
            return self.wallet_query(merchant_id, attempt_id, amount_minor, currency)
        return WalletResult(True, amount_minor, currency, reference=journal_id)

    @staticmethod
    def _replayed(row: Any, merchant_id: str, amount_minor: int, currency: str) -> WalletResult:
        if (row.merchant_id, row.amount_minor, row.currency) != (merchant_id, amount_minor, currency):
            return WalletResult(False, amount_minor, currency, failure_code="duplicate_attempt",
                                failure_message="this id was already used for another amount")
        return WalletResult(True, row.amount_minor, row.currency, reference=row.journal_id)

    def wallet_query(self, merchant_id: str, charge_id: str, amount_minor: int = 0,
                     currency: str = "") -> WalletResult:
        """A charge or refund by id. A charge commits atomically, so none recorded means none made."""
        with self.db.read() as conn:
            row = conn.execute(select(wallet_charges).where(wallet_charges.c.id == charge_id)).first()
        if row is None or row.merchant_id != merchant_id:
            return WalletResult(False, amount_minor, currency, failure_code="not_found",
                                failure_message="the wallet has no such payment or refund")
        return WalletResult(True, row.amount_minor, row.currency, reference=row.journal_id)

    def wallet_refund(self, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
                      currency: str) -> WalletResult:
        now = clock.now()
        with self.db.begin() as conn:
            done = conn.execute(select(wallet_charges).where(wallet_charges.c.id == refund_id)).first()
            if done is not None:
                return self._replayed(done, merchant_id, amount_minor, currency)
            charge = conn.execute(select(wallet_charges).where(wallet_charges.c.id == attempt_id,
                                                               wallet_charges.c.kind == "charge")).first()
            if charge is None or charge.merchant_id != merchant_id or charge.currency != currency:
                return WalletResult(False, amount_minor, currency, failure_code="payment_not_found",
                                    failure_message="the wallet has no such payment")
            refunded = conn.execute(select(func.coalesce(func.sum(wallet_charges.c.amount_minor), 0))
                                    .where(wallet_charges.c.attempt_id == attempt_id,
                                           wallet_charges.c.kind == "refund")).scalar_one()
            if refunded + amount_minor > charge.amount_minor:
                return WalletResult(False, amount_minor, currency, failure_code="refund_exceeds_payment",
                                    failure_message=f"{charge.amount_minor - refunded} left to refund")
            journal_id = new_id("jn")
            if not insert_ignore(conn, wallet_charges, {
                    "id": refund_id, "kind": "refund", "attempt_id": attempt_id, "wallet_id": charge.wallet_id,
                    "merchant_id": merchant_id, "currency": currency, "amount_minor": amount_minor,
                    "journal_id": journal_id, "create_time": now}):
                return WalletResult(False, amount_minor, currency, failure_code="concurrent_refund",
                                    failure_message="retry")
            lines = transfer(clearing(WALLET_CHANNEL, currency), wallet_account(merchant_id, charge.wallet_id,
                                                                                currency), amount_minor)
            repo.post_journal(conn, JournalDraft(
                JournalKind.WALLET_REFUND, f"merchants/{merchant_id}/wallets/{charge.wallet_id}",
                f"wallet-refund:{refund_id}", "refund to the wallet", tuple(lines), merchant_id, now), now, journal_id)
        return WalletResult(True, amount_minor, currency, reference=journal_id)


    def wallet_statement(self, merchant_id: str, day: date) -> bytes:
        """The wallet channel's statement of one day for one merchant, in payhub's canonical CSV
        (amounts in minor units): every charge and refund with its reference (the journal)."""
        start = day_start(day)
        with self.db.read() as conn:
            rows = conn.execute(select(wallet_charges).where(
                wallet_charges.c.merchant_id == merchant_id, wallet_charges.c.create_time >= start,
                wallet_charges.c.create_time < start + timedelta(days=1)).order_by(wallet_charges.c.create_time)).all()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["time", "kind", "attempt_id", "id", "currency", "amount_minor", "reference"])
        for r in rows:
            writer.writerow([r.create_time.isoformat(), r.kind, r.attempt_id, r.id, r.currency, r.amount_minor,
                             r.journal_id])
        return out.getvalue().encode()


class _Replay(Exception):
    pass
