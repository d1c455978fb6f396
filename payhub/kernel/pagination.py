"""AIP-158 pagination: page_size with a default and a cap, opaque page tokens.

A page token is the sort key of the last row returned, base64url JSON. Tokens carry a filter
fingerprint so a token cannot be replayed against a different query.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from payhub.kernel.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class PageRequest:
    size: int
    after: Any  # the last sort key of the previous page, or None for the first page


def _fingerprint(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_page(page_size: int, page_token: str, filters: Any = None) -> PageRequest:
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return PageRequest(size, None)
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        after, fp = data["a"], data["f"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.field("page_token", "is not a token this API returned") from exc
    if fp != _fingerprint(filters):
        raise InvalidArgument.field("page_token", "belongs to a request with other filters")
    return PageRequest(size, after)


def next_token(rows: list[Any], page: PageRequest, sort_key: Any, filters: Any = None) -> str:
    """Call with up to page.size + 1 rows fetched; returns the token if another page exists."""
    if len(rows) <= page.size:
        return ""
    last = rows[page.size - 1]
    payload = {"a": sort_key(last), "f": _fingerprint(filters)}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
