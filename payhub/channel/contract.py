"""What an adapter ships so the shared contract-test suite (tests/contract) can run over it.

Every adapter package provides a module `contract_kit` next to its adapter module, with
`build_kit(adapter, env) -> ContractKit`. The kit knows how to make the channel (or its local
simulator) produce each scenario the suite checks, and how to stand in for the consumer. A kit
answers None for a scenario its channel cannot produce; the suite then skips that check.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from typing import Protocol, cast

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.types import PaymentInstruction


class PaymentScenario(StrEnum):
    SUCCEEDS = "SUCCEEDS"                          # pay answers SUCCEEDED at once
    DECLINED = "DECLINED"                          # pay answers FAILED, not retryable elsewhere
    UNKNOWN_THEN_SUCCEEDS = "UNKNOWN_THEN_SUCCEEDS"  # pay answers UNKNOWN; a query later SUCCEEDED
    AWAITS_CONSUMER = "AWAITS_CONSUMER"            # pay answers REQUIRES_ACTION or PENDING: unpaid for now


class ContractKit(Protocol):
    def credentials(self, merchant_id: str) -> ChannelCredentials: ...

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        """An instruction that makes the channel behave as `scenario` says, or None."""
        ...

    def consumer_pays(self, attempt_id: str) -> None:
        """The consumer completes an AWAITS_CONSUMER payment (scans and pays, enters the code)."""
        ...

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        """A genuine notification the channel would send about the attempt (or refund), or None."""
        ...

    def statement_day(self) -> date:
        """The channel's business day of a payment made now (in the channel's own time zone)."""
        ...

    def next_day(self) -> bool:
        """Move the channel (its simulator's clock) to its next business day, late enough that the
        previous day's statement is ready. False when the channel's clock cannot be moved: the suite
        then checks only that today's statement lists today's payment."""
        ...

    def close(self) -> None:
        """Release what the kit started (simulators)."""
        ...


def statement_day(kit: ContractKit) -> date:
    """kit.statement_day(), or payhub's date for a kit written before it existed."""
    from payhub.kernel import clock
    day = getattr(kit, "statement_day", None)
    return day() if day is not None else clock.now().date()


def next_day(kit: ContractKit) -> bool:
    """kit.next_day(), or False for a kit written before it existed."""
    move = getattr(kit, "next_day", None)
    return bool(move()) if move is not None else False


def load_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> ContractKit:
    package = type(adapter).__module__.rpartition(".")[0]
    module = importlib.import_module(f"{package}.contract_kit")
    build = cast(Callable[[ChannelAdapter, AdapterEnvironment], ContractKit], module.build_kit)
    return build(adapter, env)
