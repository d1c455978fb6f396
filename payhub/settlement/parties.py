"""Who settlement settles and pays out: merchants and registered split receivers ("parties").

A party is a merchant id, or a split receiver id (`srcv_...`). The settlement queue, batches and
payouts carry the party id where they carry a merchant id, so a receiver's split money is settled
(pending -> available) and paid out by the same run and payout machinery as a merchant's. A
receiver's ledger accounts are owned by `merchants/{m}/splitReceivers/{r}` (and scoped to the paying
merchant m); it settles on m's cycle and minimum payout, without a rolling reserve, to its own bank
account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.merchant.client import MerchantInfo
from payhub.settlement.base import SettlementBase, not_found, parse_merchant_or_all
from payhub.settlement.domain import AccountKind, AccountRef, merchant_account
from payhub.settlement.split_tables import split_receivers

RECEIVER_PREFIX = "srcv_"


def is_receiver(party_id: str) -> bool:
    return party_id.startswith(RECEIVER_PREFIX)


def receiver_name(merchant_id: str, receiver_id: str) -> str:
    return f"merchants/{merchant_id}/splitReceivers/{receiver_id}"


@dataclass(frozen=True)
class ReceiverPolicy:
    """The paying merchant's cycle and minimum payout; no rolling reserve for receivers."""

    cycle: Any
    n_days: int
    minimum_payout_currency: str
    minimum_payout_minor: int
    reserve_rate_bps: int = 0
    reserve_days: int = 0


class Parties(SettlementBase):
    def receiver_row(self, receiver_id: str) -> Any:
        """The receiver's row (immutable once registered, so cached per process); NotFound if none."""
        cache: dict[str, Any] = self.__dict__.setdefault("_receiver_rows", {})
        row = cache.get(receiver_id)
        if row is None:
            with self.db.read() as conn:
                row = conn.execute(select(split_receivers).where(split_receivers.c.id == receiver_id)).first()
            if row is None:
                raise not_found(f"splitReceivers/{receiver_id}")
            cache[receiver_id] = row
        return row

    def party_merchant(self, party_id: str) -> str:
        """The merchant a party's accounts are scoped to: itself, or a receiver's paying merchant."""
        return str(self.receiver_row(party_id).merchant_id) if is_receiver(party_id) else party_id

    def party_owner(self, party_id: str) -> str:
        if is_receiver(party_id):
            return receiver_name(self.party_merchant(party_id), party_id)
        return f"merchants/{party_id}"

    def party_account(self, kind: AccountKind, party_id: str, currency: str) -> AccountRef:
        if not is_receiver(party_id):
            return merchant_account(kind, party_id, currency)
        return AccountRef(kind, currency, owner=self.party_owner(party_id), merchant_id=self.party_merchant(party_id))

    def parse_party(self, name: str, field: str) -> str | None:
        """`merchants/{m}` -> m and `merchants/{m}/splitReceivers/{r}` -> r (NotFound unless the caller
        may see m and r is m's); `merchants/-` -> None (staff: everyone)."""
        pieces = name.split("/")
        if len(pieces) == 4 and pieces[0] == "merchants" and pieces[2] == "splitReceivers" and pieces[1] and pieces[3]:
            self.scope(pieces[1])
            try:
                owner = self.party_merchant(pieces[3]) if is_receiver(pieces[3]) else None
            except NotFound:
                owner = None
            if owner != pieces[1]:
                raise not_found(name)
            return pieces[3]
        return parse_merchant_or_all(name, field)

    def parse_party_resource(self, name: str, field: str, collection: str) -> tuple[str, str]:
        """`{party}/{collection}/{id}` -> (party id, id), the party as in `parse_party`."""
        owner, sep, rest = name.rpartition(f"/{collection}/")
        if not sep or not rest or "/" in rest or owner.endswith("/-"):
            raise InvalidArgument.field(field, f"must be merchants/{{merchant}}/{collection}/{{id}} (or under a "
                                        "split receiver)")
        party = self.parse_party(owner, field)
        assert party is not None
        return party, rest

    def party_policy(self, party_id: str) -> Any:
        if not is_receiver(party_id):
            return self._merchants().settlement_policy(party_id)
        p = self._merchants().settlement_policy(self.party_merchant(party_id))
        return ReceiverPolicy(p.cycle, p.n_days, p.minimum_payout_currency, p.minimum_payout_minor)

    def party_info(self, party_id: str) -> MerchantInfo:
        """What a payout needs: state and the masked bank account."""
        if not is_receiver(party_id):
            info: MerchantInfo = self._merchants().get_merchant(party_id)
            return info
        row = self.receiver_row(party_id)
        return MerchantInfo(party_id, "ACTIVE", row.display_name, "", settlement_bank=row.bank_name,
                            settlement_account_last4=row.account_last4)
