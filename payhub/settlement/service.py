"""The settlement center's use cases, one class over the use-case modules: posting (the ledger
poster), queries (balances, accounts, entries, journals), audit, settling (RunSettlement and its
job), payouts, batches (settlement reads), wallets, reconciliation (statements, discrepancies) and
profit split (splits, receivers; the poster executes carried instructions and posts returns)."""

from __future__ import annotations

from payhub.settlement.audit import LedgerAudit
from payhub.settlement.batches import BatchQueries
from payhub.settlement.posting import LedgerPoster
from payhub.settlement.queries import LedgerQueries
from payhub.settlement.reconciliation.importing import StatementImports
from payhub.settlement.reconciliation.resolution import DiscrepancyResolution
from payhub.settlement.settling import Settling
from payhub.settlement.splits import Splits
from payhub.settlement.wallets import WalletService


class SettlementService(LedgerPoster, LedgerQueries, LedgerAudit, Settling, BatchQueries, WalletService,
                        StatementImports, DiscrepancyResolution, Splits):
    """SettlementService: the double-entry ledger, fees, balances, settlement, payouts, the e-wallet."""
