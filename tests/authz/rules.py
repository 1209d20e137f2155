"""Who may call each route: one table, one row per route (method + path template).

``allowed`` names the personas that pass authorization for tenant A's object in the path.
Everyone else must get 401 (anonymous, and the removed member whose access has ended) or
403/404 (others). A route of the app that has no row here makes the matrix test fail. Areas
keep their rows in their own module below.

Three personas follow from the others unless a row says otherwise (:func:`expanded`):

- ``member_a``, a plain (non-admin) member of buyer A's OEM, passes where ``buyer_a`` (its org
  admin) passes, except on rows with ``colleagues=False`` (team administration, buyer A's
  own account objects);
- ``auditor_elsewhere``, an auditor whose jurisdiction (Shantou) holds none of tenant A's
  cities, passes where ``auditor`` (provincial) passes, except on rows with
  ``jurisdiction_bound=True`` (the object lies outside their jurisdiction: 404);
- ``pending_admin``, the org admin of a pending organisation, passes public routes and the
  self-service ``/auth/`` routes only (a pending organisation sees only itself), plus rows
  that name it.
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
    # False: buyer A's colleague (member_a) does not share buyer A's right here.
    colleagues: bool = True
    # True: the object is outside auditor_elsewhere's jurisdiction, so it does not exist for them.
    jurisdiction_bound: bool = False


def expanded(rule: Rule) -> Rule:
    """The rule with the derived personas added (see the module docstring)."""
    allowed = set(rule.allowed)
    if "buyer_a" in allowed and rule.colleagues:
        allowed.add("member_a")
    if "auditor" in allowed and not rule.jurisdiction_bound:
        allowed.add("auditor_elsewhere")
    self_service = rule.path.startswith("/api/v1/auth/") and rule.allowed >= SIGNED_IN
    if "anonymous" in allowed or self_service:
        allowed.add("pending_admin")
    return Rule(
        rule.method,
        rule.path,
        frozenset(allowed),
        rule.body,
        rule.query,
        rule.colleagues,
        rule.jurisdiction_bound,
    )


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
    return [expanded(rule) for rule in rules]
