"""Authorization rows for subsidy claims. OEM buyers file, submit and hand in evidence for their
own organisation's claims; auditors whose jurisdiction holds the OEM's plant (and admins) read,
review and decide; suppliers never see a claim. Tenant A's claim is a draft of last year, so
the allowed personas' state changes answer 409/422 (authorized, refused by the state machine).
"""

from __future__ import annotations

from tests.authz.rules import Rule

BUYER_A = frozenset({"buyer_a"})
READERS = frozenset({"buyer_a", "auditor", "admin"})
DECIDERS = frozenset({"auditor", "admin"})
CLAIM = "/api/v1/claims/{claim_a}"

RULES = [
    Rule("GET", "/api/v1/claims", frozenset({"buyer_a", "buyer_b", "auditor", "admin"})),
    # Any OEM's buyer files for its own organisation (A already has an open claim: 409).
    Rule("POST", "/api/v1/claims", frozenset({"buyer_a", "buyer_b"}), body={"year": 2020}),
    Rule("GET", CLAIM, READERS, jurisdiction_bound=True),
    Rule("POST", f"{CLAIM}/submit", BUYER_A, body={}),
    Rule("POST", f"{CLAIM}/review", DECIDERS, body={}, jurisdiction_bound=True),
    Rule(
        "POST",
        f"{CLAIM}/request-evidence",
        DECIDERS,
        body={"purchase_ids": ["{purchase_a}"], "kinds": ["invoice"], "note": "请提供发票"},
        jurisdiction_bound=True,
    ),
    Rule(
        "POST",
        f"{CLAIM}/decisions",
        DECIDERS,
        body={"decisions": [{"purchase_id": "{purchase_a}", "decision": "approved"}]},
        jurisdiction_bound=True,
    ),
    Rule(
        "POST",
        f"{CLAIM}/decide",
        DECIDERS,
        body={"decision": "approve", "reason": "ok"},
        jurisdiction_bound=True,
    ),
    # No body here: the authorized buyer gets 422 (file missing), everyone else 401/403/404.
    Rule("POST", f"{CLAIM}/evidence", BUYER_A),
    Rule("GET", f"{CLAIM}/evidence", READERS, jurisdiction_bound=True),
    Rule("GET", f"{CLAIM}/evidence/{{evidence_a}}", READERS, jurisdiction_bound=True),
    # The package of a draft is a 409 for those who may read it.
    Rule("GET", f"{CLAIM}/package.xlsx", READERS, jurisdiction_bound=True),
    Rule("GET", f"{CLAIM}/manifest.json", READERS, jurisdiction_bound=True),
]
