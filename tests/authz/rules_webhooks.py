"""Authorization rows for webhooks: each organisation's endpoints are its own; members read
them and the delivery log, org admins manage them (``colleagues=False``); staff (auditors,
admins) have no organisation and no webhooks. Another tenant's endpoint does not exist (404)."""

from __future__ import annotations

from tests.authz.rules import Rule

OWN = frozenset({"buyer_a"})
ANY_ORG_ADMIN = frozenset({"buyer_a", "buyer_b", "supplier_a", "supplier_b"})
ENDPOINT = "/api/v1/webhooks/endpoints/{webhook_endpoint_a}"
NEW_ENDPOINT = {"url": "http://127.0.0.1:9/hook", "topics": ["*"]}

RULES = [
    Rule("POST", "/api/v1/webhooks/endpoints", ANY_ORG_ADMIN, NEW_ENDPOINT, colleagues=False),
    Rule("GET", "/api/v1/webhooks/endpoints", ANY_ORG_ADMIN),
    Rule("GET", ENDPOINT, OWN),
    Rule("PATCH", ENDPOINT, OWN, {"description": "ERP"}, colleagues=False),
    Rule("DELETE", ENDPOINT, OWN, colleagues=False),
    Rule("POST", ENDPOINT + "/rotate-secret", OWN, colleagues=False),
    Rule("POST", ENDPOINT + "/enable", OWN, colleagues=False),
    Rule("GET", ENDPOINT + "/deliveries", OWN),
    Rule(
        "POST",
        "/api/v1/webhooks/deliveries/{webhook_delivery_a}/redeliver",
        OWN,
        colleagues=False,
    ),
]
