"""The consumer's IP address as the hosted page sees it, for risk.

Without a configured header it is the TCP peer. Behind a reverse proxy the peer is the proxy, so an
installation names the header its proxy sets (`PAYHUB_CASHIER_CLIENT_IP_HEADER`, e.g.
`X-Forwarded-For`); only then is the header read, and only its last entry - the one the trusted proxy
itself appended (earlier entries come from the client and can be forged). Anything that is not an IP
address is dropped (risk then goes by the payment's own `customer.ip`).
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


def client_ip(request: Request, trusted_header: str = "") -> str:
    if trusted_header:
        values = request.headers.getlist(trusted_header)
        if values:  # the proxy's own entry is the last one of the last header line
            return _address(values[-1].rsplit(",", 1)[-1])
    peer = request.client
    return _address(peer.host) if peer else ""


def _address(text: str) -> str:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port" from some proxies
        text = text[1:text.index("]")]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""
