"""The world the authorization matrix runs in: two OEMs, two suppliers, their objects.

Tenant A's objects are the "own" objects of buyer_a/supplier_a and the "other's" objects of
buyer_b/supplier_b; rule paths name tenant A's objects, e.g. ``/api/v1/demands/{demand_a}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from market.models import OrgKind, Quote, Role
from tests import factories

PERSONAS = ("anonymous", "buyer_a", "buyer_b", "supplier_a", "supplier_b", "auditor", "admin")


@dataclass
class World:
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.format(**self.ids)


def build_world() -> World:
    world = World()
    oem_a = factories.make_org(OrgKind.OEM)
    oem_b = factories.make_org(OrgKind.OEM)
    sup_a = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
    sup_b = factories.make_org(OrgKind.SUPPLIER, city_code="440600")
    plant_a = factories.make_site(oem_a)
    plant_b = factories.make_site(oem_b)
    site_a = factories.make_site(sup_a, at=factories.SHENZHEN)
    site_b = factories.make_site(sup_b)
    cap_a = factories.make_capability(sup_a, "chassis.brake")
    cert_a = factories.make_certification(sup_a)
    demand_a = factories.make_demand(oem_a, plant_a)
    demand_b = factories.make_demand(oem_b, plant_b)
    quote_a = Quote(
        demand=demand_a,
        organization=sup_a,
        site=site_a,
        unit_price=factories.Decimal("12.50"),
        quantity=1000,
        lead_time_days=30,
        valid_until=factories.date.today() + factories.timedelta(days=30),
    )
    factories.db.session.add(quote_a)
    purchase_a = factories.make_purchase(oem_a, plant_a, sup_a, site_a)
    users = {
        "buyer_a": factories.make_user(oem_a),
        "buyer_b": factories.make_user(oem_b),
        "supplier_a": factories.make_user(sup_a),
        "supplier_b": factories.make_user(sup_b),
        "auditor": factories.make_user(role=Role.AUDITOR),
        "admin": factories.make_user(role=Role.ADMIN),
    }
    factories.db.session.flush()
    world.headers = {"anonymous": {}} | {name: factories.auth(u) for name, u in users.items()}
    named = {
        "oem_a": oem_a,
        "oem_b": oem_b,
        "supplier_a": sup_a,
        "supplier_b": sup_b,
        "plant_a": plant_a,
        "plant_b": plant_b,
        "site_a": site_a,
        "site_b": site_b,
        "capability_a": cap_a,
        "certification_a": cert_a,
        "demand_a": demand_a,
        "demand_b": demand_b,
        "quote_a": quote_a,
        "purchase_a": purchase_a,
    }
    world.objects = named | {f"user_{k}": v for k, v in users.items()}
    world.ids = {name: obj.id for name, obj in world.objects.items()}
    return world
