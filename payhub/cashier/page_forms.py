"""The hosted page's form posts: reading them (url-encoded bodies, bounded) and turning what the
service refused into a notice code for the page. Card fields live only in memory here: they are
never logged, put in a URL or echoed back into the page."""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qsl

from payhub.cashier.domain import CardEntry, Consumer, Submission
from payhub.kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PayhubError,
)

MAX_FORM_BYTES = 16 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEPARATORS = re.compile(r"[\s-]+")


def parse_form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the first value of each field); {} when too big or
    not UTF-8."""
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    form: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, max_num_fields=32):
        form.setdefault(name, value)
    return form


def request_id(form: dict[str, str]) -> str:
    """The form's idempotency key (a double-submitted form acts once); a fresh one when malformed."""
    value = form.get("request_id", "")
    return value if _REQUEST_ID.match(value) else secrets.token_urlsafe(16)


def _number(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 4 else 0


def card_entry(form: dict[str, str]) -> CardEntry:
    """The typed card, spaces and dashes taken out of the number; the service validates the rest."""
    return CardEntry(number=_SEPARATORS.sub("", form.get("card_number", "")),
                     expiry_month=_number(form.get("expiry_month", "")),
                     expiry_year=_number(form.get("expiry_year", "")),
                     security_code=form.get("security_code", "").strip(),
                     holder_name=form.get("holder_name", "").strip()[:64])


def submission(form: dict[str, str], consumer: Consumer) -> Submission:
    method = form.get("payment_method", "")
    return Submission(method=method, card=card_entry(form) if method == "CARD" else None, consumer=consumer)


_FIELD_NOTICES = (("card.number", "invalid_card_number"), ("card.expiry", "invalid_expiry"),
                  ("card.security_code", "invalid_cvc"))


def notice_for(error: PayhubError) -> str:
    """The page's notice code for a refused post ("" when the page itself shows why, e.g. the session
    has just succeeded); raises NotFound again (the caller answers 404)."""
    if isinstance(error, NotFound):
        raise error
    if isinstance(error, InvalidArgument):
        fields = [v.field for v in error.violations]
        for prefix, notice in _FIELD_NOTICES:
            if any(f.startswith(prefix) for f in fields):
                return notice
        return "invalid_input"
    if isinstance(error, FailedPrecondition):
        state = error.metadata.get("state", "")
        if state == "EXPIRED":
            return "expired"
        if state in ("SUCCEEDED", "FAILED"):
            return ""
        return "method_unavailable" if error.reason == "METHOD_NOT_OFFERED" else "not_now"
    if isinstance(error, AlreadyExists):
        return ""  # the same form was posted twice with other input; the page shows the current state
    return "busy" if error.reason == "CONCURRENT_MODIFICATION" else "unavailable"
