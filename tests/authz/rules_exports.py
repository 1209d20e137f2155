"""Authorization rows for the auditors' spreadsheets: the ledger as XLSX (who reads the ledger)
and the summary as CSV or XLSX (who reads the summary: buyers get their own organization's)."""

from __future__ import annotations

from tests.authz.rules import Rule

READERS = frozenset({"auditor", "admin"})
BUYERS = frozenset({"buyer_a", "buyer_b"})

RULES = [
    Rule("GET", "/api/v1/ledger", READERS, query="format=xlsx&year=2026"),
    Rule("GET", "/api/v1/ledger/summary", READERS | BUYERS, query="year=2026&format=csv"),
    Rule("GET", "/api/v1/ledger/summary", READERS | BUYERS, query="year=2026&format=xlsx"),
]
