"""Authorization rows for the ledger, its summary and chain check, policies, baselines and the
admins' outbox view. Auditors read; only admins write (any POST by an auditor is 403)."""

from __future__ import annotations

from tests.authz.rules import Rule

READERS = frozenset({"auditor", "admin"})
ADMIN = frozenset({"admin"})
BUYERS = frozenset({"buyer_a", "buyer_b"})

# Exact decimals are JSON strings (a JSON number is refused with 422).
POLICY_BODY = {
    "effective_from": "2099-01-01",
    "province_prefix": "44",
    "max_distance_km": "200",
    "rate": "0.01",
    "annual_cap": "2000000.00",
}
BASELINE_BODY = {"oem_org_id": "{oem_a}", "year": 2020, "amount": "150000.00"}

RULES = [
    Rule("GET", "/api/v1/ledger", READERS),
    Rule("GET", "/api/v1/ledger", READERS, query="format=csv&year=2026"),
    Rule("GET", "/api/v1/ledger", READERS, query="oem=1&near_shore=true&format=json"),
    # Buyers read their own organization's row (the use case scopes it).
    Rule("GET", "/api/v1/ledger/summary", READERS | BUYERS, query="year=2026"),
    Rule("GET", "/api/v1/ledger/position", BUYERS, query="year=2026"),
    Rule("GET", "/api/v1/ledger/verify", READERS),
    Rule("GET", "/api/v1/policies", READERS),
    Rule("POST", "/api/v1/policies", ADMIN, body=POLICY_BODY),
    Rule("GET", "/api/v1/baselines", READERS),
    Rule("POST", "/api/v1/baselines", ADMIN, body=BASELINE_BODY),
    Rule("GET", "/api/v1/admin/outbox", ADMIN),
]
