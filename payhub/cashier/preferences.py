"""GetCashierSettings / UpdateCashierSettings: a merchant's method order, hidden methods, look and
session defaults (defaults until first set)."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import Connection

from payhub.cashier import repository as repo
from payhub.cashier.domain import SETTINGS_FIELDS, CashierSettings, validate_settings
from payhub.cashier.sessions import CashierBase
from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import Violations


class Preferences(CashierBase):
    def get_settings(self, merchant_id: str) -> CashierSettings:
        current_principal().scope_merchant(merchant_id)
        self._merchants().get_merchant(merchant_id)  # NotFound for an unknown merchant
        with self.db.read() as conn:
            return repo.get_settings(conn, merchant_id)

    def update_settings(self, changes: CashierSettings, fields: list[str], request_id: str) -> CashierSettings:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if not fields:
            v.add("update_mask", f"is required: one or more of {', '.join(SETTINGS_FIELDS)}")
        unknown = [f for f in fields if f not in SETTINGS_FIELDS]
        if unknown:
            v.add("update_mask", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(SETTINGS_FIELDS)}")
        v.raise_if_any()
        validate_settings(v, changes, frozenset(fields), "cashier_settings")
        v.raise_if_any()
        merchant_id = changes.merchant_id
        principal = current_principal()
        principal.scope_merchant(merchant_id)
        self._merchants().get_merchant(merchant_id)
        data = {f: getattr(changes, f) for f in sorted(set(fields))}
        fp = idempotency.fingerprint(json.dumps([merchant_id, data], default=str).encode())

        def work(conn: Connection) -> bytes:
            current = repo.get_settings(conn, merchant_id)
            updated = replace(current, **data, update_time=clock.now())
            repo.save_settings(conn, updated)
            return b"ok"
        idempotency.run_once(self.db, f"cashier.UpdateCashierSettings:{principal.subject}", request_id, fp, work)
        with self.db.read() as conn:
            return repo.get_settings(conn, merchant_id)


