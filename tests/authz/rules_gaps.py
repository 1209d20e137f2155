"""Chain-gap routes: buyers (their own plants), auditors (their jurisdiction) and admins;
suppliers are refused."""

from __future__ import annotations

from tests.authz.rules import EVERYONE, Rule

READERS = frozenset({"buyer_a", "auditor", "admin"})

RULES = [
    Rule(
        "GET",
        "/api/v1/insights/gaps",
        READERS,
        query="plant={plant_a}&radius_km=100",
        jurisdiction_bound=True,  # plant A is in Guangzhou
    ),
    Rule(
        "GET",
        "/api/v1/insights/gaps/map.svg",
        READERS,
        query="plant={plant_a}&radius_km=100",
        jurisdiction_bound=True,
    ),
    # Every city a caller may see: an auditor elsewhere gets their own cities (200).
    Rule(
        "GET",
        "/api/v1/insights/gaps/province",
        READERS | {"buyer_b"},
        query="radius_km=50&depth=1",
    ),
]
# The insights page and its assets hold no data (the page reads the API as the caller).
RULES += [
    Rule("GET", "/insights", EVERYONE),
    Rule("GET", "/insights/insights.js", EVERYONE),
    Rule("GET", "/insights/insights.css", EVERYONE),
]
