"""CreateSplitReceiver and ListSplitReceivers: a merchant's registered split receivers (partners,
individual sellers that are not payhub merchants), each with the bank account it is paid out to.
Only the account number's last four characters are kept (the payout channel needs no more)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from payhub.kernel import clock, idempotency
from payhub.kernel.db import is_unique_violation
from payhub.kernel.errors import AlreadyExists, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement.base import not_found, parse_name
from payhub.settlement.parties import RECEIVER_PREFIX, Parties, receiver_name
from payhub.settlement.split_tables import split_receivers
from payhub.settlement.tables import ledger_accounts


@dataclass(frozen=True)
class ReceiverInput:
    display_name: str
    external_id: str
    description: str
    account_name: str
    bank_name: str
    account_number: str


@dataclass(frozen=True)
class Receiver:
    id: str
    merchant_id: str
    display_name: str
    external_id: str
    description: str
    account_name: str
    bank_name: str
    account_last4: str
    ledger_accounts: list[str]
    create_time: datetime

    @property
    def name(self) -> str:
        return receiver_name(self.merchant_id, self.id)


class SplitReceivers(Parties):
    def create_split_receiver(self, parent: str, r: ReceiverInput, request_id: str) -> Receiver:
        (merchant_id,) = parse_name(parent, "parent", "merchants")
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        for field, value in (("display_name", r.display_name), ("settlement_account.account_name", r.account_name),
                             ("settlement_account.bank_name", r.bank_name),
                             ("settlement_account.account_number", r.account_number)):
            if not value.strip():
                v.add(f"split_receiver.{field}", "is required")
        v.raise_if_any()
        self._merchants().get_merchant(merchant_id)  # NotFound for an unknown merchant
        scope = f"settlement.CreateSplitReceiver:{merchant_id}"
        fp = idempotency.fingerprint(json.dumps([r.display_name, r.external_id, r.description, r.account_name,
                                                 r.bank_name, idempotency.fingerprint(r.account_number.encode())
                                                 ]).encode())

        def work(conn: Any) -> bytes:
            receiver_id = new_id(RECEIVER_PREFIX.rstrip("_"))
            conn.execute(split_receivers.insert().values(
                id=receiver_id, merchant_id=merchant_id, display_name=r.display_name, external_id=r.external_id or None,
                description=r.description, account_name=r.account_name, bank_name=r.bank_name,
                account_last4=r.account_number[-4:], create_time=clock.now()))
            return receiver_id.encode()

        try:
            receiver_id = idempotency.run_once(self.db, scope, request_id, fp, work).decode()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            raise AlreadyExists(f"a split receiver with external_id {r.external_id!r} exists",
                                reason="SPLIT_RECEIVER_EXISTS", metadata={"external_id": r.external_id}) from exc
        return self.get_split_receiver(merchant_id, receiver_id)

    def get_split_receiver(self, merchant_id: str, receiver_id: str) -> Receiver:
        with self.db.read() as conn:
            row = conn.execute(select(split_receivers).where(split_receivers.c.id == receiver_id)).first()
            if row is None or row.merchant_id != merchant_id:
                raise not_found(receiver_name(merchant_id, receiver_id))
            return _receiver(row, self._accounts_of(conn, [row]))

    def list_split_receivers(self, parent: str, page_size: int, page_token: str) -> tuple[list[Receiver], str]:
        (merchant_id,) = parse_name(parent, "parent", "merchants")
        self.scope(merchant_id)
        page = parse_page(page_size, page_token, [parent])
        query = select(split_receivers).where(split_receivers.c.merchant_id == merchant_id)
        if page.after is not None:
            query = query.where(split_receivers.c.id > page.after)
        with self.db.read() as conn:
            rows = list(conn.execute(query.order_by(split_receivers.c.id).limit(page.size + 1)))
            accounts = self._accounts_of(conn, rows[:page.size])
        if not rows and page.after is None:
            self._merchants().get_merchant(merchant_id)  # NotFound for an unknown merchant
        return [_receiver(r, accounts) for r in rows[:page.size]], next_token(rows, page, lambda r: r.id, [parent])

    @staticmethod
    def _accounts_of(conn: Any, rows: list[Any]) -> dict[str, list[str]]:
        owners = {receiver_name(r.merchant_id, r.id): r.id for r in rows}
        out: dict[str, list[str]] = {}
        if owners:
            for owner, account_id in conn.execute(select(ledger_accounts.c.owner, ledger_accounts.c.id)
                                                  .where(ledger_accounts.c.owner.in_(list(owners)))
                                                  .order_by(ledger_accounts.c.id)):
                out.setdefault(owners[owner], []).append(f"ledgerAccounts/{account_id}")
        return out


def _receiver(row: Any, accounts: dict[str, list[str]]) -> Receiver:
    return Receiver(row.id, row.merchant_id, row.display_name, row.external_id or "", row.description,
                    row.account_name, row.bank_name, row.account_last4, accounts.get(row.id, []), row.create_time)
