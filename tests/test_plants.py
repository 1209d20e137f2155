"""OEM plants: a buyer's organization's sites where demanded parts are delivered."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from market.models import OrgKind, OutboxEvent, Role, Site
from tests import factories

PLANTS = "/api/v1/plants"
BODY = {
    "name": "增城新能源工厂",
    "city_code": "440100",
    "address": "广州市增城区新塘镇",
    "lat": 23.15,
    "lon": 113.65,
}


@pytest.fixture
def world(db_session) -> dict[str, Any]:
    oem = factories.make_org(OrgKind.OEM)
    rival = factories.make_org(OrgKind.OEM)
    supplier = factories.make_org(OrgKind.SUPPLIER)
    return {
        "oem": oem,
        "rival": rival,
        "supplier": supplier,
        "plant": factories.make_site(oem),
        "rival_plant": factories.make_site(rival),
        "supplier_site": factories.make_site(supplier),
        "buyer": factories.auth(factories.make_user(oem)),
        "rival_buyer": factories.auth(factories.make_user(rival)),
        "supplier_user": factories.auth(factories.make_user(supplier)),
        "auditor": factories.auth(factories.make_user(role=Role.AUDITOR)),
        "admin": factories.auth(factories.make_user(role=Role.ADMIN)),
    }


def site_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Site))


def test_a_buyer_adds_a_plant_to_its_own_organization(client, db_session, world):
    outbox = db_session.scalar(select(func.count()).select_from(OutboxEvent))
    response = client.post(PLANTS, json=BODY, headers=world["buyer"])
    assert response.status_code == 201, response.get_json()
    plant = response.get_json()
    assert plant["organization_id"] == world["oem"].id
    assert plant["kind"] == "plant" and plant["active"] is True
    # Plants are not supplier search data: no search sync.
    assert db_session.scalar(select(func.count()).select_from(OutboxEvent)) == outbox


def test_admin_names_the_oem(client, db_session, world):
    body = {**BODY, "organization_id": world["rival"].id}
    response = client.post(PLANTS, json=body, headers=world["admin"])
    assert response.status_code == 201
    assert response.get_json()["organization_id"] == world["rival"].id


@pytest.mark.parametrize(
    ("who", "extra", "status", "field"),
    [
        ("buyer", {"organization_id": "rival"}, 403, None),  # someone else's organization
        ("supplier_user", {}, 403, None),
        ("auditor", {}, 403, None),
        ("admin", {}, 422, "organization_id"),
        ("admin", {"organization_id": "supplier"}, 422, "organization_id"),
        ("admin", {"organization_id": 2**31 - 1}, 422, "organization_id"),
        ("buyer", {"kind": "warehouse"}, 422, "kind"),
        ("buyer", {"active": False}, 422, "active"),
        ("buyer", {"lat": 39.9, "lon": 116.4}, 422, "lat"),  # Beijing with a Guangzhou code
        ("buyer", {"city_code": "440111"}, 422, "city_code"),
        ("buyer", {"name": "A\r\nB"}, 422, "name"),
        ("buyer", {"lat": "23.1"}, 422, "lat"),
    ],
)
def test_bad_plant_requests_change_nothing(client, db_session, world, who, extra, status, field):
    extra = {k: (world[v].id if isinstance(v, str) and v in world else v) for k, v in extra.items()}
    before = site_count(db_session)
    response = client.post(PLANTS, json={**BODY, **extra}, headers=world[who])
    assert response.status_code == status, response.get_json()
    if field:
        assert field in response.get_json()["error"]["fields"]
    assert site_count(db_session) == before


def test_buyers_list_their_own_plants_and_admins_filter(client, db_session, world):
    second = factories.make_site(world["oem"])
    own = client.get(PLANTS, headers=world["buyer"]).get_json()
    assert [p["id"] for p in own["items"]] == [world["plant"].id, second.id]
    assert own["meta"]["total"] == 2
    assert (
        client.get(
            f"{PLANTS}?organization_id={world['rival'].id}", headers=world["buyer"]
        ).status_code
        == 404
    )
    everyone = client.get(f"{PLANTS}?per_page=100", headers=world["auditor"]).get_json()
    ids = {p["id"] for p in everyone["items"]}
    assert {world["plant"].id, world["rival_plant"].id} <= ids
    assert world["supplier_site"].id not in ids  # a supplier's site is not an OEM plant
    rival = client.get(
        f"{PLANTS}?organization_id={world['rival'].id}", headers=world["admin"]
    ).get_json()
    assert [p["id"] for p in rival["items"]] == [world["rival_plant"].id]
    assert client.get(PLANTS, headers=world["supplier_user"]).status_code == 403
    assert client.get(PLANTS).status_code == 401
    assert client.get(f"{PLANTS}?per_page=0", headers=world["buyer"]).status_code == 422


def test_reading_one_plant(client, db_session, world):
    url = f"{PLANTS}/{world['plant'].id}"
    assert client.get(url, headers=world["buyer"]).get_json()["id"] == world["plant"].id
    assert client.get(url, headers=world["rival_buyer"]).status_code == 404
    assert client.get(url, headers=world["auditor"]).status_code == 200
    assert client.get(url, headers=world["supplier_user"]).status_code == 403
    not_a_plant = f"{PLANTS}/{world['supplier_site'].id}"
    assert client.get(not_a_plant, headers=world["admin"]).status_code == 404
    assert client.get(f"{PLANTS}/{10**20}", headers=world["admin"]).status_code == 404
