"""Quotes: eligibility by the ranking spec, one per supplier, who sees what, withdraw, award
(answered with the purchase's subsidy preview)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from market.extensions import db
from market.models import (
    CertStatus,
    Demand,
    DemandState,
    LedgerEntry,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxTopic,
    Purchase,
    PurchaseSource,
    Quote,
    QuoteStatus,
)
from tests import factories
from tests import test_demands as shared
from tests.conftest import USE_POSTGRES
from tests.test_demands import (
    HUGE_ID,
    TODAY,
    Market,
    build_market,
    counts,
    error_fields,
)

# conftest's ``db_session`` and ``client``: each test's transaction is rolled back.
market = shared.market
nothing_committed = shared.nothing_committed  # autouse: checks that nothing leaked


def open_demand(market: Market, **fields: Any) -> Demand:
    fields.setdefault("category", "chassis.braking")
    fields.setdefault("required_standards", ["iatf-16949"])
    fields.setdefault("need_by", TODAY + timedelta(days=60))
    return factories.make_demand(market.oem, market.plant, **fields)


def quote_body(market: Market, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "unit_price": "12.35",
        "quantity": 3,
        "lead_time_days": 21,
        "site_id": market.site.id,
        "valid_until": (TODAY + timedelta(days=30)).isoformat(),
        "note": "Incoterms: DAP plant.\nPPAP included.",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def make_quote(demand: Demand, org: Any, site: Any, **fields: Any) -> Quote:
    quote = Quote(
        demand=demand,
        organization=org,
        site=site,
        unit_price=Decimal(fields.pop("unit_price", "12.35")),
        quantity=fields.pop("quantity", 3),
        lead_time_days=fields.pop("lead_time_days", 21),
        valid_until=fields.pop("valid_until", TODAY + timedelta(days=30)),
        **fields,
    )
    db.session.add(quote)
    db.session.flush()
    return quote


def eligible_supplier(at: tuple[float, float] = factories.SHENZHEN, **org_fields: Any) -> Any:
    org = factories.make_org(OrgKind.SUPPLIER, city_code="440300", **org_fields)
    site = factories.make_site(org, at=at)
    factories.make_capability(org, "chassis.braking.foundation")
    factories.make_certification(org, "iatf-16949")
    return org, site, factories.make_user(org)


# --- quoting ------------------------------------------------------------------------------------


def test_an_eligible_supplier_quotes_once(client, market):
    demand = open_demand(market)
    headers = market.headers(market.supplier_user)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes", json=quote_body(market), headers=headers
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "submitted"
    assert body["unit_price"] == "12.35"
    assert body["total"] == "37.05"
    assert body["expired"] is False
    assert body["organization_id"] == market.supplier.id
    assert body["supplier_name"] == market.supplier.legal_name
    assert body["note"] == "Incoterms: DAP plant.\nPPAP included."
    before = counts()
    again = client.post(
        f"/api/v1/demands/{demand.id}/quotes", json=quote_body(market), headers=headers
    )
    assert again.status_code == 409
    assert "already quoted" in again.get_json()["error"]["message"]
    assert counts() == before


def _no_capability(market: Market) -> Any:
    return market.other_supplier, market.other_site, market.other_supplier_user


def _capability_elsewhere(market: Market) -> Any:
    org = factories.make_org(OrgKind.SUPPLIER)
    site = factories.make_site(org, at=factories.SHENZHEN)
    factories.make_capability(org, "body.seats")
    factories.make_certification(org, "iatf-16949")
    return org, site, factories.make_user(org)


def _parent_category_only(market: Market) -> Any:
    # A capability above the demand's category does not cover it ("chassis" ⊅ "chassis.braking").
    org = factories.make_org(OrgKind.SUPPLIER)
    site = factories.make_site(org, at=factories.SHENZHEN)
    factories.make_capability(org, "chassis")
    factories.make_certification(org, "iatf-16949")
    return org, site, factories.make_user(org)


def _certificate_expires_before_need_by(market: Market) -> Any:
    org = factories.make_org(OrgKind.SUPPLIER)
    site = factories.make_site(org, at=factories.SHENZHEN)
    factories.make_capability(org, "chassis.braking")
    factories.make_certification(org, "iatf-16949", valid_until=TODAY + timedelta(days=10))
    return org, site, factories.make_user(org)


def _revoked_certificate(market: Market) -> Any:
    org = factories.make_org(OrgKind.SUPPLIER)
    site = factories.make_site(org, at=factories.SHENZHEN)
    factories.make_capability(org, "chassis.braking")
    factories.make_certification(org, "iatf-16949", status=CertStatus.REVOKED)
    return org, site, factories.make_user(org)


def _too_far(market: Market) -> Any:
    return eligible_supplier(at=factories.CHANGSHA)


def _only_an_inactive_site(market: Market) -> Any:
    org, site, user = eligible_supplier()
    site.active = False
    db.session.flush()
    return org, site, user


def _unlisted(market: Market) -> Any:
    return eligible_supplier(listed=False)


@pytest.mark.parametrize(
    "make",
    [
        _no_capability,
        _capability_elsewhere,
        _parent_category_only,
        _certificate_expires_before_need_by,
        _revoked_certificate,
        _too_far,
        _only_an_inactive_site,
        _unlisted,
    ],
)
def test_ineligible_suppliers_cannot_quote(client, market, make):
    demand = open_demand(market)
    _org, site, user = make(market)
    before = counts()
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market, site_id=site.id),
        headers=market.headers(user),
    )
    assert response.status_code == 403, response.get_json()
    assert "not eligible" in response.get_json()["error"]["message"]
    assert counts() == before


def test_a_pending_supplier_cannot_quote(client, market):
    demand = open_demand(market)
    _org, site, user = eligible_supplier(status=OrgStatus.PENDING)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market, site_id=site.id),
        headers=market.headers(user),
    )
    assert response.status_code == 403
    assert "verification" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("who", ["buyer", "other_buyer", "auditor", "admin"])
def test_only_suppliers_quote(client, market, who):
    demand = open_demand(market)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market),
        headers=market.headers(getattr(market, who)),
    )
    assert response.status_code == 403


def test_the_shipping_site_must_be_an_active_site_of_ours(client, market):
    demand = open_demand(market)
    closed = factories.make_site(market.supplier, at=factories.SHENZHEN, active=False)
    headers = market.headers(market.supplier_user)
    before = counts()
    for site_id in (market.other_site.id, closed.id, market.plant.id, 2**31 - 1):
        response = client.post(
            f"/api/v1/demands/{demand.id}/quotes",
            json=quote_body(market, site_id=site_id),
            headers=headers,
        )
        assert response.status_code == 422, site_id
        assert "site_id" in error_fields(response)
    assert counts() == before


@pytest.mark.parametrize(
    "state", [DemandState.DRAFT, DemandState.CLOSED, DemandState.CANCELLED, DemandState.AWARDED]
)
def test_demands_that_are_not_open_are_invisible_to_suppliers(client, market, state):
    demand = open_demand(market, state=state)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market),
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 404


def test_no_quotes_after_need_by(client, market):
    demand = open_demand(market, need_by=TODAY - timedelta(days=1))
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market),
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 404


def test_a_supplier_that_quoted_gets_409_once_the_demand_closed(client, market):
    demand = open_demand(market, state=DemandState.CLOSED)
    make_quote(demand, market.supplier, market.site, status=QuoteStatus.WITHDRAWN)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market),
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 409
    assert "closed" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"unit_price": 12.35}, "unit_price"),
        ({"unit_price": 12}, "unit_price"),
        ({"unit_price": "0"}, "unit_price"),
        ({"unit_price": "0.00"}, "unit_price"),
        ({"unit_price": "-12.35"}, "unit_price"),
        ({"unit_price": "NaN"}, "unit_price"),
        ({"unit_price": "Infinity"}, "unit_price"),
        ({"unit_price": "1e309"}, "unit_price"),
        ({"unit_price": "1e2"}, "unit_price"),
        ({"unit_price": "12.345"}, "unit_price"),
        ({"unit_price": "12,35"}, "unit_price"),
        ({"unit_price": "¥12.35"}, "unit_price"),
        ({"unit_price": ""}, "unit_price"),
        ({"unit_price": None}, "unit_price"),
        ({"unit_price": "100000000.00"}, "unit_price"),
        ({"unit_price": ...}, "unit_price"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "3"}, "quantity"),
        ({"quantity": 2.5}, "quantity"),
        ({"unit_price": "99999999.99", "quantity": 10_000_000}, "quantity"),
        ({"lead_time_days": -1}, "lead_time_days"),
        ({"lead_time_days": 731}, "lead_time_days"),
        ({"valid_until": (TODAY - timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": "2027-13-01"}, "valid_until"),
        ({"valid_until": (TODAY + timedelta(days=800)).isoformat()}, "valid_until"),
        ({"site_id": HUGE_ID}, "site_id"),
        ({"site_id": "1"}, "site_id"),
        ({"note": "<a href='x'>click</a>"}, "note"),
        ({"note": "x" * 2001}, "note"),
        ({"status": "awarded"}, "status"),
        ({"demand_id": 1}, "demand_id"),
        ({"organization_id": 1}, "organization_id"),
    ],
)
def test_bad_quote_fields_are_422_and_nothing_is_written(client, market, changes, field):
    demand = open_demand(market)
    before = counts()
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market, **changes),
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 422, response.get_json()
    assert field in error_fields(response), response.get_json()
    assert counts() == before


def test_a_json_number_price_is_explained(client, market):
    demand = open_demand(market)
    response = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market, unit_price=12.35),
        headers=market.headers(market.supplier_user),
    )
    assert "string" in error_fields(response)["unit_price"][0]


# --- who sees which quotes ------------------------------------------------------------------------


def test_buyers_see_all_quotes_suppliers_only_their_own(client, market):
    demand = open_demand(market)
    org2, site2, user2 = eligible_supplier()
    mine = make_quote(demand, market.supplier, market.site, unit_price="20.00")
    theirs = make_quote(demand, org2, site2, unit_price="10.00")
    url = f"/api/v1/demands/{demand.id}/quotes"

    for user in (market.buyer, market.auditor, market.admin):
        body = client.get(url, headers=market.headers(user)).get_json()
        assert [q["id"] for q in body["items"]] == [mine.id, theirs.id]
        assert body["meta"]["total"] == 2
    by_price = client.get(url + "?sort=unit_price", headers=market.headers(market.buyer))
    assert [q["id"] for q in by_price.get_json()["items"]] == [theirs.id, mine.id]
    by_price_desc = client.get(
        url + "?sort=-unit_price&per_page=1", headers=market.headers(market.buyer)
    ).get_json()
    assert [q["id"] for q in by_price_desc["items"]] == [mine.id]
    assert by_price_desc["meta"]["pages"] == 2

    own = client.get(url, headers=market.headers(market.supplier_user)).get_json()
    assert [q["id"] for q in own["items"]] == [mine.id]
    own2 = client.get(url, headers=market.headers(user2)).get_json()
    assert [q["id"] for q in own2["items"]] == [theirs.id]
    none = client.get(url, headers=market.headers(market.other_supplier_user)).get_json()
    assert none["items"] == []
    assert client.get(url, headers=market.headers(market.other_buyer)).status_code == 404

    theirs.status = QuoteStatus.WITHDRAWN
    db.session.flush()
    submitted = client.get(url + "?status=submitted", headers=market.headers(market.buyer))
    assert [q["id"] for q in submitted.get_json()["items"]] == [mine.id]


@pytest.mark.parametrize("query", ["status=won", "sort=price", "per_page=0", "page=-1", "x=1"])
def test_bad_quote_list_queries_are_422(client, market, query):
    demand = open_demand(market)
    response = client.get(
        f"/api/v1/demands/{demand.id}/quotes?{query}", headers=market.headers(market.buyer)
    )
    assert response.status_code == 422


# --- withdraw -----------------------------------------------------------------------------------


def test_a_supplier_withdraws_its_own_submitted_quote(client, market):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site)
    url = f"/api/v1/quotes/{quote.id}/withdraw"
    assert client.post(url, headers=market.headers(market.other_supplier_user)).status_code == 404
    assert client.post(url, headers=market.headers(market.buyer)).status_code == 403
    response = client.post(url, headers=market.headers(market.supplier_user))
    assert response.status_code == 200
    assert response.get_json()["status"] == "withdrawn"
    again = client.post(url, headers=market.headers(market.supplier_user))
    assert again.status_code == 409
    huge = client.post(
        f"/api/v1/quotes/{HUGE_ID}/withdraw", headers=market.headers(market.supplier_user)
    )
    assert huge.status_code == 404


# --- award --------------------------------------------------------------------------------------


def award(client: Any, market: Market, quote: Quote, user: Any = None, **body: Any) -> Any:
    body.setdefault("invoice_number", "inv-2026-000123")
    return client.post(
        f"/api/v1/quotes/{quote.id}/award",
        json={k: v for k, v in body.items() if v is not ...},
        headers=market.headers(user or market.buyer),
    )


def test_award_makes_the_purchase_in_one_go(client, market):
    demand = open_demand(market)
    org2, site2, _ = eligible_supplier()
    org3, site3, _ = eligible_supplier()
    winner = make_quote(
        demand, market.supplier, market.site, unit_price="99999999.99", quantity=100
    )
    loser = make_quote(demand, org2, site2)
    withdrawn = make_quote(demand, org3, site3, status=QuoteStatus.WITHDRAWN)
    before = counts()

    response = award(client, market, winner, po_number="po-77")
    assert response.status_code == 201, response.get_json()
    purchase = response.get_json()
    assert purchase["amount"] == "9999999999.00"  # unit_price × quantity, exactly
    assert purchase["source"] == "award"
    assert purchase["status"] == "confirmed"
    assert purchase["quote_id"] == winner.id
    assert purchase["invoice_number"] == "INV-2026-000123"
    assert purchase["po_number"] == "PO-77"
    assert purchase["purchased_on"] == TODAY.isoformat()
    assert purchase["oem_org_id"] == market.oem.id
    assert purchase["supplier_org_id"] == market.supplier.id
    assert purchase["supplier_site_id"] == market.site.id
    assert purchase["plant_id"] == market.plant.id
    assert purchase["category"] == "chassis.braking"
    assert "ledger" not in purchase
    # The subsidy preview: the OEM's first purchase counts in full, and 1 % of it is past the
    # annual cap, so the subsidy is the cap.
    assert purchase["subsidy_preview"] == {
        "near_shore": True,
        "reason_code": "NEAR_SHORE",
        "distance_km": "104.203",  # Guangzhou plant, Shenzhen site
        "policy_version": 1,
        "year": TODAY.year,
        "baseline": "0.00",
        "baseline_source": "platform",
        "held": False,
        "near_shore_total_before": "0.00",
        "near_shore_total_after": "9999999999.00",
        "increment": "9999999999.00",
        "subsidy": "2000000.00",
        "message": "adds ¥9,999,999,999.00 of new near-shore purchasing "
        "(estimated subsidy ¥2,000,000.00, policy v1)",
    }
    ledger = client.get(
        f"/api/v1/purchases/{purchase['id']}", headers=market.headers(market.buyer)
    ).get_json()["ledger"]
    assert ledger["status"] == "recorded"
    assert (ledger["entry"]["increment"], ledger["entry"]["subsidy"]) == (
        "9999999999.00",
        "2000000.00",
    )

    db.session.expire_all()
    assert db.session.get(Demand, demand.id).state is DemandState.AWARDED
    assert db.session.get(Quote, winner.id).status is QuoteStatus.AWARDED
    assert db.session.get(Quote, loser.id).status is QuoteStatus.REJECTED
    assert db.session.get(Quote, withdrawn.id).status is QuoteStatus.WITHDRAWN
    stored = db.session.get(Purchase, purchase["id"])
    assert stored.amount == Decimal("9999999999.00")
    assert stored.source is PurchaseSource.AWARD
    outbox = db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.aggregate_id == purchase["id"],
            OutboxEvent.topic != OutboxTopic.EVENT_DISPATCH,  # events: aggregate = organisation
        )
    ).all()
    assert [(e.topic, e.aggregate_id) for e in outbox] == [
        (OutboxTopic.LEDGER_RECORD, purchase["id"])
    ]
    after = counts()
    assert after["purchases"] == before["purchases"] + 1
    # The ledger's row; the award's events: awarded to the winner, not awarded to the loser
    # (the withdrawn quote's supplier is not told); the ledger's purchase.recorded to each side.
    assert after["outbox"] == before["outbox"] + 5
    told = db.session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
        .order_by(OutboxEvent.id)
    ).all()
    assert [(e.payload["kind"], e.aggregate_id, e.payload["subject_id"]) for e in told[:2]] == [
        ("quote.awarded", market.supplier.id, winner.id),
        ("quote.not_awarded", org2.id, loser.id),
    ]
    assert sorted((e.payload["kind"], e.aggregate_id) for e in told[2:]) == sorted(
        [("purchase.recorded", demand.organization_id), ("purchase.recorded", market.supplier.id)]
    )

    shown = client.get(f"/api/v1/demands/{demand.id}", headers=market.headers(market.buyer))
    assert shown.get_json()["state"] == "awarded"
    second = award(client, market, loser, invoice_number="INV-2")
    assert second.status_code == 409


def test_award_with_an_explicit_purchase_date(client, market):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site, unit_price="0.01", quantity=1)
    response = award(client, market, quote, purchased_on=(TODAY - timedelta(days=3)).isoformat())
    assert response.status_code == 201
    assert response.get_json()["amount"] == "0.01"
    assert response.get_json()["purchased_on"] == (TODAY - timedelta(days=3)).isoformat()
    preview = response.get_json()["subsidy_preview"]
    assert preview["year"] == (TODAY - timedelta(days=3)).year
    # 0.01 × 1 % = 0.0001: half-up to the fen, nothing.
    assert (preview["increment"], preview["subsidy"]) == ("0.01", "0.00")
    assert preview["message"] == (
        "adds ¥0.01 of new near-shore purchasing (estimated subsidy ¥0.00, policy v1)"
    )


def _assert_nothing_changed(demand: Demand, quote: Quote, before: dict[str, int]) -> None:
    states = (demand.state, quote.status)
    db.session.expire_all()
    assert counts() == before
    assert (db.session.get(Demand, demand.id).state, db.session.get(Quote, quote.id).status) == (
        states
    )


def test_an_expired_quote_cannot_be_awarded(client, market):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site, valid_until=TODAY - timedelta(days=1))
    before = counts()
    listed = client.get(
        f"/api/v1/demands/{demand.id}/quotes", headers=market.headers(market.buyer)
    ).get_json()
    assert listed["items"][0]["expired"] is True
    response = award(client, market, quote)
    assert response.status_code == 409
    assert "expired" in response.get_json()["error"]["message"]
    _assert_nothing_changed(demand, quote, before)


@pytest.mark.parametrize(
    ("demand_fields", "quote_fields"),
    [
        ({"state": DemandState.CLOSED}, {}),
        ({"state": DemandState.CANCELLED}, {}),
        ({"state": DemandState.DRAFT}, {}),
        ({"need_by": TODAY - timedelta(days=1)}, {}),
        ({}, {"status": QuoteStatus.WITHDRAWN}),
        ({}, {"status": QuoteStatus.REJECTED}),
    ],
)
def test_award_needs_an_open_demand_and_a_submitted_quote(
    client, market, demand_fields, quote_fields
):
    demand = open_demand(market, **demand_fields)
    quote = make_quote(demand, market.supplier, market.site, **quote_fields)
    before = counts()
    response = award(client, market, quote)
    assert response.status_code == 409, response.get_json()
    _assert_nothing_changed(demand, quote, before)


def test_a_suspended_supplier_cannot_be_awarded(client, market):
    demand = open_demand(market)
    org2, site2, _ = eligible_supplier()
    quote = make_quote(demand, org2, site2)
    org2.status = OrgStatus.SUSPENDED
    db.session.flush()
    before = counts()
    response = award(client, market, quote)
    assert response.status_code == 409
    _assert_nothing_changed(demand, quote, before)


def test_an_invoice_already_recorded_for_the_supplier_is_409(client, market):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site)
    factories.make_purchase(
        market.oem, market.plant, market.supplier, market.site, invoice_number="INV-9"
    )
    before = counts()
    response = award(client, market, quote, invoice_number="inv-9")
    assert response.status_code == 409
    assert "invoice_number" in error_fields(response)
    _assert_nothing_changed(demand, quote, before)


@pytest.mark.parametrize(
    ("who", "status"),
    [("other_buyer", 404), ("supplier_user", 403), ("auditor", 403), ("admin", 403)],
)
def test_only_the_demands_buyer_awards(client, market, who, status):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site)
    before = counts()
    response = award(client, market, quote, user=getattr(market, who))
    assert response.status_code == status
    _assert_nothing_changed(demand, quote, before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"invoice_number": ...}, "invoice_number"),
        ({"invoice_number": ""}, "invoice_number"),
        ({"invoice_number": "INV 1"}, "invoice_number"),
        ({"invoice_number": "INV-1\r\nforged"}, "invoice_number"),
        ({"invoice_number": "x" * 65}, "invoice_number"),
        ({"invoice_number": "1' OR '1'='1"}, "invoice_number"),
        ({"invoice_number": "<b>1</b>"}, "invoice_number"),
        ({"invoice_number": 12345678}, "invoice_number"),
        ({"po_number": "PO 1"}, "po_number"),
        ({"purchased_on": (TODAY + timedelta(days=1)).isoformat()}, "purchased_on"),
        ({"purchased_on": "1999-12-31"}, "purchased_on"),
        ({"purchased_on": "2026-02-30"}, "purchased_on"),
        ({"amount": "1.00"}, "amount"),
        ({"status": "recorded"}, "status"),
        ({"quote_id": 1}, "quote_id"),
    ],
)
def test_bad_award_bodies_are_422_and_change_nothing(client, market, body, field):
    demand = open_demand(market)
    quote = make_quote(demand, market.supplier, market.site)
    before = counts()
    response = award(client, market, quote, **body)
    assert response.status_code == 422, response.get_json()
    assert field in error_fields(response)
    _assert_nothing_changed(demand, quote, before)


@pytest.mark.parametrize("quote_id", [HUGE_ID, 2**31, 0, 987654321])
def test_awarding_unknown_quotes_is_404(client, market, quote_id):
    response = client.post(
        f"/api/v1/quotes/{quote_id}/award",
        json={"invoice_number": "INV-1"},
        headers=market.headers(market.buyer),
    )
    assert response.status_code == 404


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="row locks under real concurrency need PostgreSQL")
def test_twenty_concurrent_awards_make_exactly_one_purchase(app, committed_db):
    market = build_market()
    demand = open_demand(market)
    quotes = [make_quote(demand, market.supplier, market.site)]
    for _ in range(4):
        org, site, _user = eligible_supplier()
        quotes.append(make_quote(demand, org, site))
    headers = factories.auth(market.buyer)
    quote_ids = [q.id for q in quotes]
    demand_id = demand.id
    committed_db.commit()

    barrier = threading.Barrier(20)

    def race(i: int) -> tuple[int, Any]:
        client = app.test_client()  # its own app context, session and connection
        barrier.wait()
        response = client.post(
            f"/api/v1/quotes/{quote_ids[i % len(quote_ids)]}/award",
            json={"invoice_number": f"INV-RACE-{i}"},
            headers=headers,
        )
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(race, range(20)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 19, results
    committed_db.expire_all()
    purchases = committed_db.scalars(select(Purchase).where(Purchase.quote_id.in_(quote_ids))).all()
    assert len(purchases) == 1
    winner = next(body for status, body in results if status == 201)
    assert purchases[0].id == winner["id"]
    assert (winner["subsidy_preview"]["increment"], winner["subsidy_preview"]["subsidy"]) == (
        "37.05",
        "0.37",
    )
    entries = committed_db.scalars(
        select(LedgerEntry.subsidy).where(LedgerEntry.purchase_id == winner["id"])
    ).all()
    assert entries == [Decimal("0.37")]  # recorded once, by the inline worker
    quote_states = sorted(
        committed_db.scalars(select(Quote.status).where(Quote.id.in_(quote_ids))).all()
    )
    assert quote_states == [QuoteStatus.AWARDED] + [QuoteStatus.REJECTED] * 4
    assert committed_db.get(Demand, demand_id).state is DemandState.AWARDED
    records = committed_db.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(
            OutboxEvent.topic == OutboxTopic.LEDGER_RECORD,
            OutboxEvent.aggregate_id == purchases[0].id,
        )
    )
    assert records == 1
