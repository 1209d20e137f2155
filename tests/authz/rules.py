"""Who may call each route: one table, one row per route (method + path template).

``allowed`` names the personas that pass authorization for tenant A's object in the path.
Everyone else must get 401 (anonymous) or 403/404 (others). A route of the app that has no
row here makes the matrix test fail. Areas keep their rows in their own module below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVERYONE = frozenset(
    {"anonymous", "buyer_a", "buyer_b", "supplier_a", "supplier_b", "auditor", "admin"}
)
SIGNED_IN = EVERYONE - {"anonymous"}


@dataclass(frozen=True)
class Rule:
    method: str
    path: str  # a template over World.ids, e.g. "/api/v1/demands/{demand_a}"
    allowed: frozenset[str]
    body: dict[str, Any] | None = field(default=None, hash=False)
    query: str = ""


RULES: list[Rule] = [
    Rule("GET", "/healthz", EVERYONE),
    Rule("GET", "/readyz", EVERYONE),
    Rule("GET", "/api/v1/cities", EVERYONE),
    Rule("GET", "/api/v1/taxonomy", EVERYONE),
    Rule("GET", "/api/v1/certifications", EVERYONE),
]


def all_rules() -> list[Rule]:
    """Every area's rows (each area module defines ``RULES``)."""
    import importlib
    import pkgutil

    import tests.authz as package

    rules = list(RULES)
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("rules_"):
            rules.extend(importlib.import_module(f"tests.authz.{module.name}").RULES)
    return rules
