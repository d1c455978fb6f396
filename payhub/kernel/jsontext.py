"""JSON text payhub writes and reads back itself: event payloads, stored idempotent responses, JSON
columns, and the JSON parameters of the consumers' statements (orjson: the stdlib encoder was a tenth
of a payment server's GIL time).

`dumps` is compact with sorted keys. What it writes decodes to the same document as
`json.dumps(value, separators=(",", ":"), sort_keys=True)` did, which readers of rows written by
earlier versions rely on; the text itself differs: non-ASCII characters are written as UTF-8 rather
than \\uXXXX escapes. Datetimes are written natively, as `datetime.isoformat()` writes them (any UTC
offset in whole minutes: every zone's since 1901). Not for hashing: request fingerprints and page
token filters are compared with digests stored by earlier versions, so they stay on the stdlib's
byte-exact output (payhub.kernel.idempotency, payhub.trade.base.request_fingerprint).

Refused (TypeError), where the stdlib wrote something: dict keys other than str, ints beyond 64 bits,
strings with lone surrogates (no database accepts those either). NaN and infinities are written as
null (the stdlib wrote NaN, which is not JSON). `loads` reads integers beyond 64 bits as floats:
amounts are int64.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

_SORTED = orjson.OPT_SORT_KEYS


def dumps(value: Any) -> str:
    """Compact JSON text with sorted keys."""
    return orjson.dumps(value, option=_SORTED).decode()


def dumps_bytes(value: Any) -> bytes:
    """`dumps`' text as UTF-8 bytes, as orjson makes it (a statement parameter sent as psycopg's Json or
    Jsonb with this as its dumps: no str decoded only to be encoded again)."""
    return orjson.dumps(value, option=_SORTED)


def param_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes in the order the value's dicts were built (no key sorting: a third of
    orjson's work on row dicts): for JSON statement parameters that PostgreSQL reads by key
    (json_populate_recordset and the like), never for text that is stored or compared."""
    return orjson.dumps(value)


# The document a str or UTF-8 bytes hold (orjson's own function: no call of ours in between).
loads = orjson.loads


def isoformat(moment: datetime) -> str:
    """`moment.isoformat()`. A UTC moment (every moment payhub makes) is written by orjson, the same text:
    CPython's isoformat goes through printf, about 8 k instructions each, 11 times per payment."""
    if type(moment) is datetime and moment.tzinfo is UTC:
        return orjson.dumps(moment)[1:-1].decode()
    return moment.isoformat()
