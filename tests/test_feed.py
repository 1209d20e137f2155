"""The supplier's demand feed, demand.published events and the hidden target price.

The feed must agree with the buyer's ranked matches for the same data: a supplier's feed holds a
demand exactly when the demand's matches hold the supplier, with the same rank and the same
explanation. Checked over a small market with suppliers that differ in distance, tier, category,
certifications, sites and visibility, and demands that differ in radius, category, standards,
tier weights and state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.extensions import db
from market.models import (
    Demand,
    DemandState,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxTopic,
    Role,
    User,
)
from tests import factories
from tests import test_demands as shared
from tests.test_demands import TODAY, counts

nothing_committed = shared.nothing_committed  # autouse: checks that nothing leaked

GUANGZHOU = factories.representative_point("440100")
FOSHAN = factories.representative_point("440600")
SHENZHEN = factories.representative_point("440300")
DONGGUAN = factories.representative_point("441900")
ZHUHAI = factories.representative_point("440400")
SHANTOU = factories.representative_point("440500")
ZHANJIANG = factories.representative_point("440800")
SHAOGUAN = factories.representative_point("440200")


def supplier(
    sites: list[tuple[float, float]],
    categories: list[str],
    *,
    tier: int = 1,
    certs: dict[str, int] | None = None,
    inactive_sites: list[tuple[float, float]] = (),  # type: ignore[assignment]
    **fields: Any,
) -> Organization:
    """A supplier with sites, capabilities and certifications valid for ``certs[s]`` days."""
    org = factories.make_org(OrgKind.SUPPLIER, tier=tier, **fields)
    for at in sites:
        factories.make_site(org, at=at)
    for at in inactive_sites:
        factories.make_site(org, at=at, active=False)
    for category in categories:
        factories.make_capability(org, category)
    for standard, days in (certs or {}).items():
        factories.make_certification(org, standard, valid_until=TODAY + timedelta(days=days))
    return org


@dataclass
class FeedWorld:
    oem: Organization
    buyer: User
    admin: User
    suppliers: list[Organization]
    users: dict[int, User]
    demands: list[Demand]
    closed: list[Demand]


def build_world() -> FeedWorld:
    oem = factories.make_org(OrgKind.OEM)
    other_oem = factories.make_org(OrgKind.OEM)
    gz, sz, st = (factories.make_site(oem, at=at) for at in (GUANGZHOU, SHENZHEN, SHANTOU))
    other_sz = factories.make_site(other_oem, at=SHENZHEN)
    iatf = {"iatf-16949": 730}
    suppliers = [
        supplier([GUANGZHOU], ["chassis.braking.foundation"], certs=iatf),
        supplier([FOSHAN, ZHANJIANG], ["chassis.braking.foundation"], tier=2, certs=iatf),
        # Its certificate expires before some demands' need_by.
        supplier([SHENZHEN], ["chassis.braking"], tier=3, certs={"iatf-16949": 70}),
        supplier([DONGGUAN], ["chassis"]),  # the parent category only
        supplier([SHANTOU], ["chassis.braking.foundation"], tier=2),  # no certificate
        supplier([GUANGZHOU], ["chassis.braking.foundation"], certs=iatf, listed=False),
        supplier([SHAOGUAN], ["body.seats"]),
        supplier(
            [ZHUHAI], ["chassis.braking.foundation"], tier=2, certs=iatf, inactive_sites=[GUANGZHOU]
        ),
        supplier([GUANGZHOU], ["chassis.braking.foundation", "body.seats"], tier=3),
        supplier([FOSHAN], ["chassis.braking.foundation"], tier=2),  # tied with the next one
        supplier([FOSHAN], ["chassis.braking.foundation"], tier=2),
    ]
    need = {days: TODAY + timedelta(days=days) for days in (30, 60, 90)}

    def demand(plant: Any, category: str, org: Organization = oem, **fields: Any) -> Demand:
        fields.setdefault("need_by", need[60])
        return factories.make_demand(org, plant, category=category, **fields)

    demands = [
        demand(gz, "chassis"),
        demand(gz, "chassis.braking", required_standards=["iatf-16949"], radius_km=150),
        demand(
            sz,
            "chassis.braking.foundation",
            required_standards=["iatf-16949"],
            need_by=need[90],
            tier_weights={"1": 0.6, "2": 1.0, "3": 0.8},
        ),
        demand(sz, "chassis.braking", required_standards=["iatf-16949"], need_by=need[30]),
        demand(st, "chassis", radius_km=500),
        demand(gz, "body", radius_km=300),
        demand(other_sz, "chassis.braking", org=other_oem, radius_km=50),
        demand(
            gz,
            "chassis.braking",
            radius_km=20,
            title="钛合金 rotors",
            description="Titanium rotors",
        ),
    ]
    closed = [
        demand(gz, "chassis", state=DemandState.DRAFT),
        demand(gz, "chassis", state=DemandState.CANCELLED),
        demand(gz, "chassis", state=DemandState.AWARDED),
        demand(gz, "chassis", need_by=TODAY - timedelta(days=1)),  # open, but past need_by
    ]
    return FeedWorld(
        oem=oem,
        buyer=factories.make_user(oem),
        admin=factories.make_user(role=Role.ADMIN),
        suppliers=suppliers,
        users={org.id: factories.make_user(org) for org in suppliers},
        demands=demands,
        closed=closed,
    )


@pytest.fixture
def world(db_session: Any) -> FeedWorld:
    return build_world()


def feed(client: FlaskClient, user: User, query: str = "") -> Any:
    """``GET /feed/demands`` as ``user``; 100 per page unless ``query`` says otherwise."""
    if "per_page=" not in query:
        query += "&per_page=100"
    return client.get(f"/api/v1/feed/demands?{query.lstrip('&')}", headers=factories.auth(user))


# --- the feed agrees with the matches ---------------------------------------------------------


def test_every_suppliers_feed_agrees_with_every_demands_matches(client, world):
    admin = factories.auth(world.admin)
    matches: dict[tuple[int, int], dict[str, Any]] = {}
    totals: dict[int, int] = {}
    for demand in world.demands:
        response = client.get(f"/api/v1/demands/{demand.id}/matches?per_page=100", headers=admin)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        totals[demand.id] = body["meta"]["total"]
        for item in body["items"]:
            matches[(item["supplier"]["id"], demand.id)] = item
    in_feeds: dict[tuple[int, int], dict[str, Any]] = {}
    for org in world.suppliers:
        response = feed(client, world.users[org.id])
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["meta"]["total"] == len(body["items"])
        for item in body["items"]:
            in_feeds[(org.id, item["demand"]["id"])] = item
            assert item["eligible_suppliers"] == totals[item["demand"]["id"]]
            assert item["quote_id"] is None

    assert set(in_feeds) == set(matches)
    for key, item in in_feeds.items():
        assert item["match"] == matches[key], key
    # Not vacuous: many pairs, ranks beyond the first, and demands nobody in the middle sees.
    assert len(matches) >= 20
    assert max(item["match"]["rank"] for item in in_feeds.values()) >= 4
    unlisted, far = world.suppliers[5], world.suppliers[4]
    assert not any(org_id == unlisted.id for org_id, _ in in_feeds)
    assert {d for org_id, d in in_feeds if org_id == far.id} == {world.demands[4].id}
    closed_ids = {d.id for d in world.closed}
    assert not any(d in closed_ids for _, d in in_feeds)


def test_the_feed_pages_sorts_and_searches(client, world):
    user = world.users[world.suppliers[0].id]
    whole = feed(client, user, "&sort=distance_km").get_json()["items"]
    distances = [item["match"]["distance_km"] for item in whole]
    assert distances == sorted(distances) and len(whole) >= 4
    pages = [
        feed(client, user, f"&sort=distance_km&per_page=2&page={n}").get_json()
        for n in (1, 2, 3, 4)
    ]
    assert [i for page in pages for i in page["items"]] == whole
    assert pages[0]["meta"] == {"page": 1, "per_page": 2, "total": len(whole), "pages": 3}
    newest = feed(client, user).get_json()["items"]
    assert [i["demand"]["id"] for i in newest] == sorted(
        (i["demand"]["id"] for i in whole), reverse=True
    )  # factory demands were never published: created order, newest first
    found = feed(client, user, "&q=钛合金").get_json()
    assert [i["demand"]["id"] for i in found["items"]] == [world.demands[7].id]
    assert feed(client, user, "&q=titanium rotor").get_json()["meta"]["total"] == 1
    assert feed(client, user, "&q=titanium seats").get_json()["meta"]["total"] == 0


def test_the_feed_shows_the_suppliers_active_quote(client, world):
    org = world.suppliers[0]
    demand = world.demands[0]
    from tests.test_quotes import make_quote

    quote = make_quote(demand, org, org_site(org))
    items = feed(client, world.users[org.id]).get_json()["items"]
    assert {i["demand"]["id"]: i["quote_id"] for i in items}[demand.id] == quote.id


def org_site(org: Organization) -> Any:
    return next(site for site in org.sites if site.active)


@pytest.mark.parametrize("who", ["buyer", "admin", "suspended", "pending"])
def test_only_active_suppliers_have_a_feed(client, world, who):
    if who == "buyer":
        user = world.buyer
    elif who == "admin":
        user = world.admin
    else:
        status = OrgStatus.SUSPENDED if who == "suspended" else OrgStatus.PENDING
        user = factories.make_user(factories.make_org(OrgKind.SUPPLIER, status=status))
    # A suspended organization's members cannot sign in at all.
    assert feed(client, user).status_code == (401 if who == "suspended" else 403)


@pytest.mark.parametrize(
    "query",
    ["&sort=rank", "&page=0", "&per_page=1000", "&q=" + "x" * 300, "&unknown=1", "&page=abc"],
)
def test_bad_feed_queries_are_422(client, world, query):
    response = feed(client, world.users[world.suppliers[0].id], query)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]


# --- demand.published -----------------------------------------------------------------------


def _published_events(demand_id: int) -> list[OutboxEvent]:
    return list(
        db.session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
            .order_by(OutboxEvent.id)
        ).all()
    )


@pytest.mark.parametrize("hidden", [False, True])
def test_publishing_tells_the_top_n_eligible_suppliers(
    client, world, app: Flask, monkeypatch, hidden
):
    monkeypatch.setitem(app.config, "DEMAND_NOTIFY_TOP_N", 3)
    draft = world.closed[0]
    draft.target_unit_price = Decimal("123.45")
    draft.hide_target_price = hidden
    db.session.flush()
    headers = factories.auth(world.buyer)
    response = client.post(f"/api/v1/demands/{draft.id}/publish", headers=headers)
    assert response.status_code == 200, response.get_json()
    ranked = client.get(f"/api/v1/demands/{draft.id}/matches", headers=headers).get_json()
    assert ranked["meta"]["total"] > 3
    events = _published_events(draft.id)
    assert [e.payload["kind"] for e in events] == ["demand.published"] * 3
    assert [e.aggregate_id for e in events] == [m["supplier"]["id"] for m in ranked["items"][:3]]
    for rank, (event, match) in enumerate(zip(events, ranked["items"], strict=False), start=1):
        data = event.payload["data"]
        assert (event.payload["subject_type"], event.payload["subject_id"]) == ("demand", draft.id)
        assert data["rank"] == rank == match["rank"]
        assert data["distance_km"] == round(match["distance_km"], 3)
        assert data["eligible_suppliers"] == ranked["meta"]["total"]
        assert (data["title"], data["category"]) == (draft.title, draft.category)
        assert data["need_by"] == draft.need_by.isoformat()
        assert data["target_unit_price"] == (None if hidden else "123.45")
        assert ("123.45" in json.dumps(event.payload)) is not hidden


def test_publishing_tells_nobody_when_nobody_is_eligible_or_n_is_zero(
    client, world, app: Flask, monkeypatch
):
    headers = factories.auth(world.buyer)
    lonely = factories.make_demand(
        world.oem, world.demands[0].plant, category="powertrain", state=DemandState.DRAFT
    )
    assert client.post(f"/api/v1/demands/{lonely.id}/publish", headers=headers).status_code == 200
    assert _published_events(lonely.id) == []
    monkeypatch.setitem(app.config, "DEMAND_NOTIFY_TOP_N", 0)
    draft = world.closed[0]
    assert client.post(f"/api/v1/demands/{draft.id}/publish", headers=headers).status_code == 200
    assert _published_events(draft.id) == []


def test_a_failed_publish_tells_nobody(client, world):
    before = counts()
    open_one = world.demands[0]
    response = client.post(
        f"/api/v1/demands/{open_one.id}/publish", headers=factories.auth(world.buyer)
    )
    assert response.status_code == 409
    assert counts() == before


# --- the hidden target price ----------------------------------------------------------------


def test_suppliers_never_see_a_hidden_target_price(client, world):
    buyer = factories.auth(world.buyer)
    body = {
        "plant_id": world.demands[0].plant_id,
        "category": "chassis.braking",
        "title": "Calipers, price hidden",
        "quantity": 100,
        "unit": "pcs",
        "need_by": (TODAY + timedelta(days=30)).isoformat(),
        "target_unit_price": "88.80",
        "hide_target_price": True,
    }
    created = client.post("/api/v1/demands", json=body, headers=buyer)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["target_unit_price"] == "88.80"
    assert created.get_json()["hide_target_price"] is True
    shown = client.post("/api/v1/demands", json={**body, "hide_target_price": False}, headers=buyer)
    hidden_id, shown_id = created.get_json()["id"], shown.get_json()["id"]
    for demand_id in (hidden_id, shown_id):
        assert client.post(f"/api/v1/demands/{demand_id}/publish", headers=buyer).status_code == 200

    org = world.suppliers[0]
    supplier = factories.auth(world.users[org.id])
    expected = {hidden_id: None, shown_id: "88.80"}
    for demand_id, price in expected.items():
        one = client.get(f"/api/v1/demands/{demand_id}", headers=supplier).get_json()
        assert one["target_unit_price"] == price
        assert (
            client.get(f"/api/v1/demands/{demand_id}", headers=buyer).get_json()[
                "target_unit_price"
            ]
            == "88.80"
        )
    listed = client.get("/api/v1/demands?per_page=100", headers=supplier).get_json()["items"]
    assert {d["id"]: d["target_unit_price"] for d in listed if d["id"] in expected} == expected
    items = feed(client, world.users[org.id]).get_json()["items"]
    assert {
        i["demand"]["id"]: i["demand"]["target_unit_price"]
        for i in items
        if i["demand"]["id"] in expected
    } == expected
    for user in (world.admin, factories.make_user(role=Role.AUDITOR)):
        one = client.get(f"/api/v1/demands/{hidden_id}", headers=factories.auth(user))
        assert one.get_json()["target_unit_price"] == "88.80"


def test_hide_target_price_is_set_on_drafts_only(client, world):
    buyer = factories.auth(world.buyer)
    draft = world.closed[0]
    response = client.patch(
        f"/api/v1/demands/{draft.id}", json={"hide_target_price": True}, headers=buyer
    )
    assert response.status_code == 200 and response.get_json()["hide_target_price"] is True
    before = counts()
    open_one = world.demands[0]
    response = client.patch(
        f"/api/v1/demands/{open_one.id}", json={"hide_target_price": True}, headers=buyer
    )
    assert response.status_code == 409
    bad = client.patch(
        f"/api/v1/demands/{draft.id}", json={"hide_target_price": "maybe"}, headers=buyer
    )
    assert bad.status_code == 422 and "hide_target_price" in bad.get_json()["error"]["fields"]
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(Demand, open_one.id).hide_target_price is False
