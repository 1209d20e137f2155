"""Authorization rows for the chain KPIs and charts, declared vehicle output, delivery records,
supplier scorecards and the domestic-origin flag of capabilities.

KPIs: buyers (their own OEM: the use case scopes it), auditors (their jurisdiction) and admins;
suppliers 403. Declaring vehicle output: admins. Deliveries: the purchase's buyer writes; its
supplier, auditors of the plant's jurisdiction and admins read. Scorecards: the supplier itself,
buyers of active OEMs, auditors of the supplier's city, admins.
"""

from __future__ import annotations

from market.clock import business_today
from tests.authz.rules import Rule

KPI_READERS = frozenset({"buyer_a", "buyer_b", "auditor", "admin"})
ADMIN = frozenset({"admin"})
TODAY = business_today().isoformat()  # purchase_a was bought today

DELIVERY_BODY = {
    "promised_on": TODAY,
    "delivered_on": TODAY,
    "accepted_qty": 980,
    "rejected_qty": 20,
}
OUTPUT_BODY = {"oem_org_id": "{oem_a}", "year": 2025, "output_value": "12000000000.00"}

RULES = [
    Rule("GET", "/api/v1/insights/kpis", KPI_READERS, query="year=2026"),
    Rule("GET", "/api/v1/insights/kpis", KPI_READERS, query="by=category&format=csv"),
    Rule("GET", "/api/v1/insights/kpis/chart.svg", KPI_READERS, query="kind=chips&year=2026"),
    Rule("GET", "/api/v1/vehicle-outputs", KPI_READERS),
    Rule("POST", "/api/v1/vehicle-outputs", ADMIN, body=OUTPUT_BODY),
    Rule("POST", "/api/v1/purchases/{purchase_a}/deliveries", {"buyer_a"}, body=DELIVERY_BODY),
    Rule(
        "GET",
        "/api/v1/purchases/{purchase_a}/deliveries",
        {"buyer_a", "supplier_a", "auditor", "admin"},
        jurisdiction_bound=True,
    ),
    Rule(
        "GET",
        "/api/v1/suppliers/{supplier_a}/scorecard",
        {"supplier_a", "buyer_a", "buyer_b", "auditor", "admin"},
        jurisdiction_bound=True,
    ),
    Rule(
        "PATCH",
        "/api/v1/suppliers/{supplier_a}/capabilities/{capability_a}",
        {"supplier_a", "admin"},
        body={"domestic_origin": False},
    ),
]
