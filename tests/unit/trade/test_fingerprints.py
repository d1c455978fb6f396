"""The hot requests' fingerprints are spelt by hand (payhub.trade.payments.draft_fingerprint,
payhub.trade.confirm.confirm_fingerprint): they must be the generic request_fingerprint's, byte for
byte, or a retry would not match the response stored for it (REQUEST_ID_REUSED instead)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.trade.base import request_fingerprint
from payhub.trade.confirm import MethodInput, confirm_fingerprint
from payhub.trade.domain import Customer, Split
from payhub.trade.payments import PaymentDraft, draft_fingerprint

# Any code point: non-ASCII, controls, quotes, lone surrogates.
texts = st.text(st.characters(exclude_categories=()), max_size=12)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
string_maps = st.dictionaries(texts, texts, max_size=3)
moments = st.none() | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])) | st.datetimes()
customers = st.builds(Customer, id=texts, ip=texts, device_id=texts, email=texts, phone=texts)
splits = st.builds(Split, receiver=texts, amount_minor=ints, ratio_basis_points=ints, description=texts)
drafts = st.builds(PaymentDraft, merchant_order_no=texts, currency=texts, amount_minor=ints, subject=texts,
                   description=texts, capture_method=texts, installment_count=ints, installment_fee_bearer=texts,
                   expire_time=moments, metadata=string_maps, customer=customers,
                   splits=st.lists(splits, max_size=2).map(tuple) | st.lists(splits, max_size=2))
methods = st.builds(MethodInput, type=texts, client_type=texts, card_number=texts, exp_month=ints, exp_year=ints,
                    cvc=texts, card_token=texts, channel_input=string_maps)


@settings(max_examples=300, deadline=None)
@given(drafts)
def test_a_drafts_fingerprint_is_the_generic_one(draft: PaymentDraft) -> None:
    assert draft_fingerprint(draft) == request_fingerprint(draft)


@settings(max_examples=300, deadline=None)
@given(texts, methods, texts, texts)
def test_a_confirmations_fingerprint_is_the_generic_one(payment_id: str, method: MethodInput, card_fingerprint: str,
                                                        preferred_channel: str) -> None:
    safe = {**vars(method), "card_number": card_fingerprint, "cvc": ""}
    assert (confirm_fingerprint(payment_id, method, card_fingerprint, preferred_channel)
            == request_fingerprint([payment_id, safe, preferred_channel]))


def test_values_not_spelt_by_hand_take_the_generic_encoding() -> None:
    class Amount(int):
        pass

    odd: list[Any] = [
        PaymentDraft("o", "CNY", True, "s"),  # type: ignore[arg-type]  # a bool is JSON's true
        PaymentDraft("o", "CNY", Amount(5), "s", metadata={"k": 1}),  # type: ignore[dict-item]
        PaymentDraft("o", "CNY", 5, "s", expire_time=datetime(2030, 1, 1).date()),  # type: ignore[arg-type]
        PaymentDraft("o", "CNY", 5, "s", splits=({"receiver": "r"},)),  # type: ignore[arg-type]
    ]
    for draft in odd:
        assert draft_fingerprint(draft) == request_fingerprint(draft)
    method = MethodInput("CARD", "PC", exp_month=False, channel_input={"k": 2})  # type: ignore[arg-type,dict-item]
    safe = {**vars(method), "card_number": "f", "cvc": ""}
    assert confirm_fingerprint("pay_1", method, "f", "") == request_fingerprint(["pay_1", safe, ""])
