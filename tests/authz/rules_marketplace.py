"""Authorization rows for demands, quotes, awards and purchases.

Bodies are valid for their schemas, so every persona reaches the use case's own checks; their ids
name tenant A's objects, so buyer B's requests fail there (422 for a plant or supplier that is not
its own, which is still "authorized") and tenant A's succeed or meet the object's state (409).
"""

from __future__ import annotations

from datetime import timedelta

from market.clock import business_today
from tests.authz.rules import SIGNED_IN, Rule

DEMAND = "/api/v1/demands/{demand_a}"
IN_A_MONTH = (business_today() + timedelta(days=30)).isoformat()

DEMAND_BODY = {
    "plant_id": "{plant_a}",
    "category": "chassis.braking",
    "title": "Brake calipers",
    "quantity": 1000,
    "unit": "pcs",
    "need_by": IN_A_MONTH,
}
QUOTE_BODY = {
    "unit_price": "12.50",
    "quantity": 1000,
    "lead_time_days": 30,
    "site_id": "{site_a}",
    "valid_until": IN_A_MONTH,
}
PURCHASE_BODY = {
    "supplier_org_id": "{supplier_a}",
    "supplier_site_id": "{site_a}",
    "plant_id": "{plant_a}",
    "category": "chassis.braking",
    "amount": "12345.67",
    "purchased_on": business_today().isoformat(),
    "invoice_number": "INV-AUTHZ-0001",
}
SUPPLIER_PURCHASE_BODY = {
    "oem_org_id": "{oem_a}",
    "supplier_site_id": "{site_a}",
    "plant_id": "{plant_a}",
    "category": "chassis.braking",
    "amount": "12345.67",
    "purchased_on": business_today().isoformat(),
    "invoice_number": "INV-AUTHZ-0003",
}
BUYERS = frozenset({"buyer_a", "buyer_b"})
SUPPLIERS = frozenset({"supplier_a", "supplier_b"})
# Demand A is open: its OEM's buyer, both suppliers (open demands are public to suppliers),
# the auditor and the admin see it; buyer B does not.
DEMAND_A_READERS = SIGNED_IN - {"buyer_b"}

RULES = [
    # Buyer B may post (its body's plant is checked in the use case: a 422, not a 403).
    Rule("POST", "/api/v1/demands", BUYERS, body=DEMAND_BODY),
    Rule("GET", "/api/v1/demands", SIGNED_IN),
    Rule("GET", "/api/v1/demands", SIGNED_IN, query="state=open&sort=-need_by&per_page=5"),
    # Demand A's plant is in Guangzhou: outside auditor_elsewhere's jurisdiction.
    Rule("GET", DEMAND, DEMAND_A_READERS, jurisdiction_bound=True),
    Rule("PATCH", DEMAND, frozenset({"buyer_a"}), body={"title": "Brake discs"}),
    Rule("POST", DEMAND + "/publish", frozenset({"buyer_a"})),
    Rule("POST", DEMAND + "/close", frozenset({"buyer_a", "admin"})),
    Rule("POST", DEMAND + "/cancel", frozenset({"buyer_a", "admin"})),
    # Supplier B is not eligible (no capability): 403.
    Rule("POST", DEMAND + "/quotes", frozenset({"supplier_a"}), body=QUOTE_BODY),
    Rule("GET", DEMAND + "/quotes", DEMAND_A_READERS, jurisdiction_bound=True),
    Rule("POST", "/api/v1/quotes/{quote_a}/withdraw", frozenset({"supplier_a"})),
    Rule(
        "POST",
        "/api/v1/quotes/{quote_a}/award",
        frozenset({"buyer_a"}),
        body={"invoice_number": "INV-AUTHZ-0002", "po_number": "PO-1"},
    ),
    # Suppliers may record too (naming the OEM); buyer B and supplier B meet the use case's
    # checks of the ids (422), not a 403.
    Rule("POST", "/api/v1/purchases", BUYERS | SUPPLIERS, body=PURCHASE_BODY),
    Rule("POST", "/api/v1/purchases", BUYERS | SUPPLIERS, body=SUPPLIER_PURCHASE_BODY),
    Rule("GET", "/api/v1/purchases", SIGNED_IN),
    Rule("GET", "/api/v1/purchases", SIGNED_IN, query="year=2026&status=confirmed&sort=-amount"),
    Rule("GET", "/api/v1/purchases", SIGNED_IN, query="awaiting=me"),
    # Purchase A is confirmed: its supplier meets "nothing to confirm" (409); buyer A, who
    # recorded it, is refused (403) as are the others (404 / 403).
    Rule("POST", "/api/v1/purchases/{purchase_a}/confirm", frozenset({"supplier_a"})),
    Rule(
        "POST",
        "/api/v1/purchases/{purchase_a}/dispute",
        frozenset({"supplier_a"}),
        body={"reason": "Never shipped"},
    ),
    Rule(
        "POST",
        "/api/v1/purchases/{purchase_a}/review",
        frozenset({"auditor", "admin"}),
        body={"decision": "release", "reason": "Checked"},
        jurisdiction_bound=True,
    ),
    Rule(
        "GET",
        "/api/v1/purchases/{purchase_a}",
        frozenset({"buyer_a", "supplier_a", "auditor", "admin"}),
        jurisdiction_bound=True,  # delivered to a Guangzhou plant
    ),
    Rule(
        "POST",
        "/api/v1/purchases/{purchase_a}/cancel",
        frozenset({"buyer_a", "admin"}),
        body={"reason": "Entered twice"},
    ),
]
