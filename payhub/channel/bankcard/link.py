"""TCP to the card switch: one request, one response, honest about what a failure means.

A connection that was never made raises ChannelNotReached (the request certainly did not arrive).
Anything after the request left - no answer before the timeout, a dropped connection, an answer that
does not match the request - raises ExchangeLost: the switch may have acted on it, so the caller
must treat the outcome as unknown and reverse (reference §4.3). One connection per exchange keeps
matching trivial (the response carries the request's STAN, DE 11, and terminal, DE 41, and both are
checked anyway).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import iso8583

from payhub.channel.adapter import ChannelNotReached
from payhub.channel.bankcard import wire
from payhub.channel.bankcard.specs import Spec


class ExchangeLost(Exception):
    """The request was sent (or may have been) and no matching answer arrived."""


@dataclass(frozen=True)
class SwitchAddress:
    host: str
    port: int
    framing: str = wire.DEFAULT_FRAMING
    timeout_seconds: float = 10.0


def exchange(address: SwitchAddress, request: wire.Message, spec: Spec) -> wire.Message:
    payload = wire.frame(wire.encode(request, spec), address.framing)  # bad input fails before connecting
    try:
        sock = socket.create_connection((address.host, address.port), timeout=address.timeout_seconds)
    except OSError as exc:
        raise ChannelNotReached(f"bankcard: no connection to {address.host}:{address.port} "
                                f"({type(exc).__name__})") from exc
    with sock:
        try:
            sock.settimeout(address.timeout_seconds)
            sock.sendall(payload)
            answer = wire.decode(wire.read_frame(sock, address.framing), spec)
        except (OSError, wire.FramingError, iso8583.DecodeError) as exc:
            # socket.timeout and ConnectionClosed are OSErrors: after sendall began, it may have arrived.
            raise ExchangeLost(f"no answer from the switch ({type(exc).__name__})") from exc
    expected = (wire.response_mti(request["t"]), request.get("11"), request.get("41"))
    if (answer.get("t"), answer.get("11"), answer.get("41")) != expected:
        raise ExchangeLost(f"the switch answered {wire.describe(answer)} to {wire.describe(request)}")
    return answer
