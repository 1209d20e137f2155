"""The supplier's demand feed, quote revisions and a quote's history.

The feed is every active supplier's own (supplier B's is empty: no capability). Only the quoting
supplier revises its quote (supplier B meets a 404); the history is for the demand's buyers and
the quoting supplier (buyer B and supplier B meet a 404, auditors and admins a 403).
"""

from __future__ import annotations

from tests.authz.rules import Rule

QUOTE = "/api/v1/quotes/{quote_a}"

RULES = [
    Rule("GET", "/api/v1/feed/demands", frozenset({"supplier_a", "supplier_b"})),
    Rule(
        "GET",
        "/api/v1/feed/demands",
        frozenset({"supplier_a", "supplier_b"}),
        query="q=brake&sort=distance_km&per_page=5",
    ),
    Rule("PATCH", QUOTE, frozenset({"supplier_a"}), body={"lead_time_days": 21}),
    Rule("GET", QUOTE + "/revisions", frozenset({"buyer_a", "supplier_a"})),
]
