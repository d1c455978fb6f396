"""`make bench`: payhub under load on PostgreSQL and SQLite, with same-run ceilings (see README)."""
