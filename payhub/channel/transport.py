"""HTTP to the channels: one pooled httpx client per adapter, honest about what a failure means.

An adapter sends with `ChannelHttp.send`. A connection that was never made (refused, DNS, connect
timeout) raises `ChannelNotReached`: the request certainly did not arrive, so the router may fail
over. Anything after the request may have left (read timeout, reset, 5xx) is the adapter's to
answer as UNKNOWN: the money may have moved. Timeouts come from the deployment's settings and never
exceed what is left of the deadline of the RPC that caused the request (payhub.kernel.deadline, set by
the server's call pipeline; `deadline` in seconds overrides it): a client that gives up does not
leave a request running for the channel's full timeout. Background jobs have no deadline.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from payhub.channel.adapter import ChannelNotReached
from payhub.kernel import deadline as call_deadline
from payhub.kernel.config import Settings
from payhub.kernel.logging import get_logger

log = get_logger("payhub.channel.transport")

DEFAULT_CONNECT_SECONDS = 3.0
DEFAULT_TOTAL_SECONDS = 10.0


class ChannelHttp:
    def __init__(self, channel: str, *, connect_seconds: float = DEFAULT_CONNECT_SECONDS,
                 total_seconds: float = DEFAULT_TOTAL_SECONDS, max_connections: int = 64) -> None:
        self.channel = channel
        self._connect = connect_seconds
        self._total = total_seconds
        self.client = httpx.Client(
            timeout=httpx.Timeout(total_seconds, connect=connect_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False, trust_env=False)

    @classmethod
    def from_settings(cls, channel: str, settings: Settings) -> ChannelHttp:
        """Timeouts from the deployment's settings (PAYHUB_CHANNEL_CONNECT_SECONDS, _TIMEOUT_SECONDS)."""
        return cls(channel, connect_seconds=settings.channel_connect_seconds,
                   total_seconds=settings.channel_timeout_seconds)

    def send(self, method: str, url: str, *, deadline: float | None = None, **kwargs: object) -> httpx.Response:
        """Send one request. Raises ChannelNotReached when no connection was made; other httpx errors
        (the request may have arrived) propagate for the adapter to answer UNKNOWN."""
        if deadline is None:
            deadline = call_deadline.remaining()
        total = self._total if deadline is None else max(0.05, min(self._total, deadline))
        timeout = httpx.Timeout(total, connect=min(self._connect, total))
        try:
            return self.client.request(method, url, timeout=timeout, **kwargs)  # type: ignore[arg-type]
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            reason = f"{self.channel}: no connection to {_origin(url)} ({type(exc).__name__})"
            raise ChannelNotReached(reason) from exc

    def close(self) -> None:
        self.client.close()


def is_loopback_http(url: str) -> bool:
    """A plain-http endpoint on loopback: a local simulator, never a real channel."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
