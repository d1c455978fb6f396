"""DE 39 response codes (ISO 8583:1987, two characters) and what payhub makes of them.

Sources: shared/reference/channel-protocols.md §4.3 (the code list), Visa's `N7` (CVV2 mismatch).
The original code is always kept in ChannelResult.channel_code; this table only normalizes it.
"""

from __future__ import annotations

from dataclasses import dataclass

APPROVED = frozenset({"00", "08", "11"})  # approved; honour with identification; approved (VIP)
# The switch itself timed out on the issuer: the transaction may have been approved further down,
# so it is treated like no answer at all (UNKNOWN, reversed).
LATE = frozenset({"68"})


@dataclass(frozen=True)
class Decline:
    code: str                # normalized failure code
    message: str
    retryable_elsewhere: bool = False  # the issuer/switch was unavailable: another channel may work


_DECLINES: dict[str, Decline] = {
    "01": Decline("call_issuer", "refer to card issuer"),
    "02": Decline("call_issuer", "refer to card issuer, special condition"),
    "03": Decline("invalid_merchant", "invalid merchant"),
    "04": Decline("pick_up_card", "pick up card"),
    "05": Decline("do_not_honor", "do not honour"),
    "06": Decline("processing_error", "error", retryable_elsewhere=True),
    "07": Decline("pick_up_card", "pick up card, special condition"),
    "12": Decline("invalid_transaction", "invalid transaction"),
    "13": Decline("invalid_amount", "invalid amount"),
    "14": Decline("invalid_card", "invalid card number"),
    "15": Decline("invalid_card", "no such issuer"),
    "19": Decline("try_again", "re-enter transaction", retryable_elsewhere=True),
    "25": Decline("transaction_not_found", "unable to locate record"),
    "30": Decline("format_error", "format error"),
    "41": Decline("lost_card", "lost card"),
    "43": Decline("stolen_card", "stolen card"),
    "51": Decline("insufficient_funds", "insufficient funds"),
    "54": Decline("expired_card", "expired card"),
    "55": Decline("incorrect_pin", "incorrect PIN"),
    "57": Decline("transaction_not_permitted", "transaction not permitted to cardholder"),
    "58": Decline("transaction_not_permitted", "transaction not permitted at terminal"),
    "59": Decline("suspected_fraud", "suspected fraud"),
    "61": Decline("exceeds_amount_limit", "exceeds withdrawal amount limit"),
    "62": Decline("restricted_card", "restricted card"),
    "63": Decline("security_violation", "security violation"),
    "65": Decline("exceeds_frequency_limit", "exceeds withdrawal frequency limit"),
    "75": Decline("pin_tries_exceeded", "allowable number of PIN tries exceeded"),
    "91": Decline("issuer_unavailable", "issuer or switch inoperative", retryable_elsewhere=True),
    "92": Decline("issuer_unavailable", "financial institution cannot be found for routing",
                  retryable_elsewhere=True),
    "94": Decline("duplicate_transaction", "duplicate transmission"),
    "96": Decline("system_malfunction", "system malfunction", retryable_elsewhere=True),
    "N7": Decline("invalid_cvc", "CVV2 failure"),
}


def decline(code: str) -> Decline:
    """The normalized decline for a non-approving code; unknown codes are a generic `card_declined`."""
    return _DECLINES.get(code) or Decline("card_declined", f"declined (response code {code or 'missing'})")
