"""How other services use the channel router (in-process or over gRPC).

The router owns routing and the adapters; callers hand it instructions and get honest results.
"""

from __future__ import annotations

from typing import Protocol

from payhub.channel.types import ChannelResult, PaymentInstruction


class ChannelClient(Protocol):
    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        """Route the payment to a channel and try it. Never fails over after UNKNOWN."""
        ...

    def query(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult: ...

    def capture(self, channel: str, merchant_id: str, attempt_id: str, amount_minor: int,
                currency: str) -> ChannelResult: ...

    def void(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult: ...

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        """Close an unpaid attempt at the channel. SUCCEEDED means closed; FAILED with
        failure_code "already_paid" means the consumer paid first."""
        ...

    def refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
               currency: str) -> ChannelResult: ...

    def query_refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> ChannelResult: ...
