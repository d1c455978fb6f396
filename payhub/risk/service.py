"""The risk service's use cases: one class over the use-case modules (engine: EvaluateTransaction;
admin: rules, block list, events; holds: challenges, reviews, releasing counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.risk.engine import ChallengeSender, RiskSettings
from payhub.risk.holds import RiskHolds


class RiskService(RiskHolds):
    def __init__(self, db: Database, keyring: KeyRing, merchants: Callable[[], Any],
                 settings: RiskSettings | None = None, sender: ChallengeSender | None = None) -> None:
        super().__init__(db, keyring, settings or RiskSettings(), sender)
        self.merchants = merchants
