"""Reconciliation with the channels' statements (对账, issue 14).

parsing (each channel's statement format, streamed into StatementLine rows) -> staging (the lines in
`recon_lines`: COPY on PostgreSQL, batched INSERTs on SQLite) -> matching (set-based SQL against
payhub's own record of channel transactions, `recon_book`, kept from trade's events by book.py) ->
discrepancies (差错) -> resolution (ResolveDiscrepancy). job.py fetches each day's statements.
"""
