"""The wallet channel: payments from the customer's payhub e-wallet (stored value on the ledger)."""
