"""The ISO 8583 wire layer shared by the adapter and the switch simulator: message codec (pyiso8583
with a host profile's field specification), TCP framing, and field formats.

Framing is not part of ISO 8583 (reference §4.1): each message travels behind a length prefix whose
form the host chooses - `binary2` (2-byte big-endian, the default), `binary4` or `ascii4` (4 ASCII
digits). Messages are plain dicts as pyiso8583 uses them: "t" the MTI, "2".."128" the fields, all str.
Nothing here logs: a message holds a card number (DE 2) and CVV2 (DE 48), so callers log only
`describe(message)`.
"""

from __future__ import annotations

import socket
from datetime import datetime

import iso8583

from payhub.channel.bankcard.specs import Spec

Message = dict[str, str]
FRAMINGS = ("binary2", "binary4", "ascii4")
DEFAULT_FRAMING = "binary2"
MAX_MESSAGE = 9_999  # fits every framing's prefix

# Processing codes (DE 3): transaction type + from account + to account.
PURCHASE = "000000"
REFUND = "200000"
CVV2_TAG = "C2"  # DE 48 sub-element carrying CVV2 for card-not-present (never stored, never logged)


class FramingError(ValueError):
    pass


class ConnectionClosed(ConnectionError):
    """The peer closed the connection before a whole message arrived."""


def encode(message: Message, spec: Spec) -> bytes:
    data, _ = iso8583.encode(dict(message), spec)  # encode writes the bitmaps into its argument
    return bytes(data)


def decode(data: bytes, spec: Spec) -> Message:
    decoded, _ = iso8583.decode(data, spec)
    return {k: v for k, v in decoded.items() if k not in ("p", "1", "h")}


def frame(payload: bytes, framing: str) -> bytes:
    if len(payload) > MAX_MESSAGE:
        raise FramingError(f"message of {len(payload)} bytes is too long")
    if framing == "binary2":
        return len(payload).to_bytes(2, "big") + payload
    if framing == "binary4":
        return len(payload).to_bytes(4, "big") + payload
    if framing == "ascii4":
        return f"{len(payload):04d}".encode() + payload
    raise FramingError(f"unknown framing {framing!r}; one of {', '.join(FRAMINGS)}")


def read_frame(sock: socket.socket, framing: str) -> bytes:
    """One framed message from the socket (blocking, under the socket's timeout)."""
    if framing not in FRAMINGS:
        raise FramingError(f"unknown framing {framing!r}")
    prefix = _read_exactly(sock, 2 if framing == "binary2" else 4)
    if framing == "ascii4":
        if not prefix.isdigit():
            raise FramingError("length prefix is not 4 ASCII digits")
        length = int(prefix)
    else:
        length = int.from_bytes(prefix, "big")
    if length > MAX_MESSAGE:
        raise FramingError(f"announced length {length} is too long")
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionClosed("connection closed by the peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# -- field formats -------------------------------------------------------------------------------
def amount_field(amount_minor: int) -> str:
    """DE 4: n12, minor units, zero-padded."""
    if not 0 <= amount_minor < 10**12:
        raise ValueError("amount does not fit DE 4")
    return f"{amount_minor:012d}"


def transmission_time(moment: datetime) -> str:
    """DE 7: MMDDhhmmss in UTC (GMT)."""
    return moment.strftime("%m%d%H%M%S")


def expiry_field(exp_year: int, exp_month: int) -> str:
    """DE 14: YYMM."""
    return f"{exp_year % 100:02d}{exp_month:02d}"


def original_data(mti: str, stan: str, transmission: str, acquirer_id: str) -> str:
    """DE 90, n42: original MTI(4) + STAN(6) + DE 7(10) + acquirer id(11) + forwarding id(11)."""
    return f"{mti}{stan}{transmission}{acquirer_id[-11:]:0>11}{'':0>11}"


def parse_original_data(value: str) -> tuple[str, str, str, str]:
    """(MTI, STAN, DE 7, acquirer id without padding) of a DE 90."""
    return value[0:4], value[4:10], value[10:20], value[20:31].lstrip("0")


def cvv2_field(cvc: str) -> str:
    return f"{CVV2_TAG}{len(cvc):02d}{cvc}"


def parse_cvv2(value: str) -> str:
    if value.startswith(CVV2_TAG) and len(value) >= 4 and value[2:4].isdigit():
        return value[4:4 + int(value[2:4])]
    return ""


def response_mti(request_mti: str) -> str:
    """MTI digits are version, class, function, origin (reference §4.1): the response raises the
    function by one and comes from origin 0, so 0100 -> 0110 and a repeated advice 0421 -> 0430."""
    return f"{request_mti[:2]}{int(request_mti[2]) + 1}0"


def describe(message: Message) -> dict[str, str]:
    """What may be logged about a message: never DE 2, 14, 35, 45, 48, 52 or 55."""
    return {"mti": message.get("t", ""), "stan": message.get("11", ""), "rrn": message.get("37", ""),
            "response_code": message.get("39", ""), "processing_code": message.get("3", "")}


# ISO 4217 numeric codes (DE 49) of the currencies the channel accepts.
CURRENCY_NUMERIC = {"CNY": "156", "USD": "840", "EUR": "978", "HKD": "344", "JPY": "392", "GBP": "826"}
CURRENCY_ALPHA = {v: k for k, v in CURRENCY_NUMERIC.items()}
