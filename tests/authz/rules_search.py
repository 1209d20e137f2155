"""Search routes: a demand's matches (its buyers, auditors, admins) and the supplier search."""

from __future__ import annotations

from tests.authz.rules import SIGNED_IN, Rule

RULES = [
    Rule(
        "GET",
        "/api/v1/demands/{demand_a}/matches",
        frozenset({"buyer_a", "auditor", "admin"}),
        jurisdiction_bound=True,  # demand A's plant is in Guangzhou
    ),
    Rule("GET", "/api/v1/suppliers/search", SIGNED_IN, query="q=brake&tier=1"),
]
