"""Auditors' authorities and jurisdictions: the API, the CLI, and the one filter every auditor
route uses (market.permissions)."""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from market.models import AuditLogEntry, Organization, OrgKind, Role
from market.permissions import (
    auditor_city_prefixes,
    city_in_jurisdiction,
    jurisdiction_condition,
    jurisdiction_prefixes,
)
from tests import factories
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)


@pytest.fixture
def admin_headers(env: Env) -> dict[str, str]:
    with env.db():
        return factories.auth(make_user(role=Role.ADMIN))


def test_admins_manage_authorities_and_their_auditors(env, admin_headers):
    c = env.client()
    response = c.post(
        "/api/v1/authorities",
        json={"name": "广州市财政局", "city_codes": ["440100", "440100", "441800"]},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.get_json()
    authority = response.get_json()
    assert authority["city_codes"] == ["440100", "441800"]  # de-duplicated, sorted
    url = f"/api/v1/authorities/{authority['id']}"
    duplicate = c.post(
        "/api/v1/authorities",
        json={"name": "广州市财政局", "city_codes": ["44"]},
        headers=admin_headers,
    )
    assert duplicate.status_code == 409 and "name" in duplicate.get_json()["error"]["fields"]
    with env.db():
        auditor = make_user(role=Role.AUDITOR)
        buyer = make_user(factories.make_org(OrgKind.OEM))
    response = c.put(f"{url}/auditors/{auditor.id}", headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["authority_id"] == authority["id"]
    response = c.put(f"{url}/auditors/{buyer.id}", headers=admin_headers)
    assert response.status_code == 422
    detail = c.get(url, headers=admin_headers).get_json()
    assert [a["id"] for a in detail["auditors"]] == [auditor.id]
    response = c.patch(url, json={"city_codes": ["44"]}, headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["city_codes"] == ["44"]
    assert c.delete(f"{url}/auditors/{auditor.id}", headers=admin_headers).status_code == 204
    assert c.delete(f"{url}/auditors/{auditor.id}", headers=admin_headers).status_code == 404
    with env.db() as session:
        actions = session.scalars(
            select(AuditLogEntry.action).where(
                AuditLogEntry.action.like("a%"), AuditLogEntry.organization_id.is_(None)
            )
        ).all()
    assert {
        "authority.created",
        "auditor.attached",
        "authority.updated",
        "auditor.detached",
    } <= set(actions)


@pytest.mark.parametrize(
    "codes",
    [[], ["430100"], ["440000"], ["4401"], ["44x"], ["440100", "999999"], "44", [44]],
)
def test_a_jurisdiction_outside_guangdong_is_refused(env, admin_headers, codes: Any):
    response = env.client().post(
        "/api/v1/authorities", json={"name": "某局", "city_codes": codes}, headers=admin_headers
    )
    assert response.status_code == 422
    assert "city_codes" in response.get_json()["error"]["fields"]


def test_auditors_see_organisations_in_their_jurisdiction_only(env):
    with env.db():
        guangzhou = factories.make_org(OrgKind.OEM, city_code="440100")
        shenzhen = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
        city = factories.auth(
            make_user(role=Role.AUDITOR, authority=factories.make_authority(["440100"]))
        )
        province = factories.auth(make_user(role=Role.AUDITOR))
        unattached = factories.auth(make_user(role=Role.AUDITOR, authority=None))
    c = env.client()

    def listed(headers: dict[str, str]) -> set[int]:
        response = c.get("/api/v1/organizations?per_page=100", headers=headers)
        assert response.status_code == 200
        return {o["id"] for o in response.get_json()["items"]}

    assert guangzhou.id in listed(city) and shenzhen.id not in listed(city)
    assert {guangzhou.id, shenzhen.id} <= listed(province)
    assert listed(unattached) == set()
    assert c.get(f"/api/v1/organizations/{guangzhou.id}", headers=city).status_code == 200
    assert c.get(f"/api/v1/organizations/{shenzhen.id}", headers=city).status_code == 404
    assert c.get(f"/api/v1/organizations/{shenzhen.id}", headers=province).status_code == 200
    assert c.get(f"/api/v1/organizations/{guangzhou.id}", headers=unattached).status_code == 404


def test_the_jurisdiction_helpers(env):
    assert jurisdiction_prefixes(["44"]) == ("44",)
    assert jurisdiction_prefixes(["440100", "442000"]) == ("4401", "4420")
    assert city_in_jurisdiction("440106", ("4401",))
    assert not city_in_jurisdiction("440300", ("4401",))
    assert city_in_jurisdiction("440300", None)
    assert not city_in_jurisdiction("440100", ())
    assert not city_in_jurisdiction(None, ("44",))
    with env.db() as session:
        admin = make_user(role=Role.ADMIN)
        auditor = make_user(role=Role.AUDITOR, authority=factories.make_authority(["440300"]))
        buyer = make_user(factories.make_org(OrgKind.OEM))
        assert auditor_city_prefixes(admin) is None
        assert auditor_city_prefixes(auditor) == ("4403",)
        assert auditor_city_prefixes(buyer) == ()
        in_shenzhen = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
        in_zhongshan = factories.make_org(OrgKind.SUPPLIER, city_code="442000")
        ids = {in_shenzhen.id, in_zhongshan.id}

        def selected(prefixes: tuple[str, ...] | None) -> set[int]:
            condition = jurisdiction_condition(Organization.city_code, prefixes)
            query = select(Organization.id).where(Organization.id.in_(ids))
            if condition is not None:
                query = query.where(condition)
            return set(session.scalars(query))

        assert selected(None) == ids
        assert selected(("4403",)) == {in_shenzhen.id}
        assert selected(("44",)) == ids
        assert selected(()) == set()
        # Prefixes are matched literally (LIKE wildcards in a prefix would match nothing).
        assert selected(("44%",)) == set()


def run_cli(env: Env, *args: str, stdin: str | None = None) -> Any:
    return env.app.test_cli_runner().invoke(args=["users", *args], input=stdin)


def test_the_cli_manages_authorities_and_jurisdictions(env):
    result = run_cli(env, "authority-create", "深圳市财政局", "--city-codes", "440300, 441900")
    assert result.exit_code == 0, result.output
    assert "440300,441900" in result.output
    assert run_cli(env, "authority-create", "坏局", "--city-codes", "430100").exit_code != 0
    result = run_cli(
        env,
        "create",
        "--email",
        "shen@gov.test",
        "--role",
        "auditor",
        "--authority",
        "深圳市财政局",
        "--password-stdin",
        stdin="plum orchard lighthouse 9\n",
    )
    assert result.exit_code == 0, result.output
    result = run_cli(env, "authority-set", "深圳市财政局", "--city-codes", "44", "--rename", "省厅")
    assert result.exit_code == 0, result.output
    listed = run_cli(env, "authority-list")
    assert listed.exit_code == 0 and "省厅\t44\tauditors=1" in listed.output
    assert run_cli(env, "authority-create", "广州市财政局", "--city-codes", "440100").exit_code == 0
    result = run_cli(env, "set-authority", "shen@gov.test", "广州市财政局")
    assert result.exit_code == 0, result.output
    users = run_cli(env, "list", "--role", "auditor")
    assert "shen@gov.test" in users.output and "authority=" in users.output
    assert run_cli(env, "set-authority", "nobody@gov.test", "广州市财政局").exit_code != 0


def test_auditors_see_plants_and_demands_in_their_jurisdiction_only(env):
    with env.db():
        oem = factories.make_org(OrgKind.OEM, city_code="440100")
        guangzhou_plant = factories.make_site(oem, city_code="440100")
        shenzhen_plant = factories.make_site(oem, at=factories.SHENZHEN, city_code="440300")
        in_guangzhou = factories.make_demand(oem, guangzhou_plant)
        in_shenzhen = factories.make_demand(oem, shenzhen_plant)
        city = factories.auth(
            make_user(role=Role.AUDITOR, authority=factories.make_authority(["440100"]))
        )
        province = factories.auth(make_user(role=Role.AUDITOR))
    c = env.client()

    def ids(url: str, headers: dict[str, str]) -> set[int]:
        response = c.get(url, headers=headers)
        assert response.status_code == 200, response.get_json()
        return {item["id"] for item in response.get_json()["items"]}

    plants = f"/api/v1/plants?organization_id={oem.id}"
    assert ids(plants, city) == {guangzhou_plant.id}
    assert ids(plants, province) == {guangzhou_plant.id, shenzhen_plant.id}
    assert c.get(f"/api/v1/plants/{shenzhen_plant.id}", headers=city).status_code == 404
    assert c.get(f"/api/v1/plants/{guangzhou_plant.id}", headers=city).status_code == 200
    demands = ids("/api/v1/demands?per_page=100", city)
    assert in_guangzhou.id in demands and in_shenzhen.id not in demands
    assert {in_guangzhou.id, in_shenzhen.id} <= ids("/api/v1/demands?per_page=100", province)
    assert c.get(f"/api/v1/demands/{in_shenzhen.id}", headers=city).status_code == 404
    assert c.get(f"/api/v1/demands/{in_guangzhou.id}", headers=city).status_code == 200
