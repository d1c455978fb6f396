"""UnionPay respCode / origRespCode in payhub's normalized vocabulary (the adapter's decision).

From channel-protocols.md §3.4 (hyperbolaa/Unionpay README ranges, the official upacp demos): `00` and
`A6` are successes; `03`/`04`/`05` mean "accepted, result unknown: query later" and are never failures;
`01`-`09` are UnionPay system errors, `10`-`29` message-format errors (`11` signature, `12` duplicate),
`30`-`59` merchant-side checks (`34` no such transaction, `35` original missing or in the wrong state,
`36` mismatch with the original), `60`-`89` the cardholder or the issuer (`61` invalid account, `63`
account status, `73` expired card). The channel's own code always travels beside the normalized one.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhub.channel.unionpay.wire import IN_PROGRESS_CODES, SUCCESS_CODES

DUPLICATE = "12"
NOT_FOUND = "34"


@dataclass(frozen=True)
class Failure:
    code: str
    retryable_elsewhere: bool = False


_FAILURES: dict[str, Failure] = {
    "01": Failure("declined"),
    # `02` system not open / `06` system busy: refused before anything was processed.
    "02": Failure("channel_unavailable", retryable_elsewhere=True),
    "06": Failure("channel_unavailable", retryable_elsewhere=True),
    "11": Failure("channel_config_invalid", retryable_elsewhere=True),
    NOT_FOUND: Failure("transaction_not_found"),
    "35": Failure("invalid_state"),
    "36": Failure("invalid_amount"),
    "61": Failure("invalid_card"),
    "63": Failure("account_restricted"),
    "73": Failure("expired_card"),
}


def is_success(code: str) -> bool:
    return code in SUCCESS_CODES


def is_in_progress(code: str) -> bool:
    return code in IN_PROGRESS_CODES


def failure_for(code: str) -> Failure | None:
    """The normalized failure of a definitive refusal; None when the code proves nothing (in
    progress, UnionPay's other system codes, the reserved range, anything unrecognised)."""
    if code in _FAILURES:
        return _FAILURES[code]
    if len(code) != 2 or not code.isdigit():
        return None
    number = int(code)
    if 10 <= number <= 29:  # the request was malformed: nothing was processed
        return Failure("channel_config_invalid", retryable_elsewhere=True)
    if 30 <= number <= 59:
        return Failure("invalid_request")
    if 60 <= number <= 89:
        return Failure("declined")
    return None
