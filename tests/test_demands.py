"""Demands (RFQs): posting, visibility, the lifecycle, auto-close, listing, bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from market.clock import business_today
from market.extensions import db
from market.models import (
    Demand,
    DemandState,
    IdempotencyRecord,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    Purchase,
    Quote,
    Role,
    Site,
    User,
)
from market.services.demands import close_expired_demands
from tests import factories

TODAY = business_today()
HUGE_ID = 99999999999999999999


# --- a small market shared by the marketplace tests -----------------------------------------------


@dataclass
class Market:
    oem: Organization
    plant: Site
    buyer: User
    supplier: Organization
    site: Site
    supplier_user: User
    other_oem: Organization
    other_plant: Site
    other_buyer: User
    other_supplier: Organization
    other_site: Site
    other_supplier_user: User
    auditor: User
    admin: User
    tokens: dict[int, dict[str, str]] = field(default_factory=dict)

    def headers(self, user: User) -> dict[str, str]:
        """Bearer headers for ``user`` (one token per user and test)."""
        if user.id not in self.tokens:
            self.tokens[user.id] = factories.auth(user)
        return self.tokens[user.id]


def build_market() -> Market:
    """Two OEMs with a plant in Guangzhou; two suppliers in Shenzhen; only the first qualifies."""
    oem = factories.make_org(OrgKind.OEM)
    other_oem = factories.make_org(OrgKind.OEM)
    supplier = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
    other_supplier = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
    site = factories.make_site(supplier, at=factories.SHENZHEN)
    other_site = factories.make_site(other_supplier, at=factories.SHENZHEN)
    factories.make_capability(supplier, "chassis.braking.foundation")
    factories.make_certification(supplier, "iatf-16949")
    return Market(
        oem=oem,
        plant=factories.make_site(oem),
        buyer=factories.make_user(oem),
        supplier=supplier,
        site=site,
        supplier_user=factories.make_user(supplier),
        other_oem=other_oem,
        other_plant=factories.make_site(other_oem),
        other_buyer=factories.make_user(other_oem),
        other_supplier=other_supplier,
        other_site=other_site,
        other_supplier_user=factories.make_user(other_supplier),
        auditor=factories.make_user(role=Role.AUDITOR),
        admin=factories.make_user(role=Role.ADMIN),
    )


def counts() -> dict[str, int]:
    """Row counts of every table a marketplace write touches."""
    models = {
        "demands": Demand,
        "quotes": Quote,
        "purchases": Purchase,
        "outbox": OutboxEvent,
        "idempotency": IdempotencyRecord,
        "entries": LedgerEntry,
    }
    return {
        name: db.session.scalar(select(func.count()).select_from(model)) or 0
        for name, model in models.items()
    }


def error_fields(response: Any) -> dict[str, Any]:
    return response.get_json()["error"].get("fields") or {}


def committed_row_counts(app: Flask) -> dict[str, int]:
    """Rows per table as another connection sees them: what is really committed."""
    with app.app_context(), db.engine.connect() as connection:
        counts = select(
            *(
                select(func.count()).select_from(table).scalar_subquery().label(table.name)
                for table in db.metadata.sorted_tables
            )
        )
        return dict(connection.execute(counts).one()._mapping)


@pytest.fixture(autouse=True)
def nothing_committed(request: pytest.FixtureRequest, app: Flask) -> Iterator[None]:
    """After each test (and its rollback), the run's database holds what it held before.

    The tests run in conftest's ``db_session`` (``client`` uses it), whose transaction is rolled
    back; this checks it, from outside, with a query on another connection. ``committed_db``
    tests commit for real and empty every table afterwards. Set up before the test's other
    fixtures, so it is torn down after them. Modules import it to use it.
    """
    before = committed_row_counts(app)
    yield
    after = committed_row_counts(app)
    if "committed_db" in request.fixturenames:
        before = dict.fromkeys(before, 0)
    leaked = {name: (before[name], n) for name, n in after.items() if n != before[name]}
    assert not leaked, f"rows left committed by the test (table: (before, after)): {leaked}"


@pytest.fixture
def market(db_session: Any) -> Market:
    return build_market()


def demand_body(market: Market, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "plant_id": market.plant.id,
        "category": "chassis.braking",
        "title": "Brake calipers for the 2027 model year",
        "description": "Front calipers, 2 pistons.\nPPAP level 3.",
        "quantity": 20000,
        "unit": "pcs",
        "target_unit_price": "185.50",
        "required_standards": ["iatf-16949"],
        "need_by": (TODAY + timedelta(days=60)).isoformat(),
        "tier_weights": {"1": 1.0, "2": 0.9},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def post_demand(client: Any, market: Market, user: User | None = None, **changes: Any) -> Any:
    return client.post(
        "/api/v1/demands",
        json=demand_body(market, **changes),
        headers=market.headers(user or market.buyer),
    )


# --- creating -----------------------------------------------------------------------------------


def test_a_buyer_drafts_a_demand_for_its_plant(client, market):
    response = post_demand(client, market)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["state"] == "draft"
    assert body["organization_id"] == market.oem.id
    assert body["plant"]["id"] == market.plant.id
    assert body["target_unit_price"] == "185.50"
    assert body["radius_km"] == 200  # the default
    assert body["required_standards"] == ["iatf-16949"]
    assert body["tier_weights"] == {"1": 1.0, "2": 0.9}
    assert body["description"] == "Front calipers, 2 pistons.\nPPAP level 3."
    demand = db.session.get(Demand, body["id"])
    assert demand.created_by_id == market.buyer.id
    assert demand.state is DemandState.DRAFT


def test_free_text_is_stored_verbatim_not_interpreted(client, market):
    sql = "Calipers'; DROP TABLE demands; --"
    before = counts()
    response = post_demand(client, market, title=sql, unit="件")
    assert response.status_code == 201
    assert response.get_json()["title"] == sql
    assert counts() == before | {"demands": before["demands"] + 1}


def test_a_pending_organization_cannot_post_demands(client, market):
    pending = factories.make_org(OrgKind.OEM, status=OrgStatus.PENDING)
    plant = factories.make_site(pending)
    buyer = factories.make_user(pending)
    before = counts()
    response = client.post(
        "/api/v1/demands",
        json=demand_body(market, plant_id=plant.id),
        headers=market.headers(buyer),
    )
    assert response.status_code == 403
    assert "verification" in response.get_json()["error"]["message"]
    assert counts() == before


@pytest.mark.parametrize("who", ["supplier_user", "auditor", "admin"])
def test_only_buyers_post_demands(client, market, who):
    before = counts()
    response = post_demand(client, market, user=getattr(market, who))
    assert response.status_code == 403
    assert counts() == before


def test_another_organizations_plant_is_refused(client, market):
    before = counts()
    response = post_demand(client, market, plant_id=market.other_plant.id)
    assert response.status_code == 422
    assert "plant_id" in error_fields(response)
    assert counts() == before


def test_an_inactive_plant_is_refused(client, market):
    market.plant.active = False
    db.session.flush()
    response = post_demand(client, market)
    assert response.status_code == 422
    assert "plant_id" in error_fields(response)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"plant_id": HUGE_ID}, "plant_id"),
        ({"plant_id": 0}, "plant_id"),
        ({"plant_id": "1"}, "plant_id"),
        ({"plant_id": ...}, "plant_id"),
        ({"category": "chassis.warp-drive"}, "category"),
        ({"category": ""}, "category"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "line one\r\nINFO forged log line"}, "title"),
        ({"title": "<script>alert(1)</script>"}, "title"),
        ({"title": None}, "title"),
        ({"description": "<img src=x onerror=alert(1)>"}, "description"),
        ({"description": "x" * 5001}, "description"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": 10_000_001}, "quantity"),
        ({"quantity": "100"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"unit": ""}, "unit"),
        ({"target_unit_price": 185.5}, "target_unit_price"),
        ({"target_unit_price": "0"}, "target_unit_price"),
        ({"target_unit_price": "-1.00"}, "target_unit_price"),
        ({"target_unit_price": "NaN"}, "target_unit_price"),
        ({"target_unit_price": "1.005"}, "target_unit_price"),
        ({"required_standards": ["iso-0000"]}, "required_standards"),
        ({"required_standards": ["iatf-16949", "iatf-16949"]}, "required_standards"),
        ({"required_standards": ["iatf-16949"] * 11}, "required_standards"),
        ({"required_standards": "iatf-16949"}, "required_standards"),
        ({"need_by": (TODAY - timedelta(days=1)).isoformat()}, "need_by"),
        ({"need_by": "2027-02-30"}, "need_by"),
        ({"need_by": "next week"}, "need_by"),
        ({"need_by": (TODAY + timedelta(days=366 * 6)).isoformat()}, "need_by"),
        ({"radius_km": 0}, "radius_km"),
        ({"radius_km": 501}, "radius_km"),
        ({"radius_km": -200}, "radius_km"),
        ({"tier_weights": {"4": 0.5}}, "tier_weights"),
        ({"tier_weights": {"1": 1.5}}, "tier_weights"),
        ({"tier_weights": {"1": -0.1}}, "tier_weights"),
        ({"tier_weights": {"1": "high"}}, "tier_weights"),
        ({"tier_weights": [1, 0.8, 0.6]}, "tier_weights"),
        # Mass assignment: nobody sets these through the body.
        ({"state": "open"}, "state"),
        ({"organization_id": 1}, "organization_id"),
        ({"status": "awarded"}, "status"),
        ({"created_by_id": 1}, "created_by_id"),
        ({"id": 1}, "id"),
    ],
)
def test_bad_demand_fields_are_422_and_nothing_is_written(client, market, changes, field):
    before = counts()
    response = post_demand(client, market, **changes)
    assert response.status_code == 422, response.get_json()
    assert field in error_fields(response), response.get_json()
    assert counts() == before


@pytest.mark.parametrize(
    "changes",
    [
        {"required_standards": [1] * 80_000},  # just under the body size limit
        {"tier_weights": {f"t{i}": 1 for i in range(20_000)}},
    ],
)
def test_huge_collections_get_one_short_error(client, market, changes):
    before = counts()
    response = post_demand(client, market, **changes)
    assert response.status_code == 422
    (field,) = changes
    assert error_fields(response)[field] == [error_fields(response)[field][0]]
    assert len(response.data) < 2000
    assert counts() == before


def test_a_huge_float_tier_weight_is_refused(client, market):
    raw = demand_body(market)
    text = (
        __import__("json").dumps(raw).replace('"tier_weights": {', '"tier_weights": {"3": 1e309, ')
    )
    response = client.post(
        "/api/v1/demands",
        data=text,
        content_type="application/json",
        headers=market.headers(market.buyer),
    )
    assert response.status_code == 422
    assert "tier_weights" in error_fields(response)


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("[1, 2, 3]", "application/json", 422),
        ('"a string"', "application/json", 422),
        ("plant_id=1", "text/plain", 415),
        ("{", "application/json", 400),
    ],
)
def test_bodies_that_are_not_an_object_are_refused(client, market, data, content_type, status):
    before = counts()
    response = client.post(
        "/api/v1/demands",
        data=data,
        content_type=content_type,
        headers=market.headers(market.buyer),
    )
    assert response.status_code == status
    assert counts() == before


# --- reading ------------------------------------------------------------------------------------


def test_who_sees_a_draft_and_an_open_demand(client, market):
    draft = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    open_ = factories.make_demand(market.oem, market.plant, state=DemandState.OPEN)
    expectations = {
        market.buyer: (200, 200),
        market.auditor: (200, 200),
        market.admin: (200, 200),
        market.supplier_user: (404, 200),
        market.other_supplier_user: (404, 200),
        market.other_buyer: (404, 404),
    }
    for user, (draft_status, open_status) in expectations.items():
        headers = market.headers(user)
        assert client.get(f"/api/v1/demands/{draft.id}", headers=headers).status_code == (
            draft_status
        ), user.role
        assert client.get(f"/api/v1/demands/{open_.id}", headers=headers).status_code == (
            open_status
        ), user.role


def test_a_supplier_still_sees_a_demand_it_quoted_on_after_the_award(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.AWARDED)
    db.session.add(
        Quote(
            demand=demand,
            organization=market.supplier,
            site=market.site,
            unit_price=factories.Decimal("1.00"),
            quantity=1,
            lead_time_days=1,
            valid_until=TODAY,
        )
    )
    db.session.flush()
    mine = client.get(f"/api/v1/demands/{demand.id}", headers=market.headers(market.supplier_user))
    assert mine.status_code == 200
    other = client.get(
        f"/api/v1/demands/{demand.id}", headers=market.headers(market.other_supplier_user)
    )
    assert other.status_code == 404


@pytest.mark.parametrize("demand_id", [HUGE_ID, 2**31, 0, 123456789])
def test_unknown_and_overflowing_ids_are_404(client, market, demand_id):
    headers = market.headers(market.buyer)
    assert client.get(f"/api/v1/demands/{demand_id}", headers=headers).status_code == 404
    response = client.post(f"/api/v1/demands/{demand_id}/publish", headers=headers)
    assert response.status_code == 404
    response = client.patch(f"/api/v1/demands/{demand_id}", json={"title": "x"}, headers=headers)
    assert response.status_code == 404


def test_anonymous_callers_are_401(client, market):
    demand = factories.make_demand(market.oem, market.plant)
    assert client.get("/api/v1/demands").status_code == 401
    assert client.get(f"/api/v1/demands/{demand.id}").status_code == 401
    assert client.post("/api/v1/demands", json=demand_body(market)).status_code == 401


# --- editing and the lifecycle ----------------------------------------------------------------------


def test_a_draft_is_patched_partially(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT, radius_km=150)
    response = client.patch(
        f"/api/v1/demands/{demand.id}",
        json={"title": "Brake discs", "tier_weights": None, "target_unit_price": "9.90"},
        headers=market.headers(market.buyer),
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["title"] == "Brake discs"
    assert body["target_unit_price"] == "9.90"
    assert body["tier_weights"] is None
    assert body["radius_km"] == 150  # untouched: no default is applied on PATCH
    assert body["state"] == "draft"


def test_patching_the_plant_checks_it_is_ours(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    second = factories.make_site(market.oem, at=factories.SHENZHEN)
    headers = market.headers(market.buyer)
    refused = client.patch(
        f"/api/v1/demands/{demand.id}", json={"plant_id": market.other_plant.id}, headers=headers
    )
    assert refused.status_code == 422
    moved = client.patch(
        f"/api/v1/demands/{demand.id}", json={"plant_id": second.id}, headers=headers
    )
    assert moved.status_code == 200
    assert moved.get_json()["plant"]["id"] == second.id


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"state": "open"},
        {"organization_id": 999},
        {"title": None},
        {"need_by": (TODAY - timedelta(days=1)).isoformat()},
        {"quantity": 0},
    ],
)
def test_bad_patches_change_nothing(client, market, body):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    before = (demand.title, demand.quantity, demand.need_by, demand.state)
    response = client.patch(
        f"/api/v1/demands/{demand.id}", json=body, headers=market.headers(market.buyer)
    )
    assert response.status_code == 422
    db.session.expire_all()
    again = db.session.get(Demand, demand.id)
    assert (again.title, again.quantity, again.need_by, again.state) == before


def test_published_demands_cannot_be_edited(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.OPEN)
    response = client.patch(
        f"/api/v1/demands/{demand.id}", json={"title": "x"}, headers=market.headers(market.buyer)
    )
    assert response.status_code == 409
    assert "only drafts" in response.get_json()["error"]["message"]


def test_another_buyer_cannot_touch_a_demand(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    headers = market.headers(market.other_buyer)
    assert (
        client.patch(
            f"/api/v1/demands/{demand.id}", json={"title": "x"}, headers=headers
        ).status_code
        == 404
    )
    for action in ("publish", "close", "cancel"):
        response = client.post(f"/api/v1/demands/{demand.id}/{action}", headers=headers)
        assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Demand, demand.id).state is DemandState.DRAFT


def test_publish_opens_a_draft_once(client, market):
    demand = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    headers = market.headers(market.buyer)
    response = client.post(f"/api/v1/demands/{demand.id}/publish", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["state"] == "open"
    assert response.get_json()["published_at"]
    again = client.post(f"/api/v1/demands/{demand.id}/publish", headers=headers)
    assert again.status_code == 409
    assert "open" in again.get_json()["error"]["message"]


def test_a_draft_whose_need_by_has_passed_cannot_be_published(client, market):
    demand = factories.make_demand(
        market.oem, market.plant, state=DemandState.DRAFT, need_by=TODAY - timedelta(days=1)
    )
    response = client.post(
        f"/api/v1/demands/{demand.id}/publish", headers=market.headers(market.buyer)
    )
    assert response.status_code == 422
    assert "need_by" in error_fields(response)
    db.session.expire_all()
    assert db.session.get(Demand, demand.id).state is DemandState.DRAFT


TRANSITIONS = {
    # (state, action): expected status
    (DemandState.DRAFT, "publish"): 200,
    (DemandState.DRAFT, "close"): 409,
    (DemandState.DRAFT, "cancel"): 200,
    (DemandState.OPEN, "publish"): 409,
    (DemandState.OPEN, "close"): 200,
    (DemandState.OPEN, "cancel"): 200,
    (DemandState.AWARDED, "publish"): 409,
    (DemandState.AWARDED, "close"): 409,
    (DemandState.AWARDED, "cancel"): 409,
    (DemandState.CLOSED, "publish"): 409,
    (DemandState.CLOSED, "close"): 409,
    (DemandState.CLOSED, "cancel"): 409,
    (DemandState.CANCELLED, "publish"): 409,
    (DemandState.CANCELLED, "close"): 409,
    (DemandState.CANCELLED, "cancel"): 409,
}
TARGET = {"publish": "open", "close": "closed", "cancel": "cancelled"}


@pytest.mark.parametrize(("state", "action"), list(TRANSITIONS), ids=lambda v: str(v))
def test_only_legal_transitions(client, market, state, action):
    demand = factories.make_demand(market.oem, market.plant, state=state)
    response = client.post(
        f"/api/v1/demands/{demand.id}/{action}", headers=market.headers(market.buyer)
    )
    expected = TRANSITIONS[(state, action)]
    assert response.status_code == expected, response.get_json()
    db.session.expire_all()
    stored = db.session.get(Demand, demand.id).state
    if expected == 200:
        assert response.get_json()["state"] == TARGET[action]
        assert stored.value == TARGET[action]
    else:
        assert stored is state


def test_an_admin_may_close_and_cancel_but_not_publish(client, market):
    first = factories.make_demand(market.oem, market.plant)
    second = factories.make_demand(market.oem, market.plant)
    draft = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    headers = market.headers(market.admin)
    assert client.post(f"/api/v1/demands/{first.id}/close", headers=headers).status_code == 200
    assert client.post(f"/api/v1/demands/{second.id}/cancel", headers=headers).status_code == 200
    assert client.post(f"/api/v1/demands/{draft.id}/publish", headers=headers).status_code == 403


def test_the_auditor_is_read_only(client, market):
    demand = factories.make_demand(market.oem, market.plant)
    headers = market.headers(market.auditor)
    for action in ("publish", "close", "cancel"):
        assert client.post(
            f"/api/v1/demands/{demand.id}/{action}", headers=headers
        ).status_code == (403)


# --- auto-close after need_by ---------------------------------------------------------------------


def test_an_open_demand_past_need_by_reads_as_closed_and_takes_no_action(client, market):
    expired = factories.make_demand(
        market.oem, market.plant, state=DemandState.OPEN, need_by=TODAY - timedelta(days=1)
    )
    headers = market.headers(market.buyer)
    assert client.get(f"/api/v1/demands/{expired.id}", headers=headers).get_json()["state"] == (
        "closed"
    )
    closed = client.get("/api/v1/demands?state=closed", headers=headers).get_json()
    assert [d["id"] for d in closed["items"]] == [expired.id]
    assert client.get("/api/v1/demands?state=open", headers=headers).get_json()["items"] == []
    # Suppliers no longer see it, and it cannot be closed or awarded again.
    supplier = market.headers(market.supplier_user)
    assert client.get(f"/api/v1/demands/{expired.id}", headers=supplier).status_code == 404
    assert client.post(f"/api/v1/demands/{expired.id}/close", headers=headers).status_code == 409


def test_close_expired_demands_closes_only_open_demands_past_need_by(market):
    yesterday = TODAY - timedelta(days=1)
    expired = factories.make_demand(market.oem, market.plant, need_by=yesterday)
    due_today = factories.make_demand(market.oem, market.plant, need_by=TODAY)
    old_draft = factories.make_demand(
        market.oem, market.plant, state=DemandState.DRAFT, need_by=yesterday
    )
    assert close_expired_demands(TODAY) == 1
    db.session.expire_all()
    assert db.session.get(Demand, expired.id).state is DemandState.CLOSED
    assert db.session.get(Demand, expired.id).closed_at is not None
    assert db.session.get(Demand, due_today.id).state is DemandState.OPEN
    assert db.session.get(Demand, old_draft.id).state is DemandState.DRAFT
    assert close_expired_demands(TODAY) == 0  # idempotent


def test_the_close_expired_command(app, market):
    demand = factories.make_demand(market.oem, market.plant, need_by=TODAY + timedelta(days=3))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demands", "close-expired"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Closed \d+ expired demand\(s\)", result.output)
    db.session.expire_all()
    assert db.session.get(Demand, demand.id).state is DemandState.OPEN
    later = (TODAY + timedelta(days=5)).isoformat()
    result = runner.invoke(args=["demands", "close-expired", "--today", later])
    assert result.exit_code == 0, result.output
    assert f"need_by before {later}" in result.output
    db.session.expire_all()
    assert db.session.get(Demand, demand.id).state is DemandState.CLOSED
    bad = runner.invoke(args=["demands", "close-expired", "--today", "2026-02-30"])
    assert bad.exit_code != 0


# --- listing ------------------------------------------------------------------------------------


def test_listing_is_scoped_paginated_filtered_and_sorted(client, market):
    mine = [
        factories.make_demand(
            market.oem, market.plant, category="chassis.braking", need_by=TODAY + timedelta(days=d)
        )
        for d in (30, 10, 20)
    ]
    draft = factories.make_demand(market.oem, market.plant, state=DemandState.DRAFT)
    seats = factories.make_demand(market.oem, market.plant, category="body.seats")
    theirs = factories.make_demand(market.other_oem, market.other_plant, category="chassis")

    buyer = market.headers(market.buyer)
    page = client.get("/api/v1/demands?per_page=2&page=1", headers=buyer).get_json()
    assert page["meta"] == {"page": 1, "per_page": 2, "total": 5, "pages": 3}
    assert [d["id"] for d in page["items"]] == [seats.id, draft.id]  # default: newest first
    all_mine = client.get("/api/v1/demands?per_page=100", headers=buyer).get_json()["items"]
    assert theirs.id not in {d["id"] for d in all_mine}

    by_need = client.get(
        "/api/v1/demands?category=chassis&state=open&sort=need_by", headers=buyer
    ).get_json()
    assert [d["id"] for d in by_need["items"]] == [mine[1].id, mine[2].id, mine[0].id]
    desc = client.get(
        "/api/v1/demands?category=chassis.braking&state=open&sort=-need_by", headers=buyer
    ).get_json()
    assert [d["id"] for d in desc["items"]] == [mine[0].id, mine[2].id, mine[1].id]

    supplier = market.headers(market.supplier_user)
    seen = client.get(f"/api/v1/demands?plant_id={market.plant.id}", headers=supplier).get_json()
    assert {d["id"] for d in seen["items"]} == {m.id for m in mine} | {seats.id}  # no draft
    elsewhere = client.get(
        f"/api/v1/demands?plant_id={market.other_plant.id}", headers=supplier
    ).get_json()
    assert [d["id"] for d in elsewhere["items"]] == [theirs.id]
    by_oem = client.get(
        f"/api/v1/demands?oem={market.other_oem.id}", headers=market.headers(market.auditor)
    ).get_json()
    assert [d["id"] for d in by_oem["items"]] == [theirs.id]
    by_plant = client.get(
        f"/api/v1/demands?plant_id={market.other_plant.id}", headers=market.headers(market.admin)
    ).get_json()
    assert [d["id"] for d in by_plant["items"]] == [theirs.id]


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "per_page=0",
        "per_page=-5",
        "per_page=100000",
        "page=abc",
        "sort=title",
        "sort=id;DROP TABLE demands",
        "state=pending",
        "category=*",
        "oem=99999999999999999999",
        "plant_id=-1",
        "unknown=1",
        "cursor=eyJpZCI6MX0",
    ],
)
def test_bad_list_queries_are_422(client, market, query):
    response = client.get(f"/api/v1/demands?{query}", headers=market.headers(market.buyer))
    assert response.status_code == 422, (query, response.get_json())


def test_a_page_past_the_end_is_empty_not_an_error(client, market):
    factories.make_demand(market.oem, market.plant)
    body = client.get("/api/v1/demands?page=500", headers=market.headers(market.buyer)).get_json()
    assert body["items"] == []
    assert body["meta"]["total"] == 1


# --- the API document ---------------------------------------------------------------------------


MARKETPLACE_OPERATIONS = {
    ("post", "/api/v1/demands"): {"201", "403", "422"},
    ("get", "/api/v1/demands"): {"200", "422"},
    ("get", "/api/v1/demands/{demand_id}"): {"200", "404"},
    ("patch", "/api/v1/demands/{demand_id}"): {"200", "404", "409", "422"},
    ("post", "/api/v1/demands/{demand_id}/publish"): {"200", "404", "409"},
    ("post", "/api/v1/demands/{demand_id}/close"): {"200", "404", "409"},
    ("post", "/api/v1/demands/{demand_id}/cancel"): {"200", "404", "409"},
    ("post", "/api/v1/demands/{demand_id}/quotes"): {"201", "403", "404", "409", "422"},
    ("get", "/api/v1/demands/{demand_id}/quotes"): {"200", "404", "422"},
    ("post", "/api/v1/quotes/{quote_id}/withdraw"): {"200", "404", "409"},
    ("post", "/api/v1/quotes/{quote_id}/award"): {"201", "404", "409", "422"},
    ("post", "/api/v1/purchases"): {"201", "403", "409", "422"},
    ("get", "/api/v1/purchases"): {"200", "422"},
    ("get", "/api/v1/purchases/{purchase_id}"): {"200", "404"},
    ("post", "/api/v1/purchases/{purchase_id}/cancel"): {"200", "404", "409", "422"},
}


def test_every_marketplace_operation_is_documented_with_its_errors(client):
    spec = client.get("/openapi.json").get_json()
    for (method, path), statuses in MARKETPLACE_OPERATIONS.items():
        operation = spec["paths"][path][method]
        assert operation["summary"], (method, path)
        assert statuses | {"default"} <= set(operation["responses"]), (method, path)
    amount = spec["components"]["schemas"]["PurchaseCreate"]["properties"]["amount"]
    assert amount["type"] == "string" and "pattern" in amount
    header = spec["paths"]["/api/v1/purchases"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in header)
