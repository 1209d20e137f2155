"""Authorization rows for supplier profiles, sites, capabilities, certifications and OEM plants."""

from __future__ import annotations

from tests.authz.rules import SIGNED_IN, Rule

EDITORS = frozenset({"supplier_a", "admin"})
SUPPLIER = "/api/v1/suppliers/{supplier_a}"

SITE_BODY = {
    "name": "松山湖二厂",
    "kind": "warehouse",
    "city_code": "441900",
    "address": "东莞市松山湖工业北路 8 号",
    "lat": 22.91,
    "lon": 113.89,
}
PLANT_BODY = {"name": "新能源总装厂", "city_code": "440100", "lat": 23.0, "lon": 113.5}

RULES = [
    Rule("GET", SUPPLIER, SIGNED_IN),
    Rule("PUT", SUPPLIER + "/profile", EDITORS, body={"tier": 2, "specialized": True}),
    Rule("PATCH", SUPPLIER + "/profile", EDITORS, body={"specialized": True}),
    Rule("POST", SUPPLIER + "/sites", EDITORS, body=SITE_BODY),
    Rule("GET", SUPPLIER + "/sites", SIGNED_IN),
    Rule("GET", SUPPLIER + "/sites/{site_a}", SIGNED_IN),
    Rule("PATCH", SUPPLIER + "/sites/{site_a}", EDITORS, body={"name": "坪山一厂"}),
    Rule("DELETE", SUPPLIER + "/sites/{site_a}", EDITORS),
    Rule(
        "POST",
        SUPPLIER + "/capabilities",
        EDITORS,
        body={"category": "body.seats", "processes": ["stamping"]},
    ),
    Rule("GET", SUPPLIER + "/capabilities", SIGNED_IN),
    Rule("DELETE", SUPPLIER + "/capabilities/{capability_a}", EDITORS),
    Rule(
        "POST",
        SUPPLIER + "/certifications",
        EDITORS,
        body={"standard": "iso-9001", "valid_from": "2025-01-01", "valid_until": "2028-01-01"},
    ),
    Rule("GET", SUPPLIER + "/certifications", SIGNED_IN),
    Rule("GET", SUPPLIER + "/certifications/{certification_a}", SIGNED_IN),
    Rule(
        "PATCH",
        SUPPLIER + "/certifications/{certification_a}",
        EDITORS,
        body={"number": "IATF-0455-2026"},
    ),
    # Plants: a buyer adds to and lists its own organization (so buyer_b passes too).
    Rule("POST", "/api/v1/plants", frozenset({"buyer_a", "buyer_b", "admin"}), body=PLANT_BODY),
    Rule("GET", "/api/v1/plants", frozenset({"buyer_a", "buyer_b", "auditor", "admin"})),
    Rule(
        "GET",
        "/api/v1/plants/{plant_a}",
        frozenset({"buyer_a", "auditor", "admin"}),
        jurisdiction_bound=True,
    ),
]
