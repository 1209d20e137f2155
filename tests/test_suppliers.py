"""Supplier profiles, sites, capabilities and certifications through the API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from market.clock import business_today
from market.models import (
    Capability,
    Certification,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxTopic,
    Role,
    Site,
)
from tests import factories

API = "/api/v1/suppliers"


@dataclass
class Tenants:
    supplier: Organization
    other: Organization
    own: dict[str, str]
    other_supplier: dict[str, str]
    buyer: dict[str, str]
    auditor: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def t(db_session) -> Tenants:
    supplier = factories.make_org(OrgKind.SUPPLIER, city_code="440300", tier=2)
    other = factories.make_org(OrgKind.SUPPLIER, city_code="440600")
    oem = factories.make_org(OrgKind.OEM)
    return Tenants(
        supplier=supplier,
        other=other,
        own=factories.auth(factories.make_user(supplier)),
        other_supplier=factories.auth(factories.make_user(other)),
        buyer=factories.auth(factories.make_user(oem)),
        auditor=factories.auth(factories.make_user(role=Role.AUDITOR)),
        admin=factories.auth(factories.make_user(role=Role.ADMIN)),
    )


def snapshot(session, org: Organization) -> dict[str, int]:
    """Row counts and the version: a rejected request must leave all of them unchanged."""
    session.expire_all()
    count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
    return {
        "sites": count(Site),
        "capabilities": count(Capability),
        "certifications": count(Certification),
        "outbox": count(OutboxEvent),
        "version": session.get(Organization, org.id).version,
    }


def sync_rows(session, org: Organization) -> int:
    return session.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.topic == OutboxTopic.SEARCH_SYNC, OutboxEvent.aggregate_id == org.id)
    )


def assert_synced(session, org: Organization, before: dict[str, int]) -> None:
    """The change bumped the version and committed a search-sync outbox row with it."""
    after = snapshot(session, org)
    assert after["version"] == before["version"] + 1
    event = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == OutboxTopic.SEARCH_SYNC, OutboxEvent.aggregate_id == org.id)
        .order_by(OutboxEvent.id.desc())
    ).first()
    assert event is not None and event.payload == {"version": after["version"]}
    assert after["outbox"] == before["outbox"] + 1


def assert_unchanged(session, org: Organization, before: dict[str, int]) -> None:
    assert snapshot(session, org) == before


def fields_of(response) -> dict[str, Any]:
    body = response.get_json()
    assert "error" in body, body
    return body["error"].get("fields") or {}


def site_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "坪山一厂",
        "kind": "plant",
        "city_code": "440300",
        "address": "深圳市坪山区青松路 1 号",
        "lat": 22.69,
        "lon": 114.35,
    }
    body.update(overrides)
    return body


def cert_body(**overrides: Any) -> dict[str, Any]:
    today = business_today()
    body = {
        "standard": "iatf-16949",
        "number": "0455-IATF-0001",
        "issuer": "TÜV SÜD",
        "valid_from": (today - timedelta(days=100)).isoformat(),
        "valid_until": (today + timedelta(days=900)).isoformat(),
        "scope": "Design and manufacture of brake calipers",
    }
    body.update(overrides)
    return body


# --- profile ------------------------------------------------------------------------------------


def test_own_user_replaces_the_profile_and_the_index_is_told(client, db_session, t):
    before = snapshot(db_session, t.supplier)
    body = {
        "tier": 1,
        "description": "  精密压铸件，年产 200 万件。\r\n第二行  ",
        "specialized": True,
        "employee_band": "300-999",
        "revenue_band": "20m-400m",
        "english_name": "Pingshan Precision Casting Co., Ltd.",
        "listed": False,
    }
    response = client.put(f"{API}/{t.supplier.id}/profile", json=body, headers=t.own)
    assert response.status_code == 200, response.get_json()
    profile = response.get_json()
    assert profile["tier"] == 1 and profile["specialized"] is True and profile["listed"] is False
    assert profile["description"] == "精密压铸件，年产 200 万件。\n第二行"
    assert profile["version"] == before["version"] + 1
    assert_synced(db_session, t.supplier, before)


def test_put_is_a_replacement_omitted_fields_take_their_defaults(client, db_session, t):
    t.supplier.description, t.supplier.listed = "old", False
    db_session.flush()
    response = client.put(f"{API}/{t.supplier.id}/profile", json={"tier": 3}, headers=t.own)
    assert response.status_code == 200
    assert response.get_json()["description"] is None
    assert response.get_json()["listed"] is True


def test_admin_may_edit_any_supplier_profile(client, db_session, t):
    response = client.put(f"{API}/{t.supplier.id}/profile", json={"tier": 1}, headers=t.admin)
    assert response.status_code == 200
    assert response.get_json()["tier"] == 1


@pytest.mark.parametrize(
    ("who", "status"),
    [("buyer", 403), ("auditor", 403), ("other_supplier", 404), ("anonymous", 401)],
)
def test_only_own_users_and_admins_change_the_profile(client, db_session, t, who, status):
    before = snapshot(db_session, t.supplier)
    headers = {} if who == "anonymous" else getattr(t, who)
    response = client.put(f"{API}/{t.supplier.id}/profile", json={"tier": 1}, headers=headers)
    assert response.status_code == status
    assert_unchanged(db_session, t.supplier, before)
    assert db_session.get(Organization, t.supplier.id).tier == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tier": 1, "status": "active"}, "status"),
        ({"tier": 1, "verified_at": "2026-01-01T00:00:00Z"}, "verified_at"),
        ({"tier": 1, "version": 99}, "version"),
        ({"tier": 1, "uscc": "91440300MA5FAKE001"}, "uscc"),
        ({"tier": 1, "owner": 5}, "owner"),
        ({"tier": 4}, "tier"),
        ({"tier": 0}, "tier"),
        ({"tier": "1"}, "tier"),
        ({"tier": True}, "tier"),
        ({"tier": 1.5}, "tier"),
        ({}, "tier"),
        ({"tier": 1, "specialized": "yes"}, "specialized"),
        ({"tier": 1, "specialized": 1}, "specialized"),
        ({"tier": 1, "employee_band": "huge"}, "employee_band"),
        ({"tier": 1, "revenue_band": "<3m"}, "revenue_band"),
        ({"tier": 1, "english_name": "Evil\r\nInjected: yes"}, "english_name"),
        ({"tier": 1, "english_name": "x" * 201}, "english_name"),
        ({"tier": 1, "description": "x" * 4001}, "description"),
        ({"tier": 1, "description": 42}, "description"),
    ],
)
def test_bad_profile_bodies_are_422_and_change_nothing(client, db_session, t, body, field):
    before = snapshot(db_session, t.supplier)
    response = client.put(f"{API}/{t.supplier.id}/profile", json=body, headers=t.own)
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_markup_and_sql_text_are_stored_as_plain_text(client, db_session, t):
    text = "<script>alert(1)</script>'; DROP TABLE organizations; --"
    response = client.put(
        f"{API}/{t.supplier.id}/profile", json={"tier": 2, "description": text}, headers=t.own
    )
    assert response.status_code == 200
    assert response.get_json()["description"] == text


def test_patch_changes_only_the_fields_sent(client, db_session, t):
    t.supplier.description, t.supplier.listed, t.supplier.english_name = "old", False, "Old Co."
    db_session.flush()
    before = snapshot(db_session, t.supplier)
    response = client.patch(
        f"{API}/{t.supplier.id}/profile", json={"specialized": True}, headers=t.own
    )
    assert response.status_code == 200, response.get_json()
    profile = response.get_json()
    assert profile["specialized"] is True
    # What PUT would have reset to defaults is kept.
    assert profile["description"] == "old" and profile["listed"] is False
    assert profile["english_name"] == "Old Co." and profile["tier"] == 2
    assert_synced(db_session, t.supplier, before)


def test_patch_null_clears_a_nullable_field(client, db_session, t):
    t.supplier.description = "old"
    db_session.flush()
    response = client.patch(
        f"{API}/{t.supplier.id}/profile", json={"description": None}, headers=t.own
    )
    assert response.status_code == 200
    assert response.get_json()["description"] is None


def test_patch_that_changes_nothing_keeps_the_version_and_tells_nobody(client, db_session, t):
    before = snapshot(db_session, t.supplier)
    for body in ({}, {"tier": 2}):
        response = client.patch(f"{API}/{t.supplier.id}/profile", json=body, headers=t.own)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["version"] == before["version"]
    assert_unchanged(db_session, t.supplier, before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tier": None}, "tier"),
        ({"tier": 4}, "tier"),
        ({"listed": None}, "listed"),
        ({"specialized": "yes"}, "specialized"),
        ({"status": "active"}, "status"),
        ({"version": 99}, "version"),
        ({"revenue_band": "<3m"}, "revenue_band"),
    ],
)
def test_bad_profile_patches_are_422_and_change_nothing(client, db_session, t, body, field):
    before = snapshot(db_session, t.supplier)
    response = client.patch(f"{API}/{t.supplier.id}/profile", json=body, headers=t.own)
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


@pytest.mark.parametrize(
    ("who", "status"),
    [("buyer", 403), ("auditor", 403), ("other_supplier", 404), ("anonymous", 401)],
)
def test_only_own_users_and_admins_patch_the_profile(client, db_session, t, who, status):
    before = snapshot(db_session, t.supplier)
    headers = {} if who == "anonymous" else getattr(t, who)
    response = client.patch(f"{API}/{t.supplier.id}/profile", json={"tier": 1}, headers=headers)
    assert response.status_code == status
    assert_unchanged(db_session, t.supplier, before)


def test_put_and_patch_document_replacement_and_partial_update(client):
    operations = client.get("/openapi.json").get_json()["paths"][
        "/api/v1/suppliers/{org_id}/profile"
    ]
    assert "Replace" in operations["put"]["summary"]
    assert "replacement" in operations["put"]["description"]
    assert "some fields" in operations["patch"]["summary"]


def test_top_level_array_body_is_rejected(client, db_session, t):
    before = snapshot(db_session, t.supplier)
    response = client.put(f"{API}/{t.supplier.id}/profile", json=[{"tier": 1}], headers=t.own)
    assert response.status_code == 422
    assert_unchanged(db_session, t.supplier, before)


# --- reading a supplier -------------------------------------------------------------------------


def test_any_signed_in_user_reads_an_active_supplier_with_its_data(client, db_session, t):
    site = factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300")
    factories.make_capability(t.supplier, "chassis.braking.foundation")
    factories.make_certification(t.supplier, site_id=site.id)
    response = client.get(f"{API}/{t.supplier.id}", headers=t.buyer)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == t.supplier.id and body["tier"] == 2
    assert [s["id"] for s in body["sites"]] == [site.id]
    assert body["capabilities"][0]["category"] == "chassis.braking.foundation"
    assert body["certifications"][0]["site_id"] == site.id
    assert client.get(f"{API}/{t.supplier.id}").status_code == 401


@pytest.mark.parametrize("status", [OrgStatus.PENDING, OrgStatus.SUSPENDED])
def test_inactive_suppliers_are_hidden_except_from_members_admins_auditors(
    client, db_session, t, status
):
    hidden = factories.make_org(OrgKind.SUPPLIER, status=status)
    url = f"{API}/{hidden.id}"
    assert client.get(url, headers=t.buyer).status_code == 404
    assert client.get(url, headers=t.other_supplier).status_code == 404
    assert client.get(url + "/sites", headers=t.buyer).status_code == 404
    assert client.get(url, headers=t.admin).status_code == 200
    assert client.get(url, headers=t.auditor).status_code == 200
    if status is OrgStatus.PENDING:  # a suspended org's users cannot sign in at all
        member = factories.auth(factories.make_user(hidden))
        assert client.get(url, headers=member).status_code == 200


def test_an_oem_or_unknown_or_overflowing_id_is_not_a_supplier(client, db_session, t):
    oem = factories.make_org(OrgKind.OEM)
    for org_id in (oem.id, 987654321, 2**31, 10**30):
        assert client.get(f"{API}/{org_id}", headers=t.admin).status_code == 404
        response = client.post(f"{API}/{org_id}/sites", json=site_body(), headers=t.admin)
        assert response.status_code == 404


# --- sites ----------------------------------------------------------------------------------------


def test_create_a_site(client, db_session, t):
    before = snapshot(db_session, t.supplier)
    response = client.post(f"{API}/{t.supplier.id}/sites", json=site_body(), headers=t.own)
    assert response.status_code == 201, response.get_json()
    site = response.get_json()
    assert site["organization_id"] == t.supplier.id and site["active"] is True
    assert site["city_code"] == "440300" and site["lat"] == 22.69
    assert snapshot(db_session, t.supplier)["sites"] == before["sites"] + 1
    assert_synced(db_session, t.supplier, before)


def test_a_site_outside_guangdong_is_accepted_for_the_ledger_to_mark(client, db_session, t):
    body = site_body(city_code="430100", lat=28.23, lon=112.94, name="长沙仓", kind="warehouse")
    response = client.post(f"{API}/{t.supplier.id}/sites", json=body, headers=t.own)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kind"] == "warehouse"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"city_code": "440199"}, "city_code"),  # Guangdong, but not one of the 21 cities
        ({"city_code": "441521"}, "city_code"),  # a county code, not a prefecture
        ({"city_code": "999999"}, "city_code"),
        ({"city_code": "990100"}, "city_code"),  # no province 99
        ({"city_code": "44010"}, "city_code"),
        ({"city_code": 440100}, "city_code"),
        ({"lat": "22.69"}, "lat"),
        ({"lat": True}, "lat"),
        ({"lat": None}, "lat"),
        ({"lat": 90.5}, "lat"),
        ({"lat": -91}, "lat"),
        ({"lon": 180.01}, "lon"),
        ({"lon": [114.3]}, "lon"),
        ({"lat": 39.9, "lon": 116.4}, "lat"),  # Beijing with a Shenzhen code
        ({"city_code": "430100", "lat": 2.0, "lon": 112.9}, "lat"),  # not in China
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "厂\r\nX-Injected: 1"}, "name"),
        ({"name": "厂\tA"}, "name"),
        ({"address": "x" * 301}, "address"),
        ({"kind": "office"}, "kind"),
        ({"active": False}, "active"),
        ({"organization_id": 1}, "organization_id"),
        ({"id": 5}, "id"),
    ],
)
def test_bad_sites_are_422_and_change_nothing(client, db_session, t, overrides, field):
    before = snapshot(db_session, t.supplier)
    response = client.post(
        f"{API}/{t.supplier.id}/sites", json=site_body(**overrides), headers=t.own
    )
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_coordinates_are_422(client, db_session, t, raw):
    before = snapshot(db_session, t.supplier)
    text = json.dumps(site_body()).replace('"lat": 22.69', f'"lat": {raw}')
    response = client.post(
        f"{API}/{t.supplier.id}/sites",
        data=text,
        content_type="application/json",
        headers=t.own,
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert "lat" in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_missing_fields_are_named(client, db_session, t):
    response = client.post(f"{API}/{t.supplier.id}/sites", json={}, headers=t.own)
    assert response.status_code == 422
    assert {"name", "city_code", "lat", "lon"} <= set(fields_of(response))


def test_site_list_is_paginated_sorted_and_filtered(client, db_session, t):
    ids = [
        factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300").id,
        factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300").id,
        factories.make_site(t.supplier, at=factories.GUANGZHOU, city_code="440100").id,
    ]
    factories.make_site(t.other)
    url = f"{API}/{t.supplier.id}/sites"
    page1 = client.get(url + "?per_page=2", headers=t.buyer).get_json()
    page2 = client.get(url + "?per_page=2&page=2", headers=t.buyer).get_json()
    assert page1["meta"] == {"page": 1, "per_page": 2, "total": 3, "pages": 2}
    assert [s["id"] for s in page1["items"] + page2["items"]] == ids
    in_gz = client.get(url + "?city_code=440100", headers=t.buyer).get_json()
    assert [s["id"] for s in in_gz["items"]] == [ids[2]]
    assert client.get(url + "?kind=warehouse", headers=t.buyer).get_json()["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "per_page=0",
        "per_page=101",
        "per_page=100000",
        "page=abc",
        "kind=office",
        "city_code=abc",
        "active=maybe",
        "cursor=eyJpZCI6MX0",
        "page=99999999999",
    ],
)
def test_bad_list_queries_are_422(client, db_session, t, query):
    response = client.get(f"{API}/{t.supplier.id}/sites?{query}", headers=t.buyer)
    assert response.status_code == 422, response.get_json()


def test_patch_a_site_then_deactivate_it(client, db_session, t):
    site = factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300")
    url = f"{API}/{t.supplier.id}/sites/{site.id}"
    before = snapshot(db_session, t.supplier)
    response = client.patch(url, json={"name": "坪山总部", "kind": "warehouse"}, headers=t.own)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "坪山总部"
    assert response.get_json()["lat"] == factories.SHENZHEN[0]  # untouched fields stay
    assert_synced(db_session, t.supplier, before)

    before = snapshot(db_session, t.supplier)
    assert client.delete(url, headers=t.own).status_code == 204
    assert_synced(db_session, t.supplier, before)
    assert db_session.get(Site, site.id).active is False  # kept, only deactivated
    assert client.get(url, headers=t.buyer).get_json()["active"] is False
    listed = client.get(f"{API}/{t.supplier.id}/sites?active=true", headers=t.buyer).get_json()
    assert listed["items"] == []

    before = snapshot(db_session, t.supplier)
    assert client.delete(url, headers=t.own).status_code == 204  # idempotent, no new version
    assert_unchanged(db_session, t.supplier, before)
    assert client.patch(url, json={"active": True}, headers=t.own).get_json()["active"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_body"),
        ({"name": None}, "name"),
        ({"lat": 39.9, "lon": 116.4}, "lat"),  # moves a Shenzhen-coded site to Beijing
        ({"lat": 28.23, "lon": 112.94}, "lat"),  # Changsha, with the Shenzhen code kept
        ({"active": "no"}, "active"),
        ({"organization_id": 9}, "organization_id"),
    ],
)
def test_bad_site_patches_are_422(client, db_session, t, body, field):
    site = factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300")
    before = snapshot(db_session, t.supplier)
    response = client.patch(f"{API}/{t.supplier.id}/sites/{site.id}", json=body, headers=t.own)
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_other_tenants_sites_are_404(client, db_session, t):
    their_site = factories.make_site(t.other)
    my_site = factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300")
    before = snapshot(db_session, t.supplier)
    # Their site through my organization's path, and my site through theirs.
    assert (
        client.patch(
            f"{API}/{t.supplier.id}/sites/{their_site.id}", json={"name": "x"}, headers=t.own
        ).status_code
        == 404
    )
    assert (
        client.delete(f"{API}/{t.supplier.id}/sites/{their_site.id}", headers=t.own).status_code
        == 404
    )
    assert (
        client.delete(
            f"{API}/{t.supplier.id}/sites/{my_site.id}", headers=t.other_supplier
        ).status_code
        == 404
    )
    assert client.get(f"{API}/{t.other.id}/sites/{my_site.id}", headers=t.own).status_code == 404
    assert (
        client.patch(
            f"{API}/{t.supplier.id}/sites/{2**40}", json={"name": "x"}, headers=t.own
        ).status_code
        == 404
    )
    assert_unchanged(db_session, t.supplier, before)
    assert db_session.get(Site, their_site.id).active is True


# --- capabilities ---------------------------------------------------------------------------------


def test_declare_list_and_remove_capabilities(client, db_session, t):
    url = f"{API}/{t.supplier.id}/capabilities"
    before = snapshot(db_session, t.supplier)
    body = {
        "category": "chassis.braking.foundation",
        "processes": ["  压铸 ", "machining"],
        "annual_capacity": 2_000_000,
        "capacity_unit": "pcs",
    }
    response = client.post(url, json=body, headers=t.own)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["processes"] == ["压铸", "machining"]
    assert_synced(db_session, t.supplier, before)

    client.post(url, json={"category": "body.seats"}, headers=t.own)
    chassis = client.get(url + "?category=chassis", headers=t.buyer).get_json()
    assert [c["category"] for c in chassis["items"]] == ["chassis.braking.foundation"]
    assert client.get(url + "?category=chassis.brak", headers=t.buyer).get_json()["items"] == []
    assert client.get(url + "?category=%25", headers=t.buyer).get_json()["items"] == []
    assert client.get(url, headers=t.buyer).get_json()["meta"]["total"] == 2

    before = snapshot(db_session, t.supplier)
    assert client.delete(f"{url}/{created['id']}", headers=t.own).status_code == 204
    assert_synced(db_session, t.supplier, before)
    assert snapshot(db_session, t.supplier)["capabilities"] == before["capabilities"] - 1


def test_a_duplicate_category_is_409_and_changes_nothing(client, db_session, t):
    factories.make_capability(t.supplier, "body.seats")
    before = snapshot(db_session, t.supplier)
    response = client.post(
        f"{API}/{t.supplier.id}/capabilities", json={"category": "body.seats"}, headers=t.own
    )
    assert response.status_code == 409
    assert_unchanged(db_session, t.supplier, before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "chassis.brake"}, "category"),  # not in the taxonomy
        ({"category": "CHASSIS"}, "category"),
        ({"category": ""}, "category"),
        ({"category": "body.seats", "processes": "stamping"}, "processes"),
        ({"category": "body.seats", "processes": ["x"] * 21}, "processes"),
        ({"category": "body.seats", "processes": ["y" * 61]}, "processes"),
        ({"category": "body.seats", "processes": [""]}, "processes"),
        ({"category": "body.seats", "processes": ["a\nb"]}, "processes"),
        ({"category": "body.seats", "processes": ["Welding", "welding"]}, "processes"),
        ({"category": "body.seats", "processes": [1]}, "processes"),
        (
            {"category": "body.seats", "annual_capacity": 0, "capacity_unit": "pcs"},
            "annual_capacity",
        ),
        (
            {"category": "body.seats", "annual_capacity": -5, "capacity_unit": "pcs"},
            "annual_capacity",
        ),
        (
            {"category": "body.seats", "annual_capacity": "100", "capacity_unit": "pcs"},
            "annual_capacity",
        ),
        (
            {"category": "body.seats", "annual_capacity": 1.5, "capacity_unit": "pcs"},
            "annual_capacity",
        ),
        (
            {"category": "body.seats", "annual_capacity": 10**12, "capacity_unit": "pcs"},
            "annual_capacity",
        ),
        ({"category": "body.seats", "annual_capacity": 1000}, "capacity_unit"),
        ({"category": "body.seats", "capacity_unit": "pcs"}, "annual_capacity"),
        ({"category": "body.seats", "organization_id": 1}, "organization_id"),
    ],
)
def test_bad_capabilities_are_422_and_change_nothing(client, db_session, t, body, field):
    before = snapshot(db_session, t.supplier)
    response = client.post(f"{API}/{t.supplier.id}/capabilities", json=body, headers=t.own)
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_a_100000_item_list_is_refused_cheaply(client, db_session, t):
    body = {"category": "body.seats", "processes": ["x"] * 100_000}
    response = client.post(f"{API}/{t.supplier.id}/capabilities", json=body, headers=t.own)
    assert response.status_code in {413, 422}


def test_other_tenants_capabilities_cannot_be_removed(client, db_session, t):
    theirs = factories.make_capability(t.other, "body.seats")
    mine = factories.make_capability(t.supplier, "body.seats")
    assert (
        client.delete(f"{API}/{t.supplier.id}/capabilities/{theirs.id}", headers=t.own).status_code
        == 404
    )
    assert (
        client.delete(
            f"{API}/{t.supplier.id}/capabilities/{mine.id}", headers=t.other_supplier
        ).status_code
        == 404
    )
    assert (
        client.delete(f"{API}/{t.supplier.id}/capabilities/{mine.id}", headers=t.buyer).status_code
        == 403
    )
    assert db_session.get(Capability, theirs.id) is not None
    assert db_session.get(Capability, mine.id) is not None


# --- certifications -------------------------------------------------------------------------------


def test_record_a_site_certification(client, db_session, t):
    site = factories.make_site(t.supplier, at=factories.SHENZHEN, city_code="440300")
    before = snapshot(db_session, t.supplier)
    response = client.post(
        f"{API}/{t.supplier.id}/certifications", json=cert_body(site_id=site.id), headers=t.own
    )
    assert response.status_code == 201, response.get_json()
    cert = response.get_json()
    assert cert["status"] == "active" and cert["site_id"] == site.id and cert["level"] is None
    assert_synced(db_session, t.supplier, before)


@pytest.mark.parametrize(
    ("standard", "level", "stored"),
    [
        ("aec-q100", "Grade 1", "1"),
        ("aec-q200", "4", "4"),
        ("iso-26262", "ASIL D", "D"),
        ("iso-26262", "qm", "QM"),
        ("aspice", "CL2", "CL2"),
        ("aec-q101", None, None),
    ],
)
def test_levels_and_qualifications_without_expiry(client, db_session, t, standard, level, stored):
    body = cert_body(standard=standard, level=level, valid_until=None)
    response = client.post(f"{API}/{t.supplier.id}/certifications", json=body, headers=t.own)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["level"] == stored
    assert response.get_json()["valid_until"] is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"standard": "iso-9999"}, "standard"),
        ({"standard": None}, "standard"),
        ({"valid_until": None}, "valid_until"),  # IATF certificates expire
        ({"valid_from": "2026-01-10", "valid_until": "2026-01-01"}, "valid_until"),
        ({"valid_from": "2026-01-10", "valid_until": "2026-01-10"}, "valid_until"),
        ({"valid_from": "2025-02-30"}, "valid_from"),
        ({"valid_from": "2025-13-01"}, "valid_from"),
        ({"valid_from": "yesterday"}, "valid_from"),
        ({"valid_from": "0001-01-01"}, "valid_from"),
        ({"valid_until": "9999-12-31"}, "valid_until"),
        ({"valid_from": 20250101}, "valid_from"),
        ({"level": "A"}, "level"),  # IATF has no levels
        ({"standard": "iso-26262", "level": "E", "valid_until": None}, "level"),
        ({"standard": "aec-q100", "level": "4", "valid_until": None}, "level"),
        ({"number": "N\r\n1"}, "number"),
        ({"issuer": "x" * 201}, "issuer"),
        ({"site_id": 0}, "site_id"),
        ({"site_id": "1"}, "site_id"),
        ({"status": "revoked"}, "status"),
        ({"organization_id": 3}, "organization_id"),
    ],
)
def test_bad_certifications_are_422_and_change_nothing(client, db_session, t, overrides, field):
    before = snapshot(db_session, t.supplier)
    response = client.post(
        f"{API}/{t.supplier.id}/certifications", json=cert_body(**overrides), headers=t.own
    )
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_a_certification_site_must_be_an_active_site_of_the_same_supplier(client, db_session, t):
    their_site = factories.make_site(t.other)
    closed = factories.make_site(
        t.supplier, at=factories.SHENZHEN, city_code="440300", active=False
    )
    before = snapshot(db_session, t.supplier)
    for site_id in (their_site.id, closed.id, 2**31 - 1):
        response = client.post(
            f"{API}/{t.supplier.id}/certifications", json=cert_body(site_id=site_id), headers=t.own
        )
        assert response.status_code == 422
        assert "site_id" in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_correct_then_revoke_a_certification(client, db_session, t):
    cert = factories.make_certification(t.supplier)
    url = f"{API}/{t.supplier.id}/certifications/{cert.id}"
    before = snapshot(db_session, t.supplier)
    response = client.patch(url, json={"number": "IATF-NEW-1", "scope": "压铸"}, headers=t.own)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["number"] == "IATF-NEW-1"
    assert_synced(db_session, t.supplier, before)

    before = snapshot(db_session, t.supplier)
    response = client.patch(url, json={"status": "revoked"}, headers=t.own)
    assert response.status_code == 200
    assert response.get_json()["status"] == "revoked"
    assert_synced(db_session, t.supplier, before)

    before = snapshot(db_session, t.supplier)
    assert client.patch(url, json={"status": "active"}, headers=t.own).status_code == 409
    assert client.patch(url, json={"number": "again"}, headers=t.own).status_code == 409
    assert_unchanged(db_session, t.supplier, before)
    revoked = client.get(
        f"{API}/{t.supplier.id}/certifications?status=revoked", headers=t.buyer
    ).get_json()
    assert [c["id"] for c in revoked["items"]] == [cert.id]
    assert client.get(url, headers=t.buyer).get_json()["status"] == "revoked"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_body"),
        ({"valid_until": None}, "valid_until"),
        ({"valid_from": "2100-01-01"}, "valid_until"),  # now after valid_until
        ({"level": "ASIL D"}, "level"),
        ({"standard": "iso-9001"}, "standard"),  # a different standard is a new certificate
        ({"status": "expired"}, "status"),
    ],
)
def test_bad_certification_patches_are_422(client, db_session, t, body, field):
    cert = factories.make_certification(t.supplier)
    before = snapshot(db_session, t.supplier)
    response = client.patch(
        f"{API}/{t.supplier.id}/certifications/{cert.id}", json=body, headers=t.own
    )
    assert response.status_code == 422, response.get_json()
    assert field in fields_of(response)
    assert_unchanged(db_session, t.supplier, before)


def test_other_tenants_certifications_are_404(client, db_session, t):
    theirs = factories.make_certification(t.other)
    response = client.patch(
        f"{API}/{t.supplier.id}/certifications/{theirs.id}",
        json={"status": "revoked"},
        headers=t.own,
    )
    assert response.status_code == 404
    assert (
        client.get(f"{API}/{t.supplier.id}/certifications/{theirs.id}", headers=t.own).status_code
        == 404
    )
    assert db_session.get(Certification, theirs.id).status.value == "active"


def test_every_supplier_route_is_documented(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path, method in [
        ("/api/v1/suppliers/{org_id}", "get"),
        ("/api/v1/suppliers/{org_id}/profile", "put"),
        ("/api/v1/suppliers/{org_id}/profile", "patch"),
        ("/api/v1/suppliers/{org_id}/sites", "post"),
        ("/api/v1/suppliers/{org_id}/sites", "get"),
        ("/api/v1/suppliers/{org_id}/sites/{site_id}", "patch"),
        ("/api/v1/suppliers/{org_id}/sites/{site_id}", "delete"),
        ("/api/v1/suppliers/{org_id}/capabilities", "post"),
        ("/api/v1/suppliers/{org_id}/capabilities/{capability_id}", "delete"),
        ("/api/v1/suppliers/{org_id}/certifications", "post"),
        ("/api/v1/suppliers/{org_id}/certifications/{certification_id}", "patch"),
        ("/api/v1/plants", "post"),
        ("/api/v1/plants", "get"),
        ("/api/v1/plants/{plant_id}", "get"),
    ]:
        operation = paths[path][method]
        assert operation["summary"], (path, method)
        assert "401" in operation["responses"], (path, method)
        if method in {"post", "put", "patch"}:
            assert "422" in operation["responses"]
            assert "requestBody" in operation


@pytest.mark.postgres
def test_concurrent_edits_get_distinct_versions(app, committed_db):
    """Edits of one supplier serialise on its row, so no two search syncs share a version."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import USE_POSTGRES

    if not USE_POSTGRES:
        pytest.skip("SQLite serialises writers by locking the whole file")
    supplier = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
    headers = factories.auth(factories.make_user(supplier))
    committed_db.commit()
    start, org_id = supplier.version, supplier.id

    def create(n: int) -> int:
        body = site_body(name=f"并发工厂 {n}")
        return (
            app.test_client().post(f"{API}/{org_id}/sites", json=body, headers=headers).status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(8)))
    assert statuses == [201] * 8
    committed_db.expire_all()
    assert committed_db.get(Organization, org_id).version == start + 8
    versions = [
        event.payload["version"]
        for event in committed_db.scalars(
            select(OutboxEvent).where(
                OutboxEvent.topic == OutboxTopic.SEARCH_SYNC, OutboxEvent.aggregate_id == org_id
            )
        )
    ]
    assert sorted(versions) == list(range(start + 1, start + 9))
