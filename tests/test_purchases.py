"""Purchases recorded directly: money as exact strings, references, visibility, cancel, list;
their subsidy preview and their place in the near-shore ledger (the worker runs inline)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select

from market.extensions import db
from market.models import (
    EntryKind,
    LedgerEntry,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseSource,
    PurchaseStatus,
    SubsidyPolicy,
)
from market.services import unit_of_work
from tests import factories
from tests import test_demands as shared
from tests.test_demands import (
    HUGE_ID,
    TODAY,
    Market,
    counts,
    error_fields,
)

# conftest's ``db_session`` and ``client``: each test's transaction is rolled back.
market = shared.market
nothing_committed = shared.nothing_committed  # autouse: checks that nothing leaked


def purchase_body(market: Market, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "supplier_org_id": market.supplier.id,
        "supplier_site_id": market.site.id,
        "plant_id": market.plant.id,
        "category": "chassis.braking.foundation",
        "amount": "12345.67",
        "purchased_on": (TODAY - timedelta(days=2)).isoformat(),
        "invoice_number": "44031234-00000001",
        "po_number": "PO-2026-0001",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def record(client: Any, market: Market, user: Any = None, **changes: Any) -> Any:
    return client.post(
        "/api/v1/purchases",
        json=purchase_body(market, **changes),
        headers=market.headers(user or market.buyer),
    )


def confirm(client: Any, market: Market, purchase_id: int, user: Any = None) -> Any:
    """The supplier (by default) confirms a purchase the buyer recorded."""
    return client.post(
        f"/api/v1/purchases/{purchase_id}/confirm",
        headers=market.headers(user or market.supplier_user),
    )


def record_confirmed(client: Any, market: Market, **changes: Any) -> Any:
    """A purchase the buyer records and the supplier confirms: the buyer's 201 answer."""
    created = record(client, market, **changes)
    assert created.status_code == 201, created.get_json()
    confirmed = confirm(client, market, created.get_json()["id"])
    assert confirmed.status_code == 200, confirmed.get_json()
    return created


# --- recording ----------------------------------------------------------------------------------


def test_a_buyer_records_an_off_platform_purchase(client, market):
    before = counts()
    response = record(client, market)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["amount"] == "12345.67"
    assert body["source"] == "direct"
    assert body["status"] == "pending_confirmation"
    assert body["created_by_party"] == "oem"
    assert body["confirmation"] is None
    assert body["oem_org_id"] == market.oem.id
    assert body["oem_name"] == market.oem.legal_name
    assert body["supplier_org_id"] == market.supplier.id
    assert body["supplier_name"] == market.supplier.legal_name
    assert body["quote_id"] is None
    assert body["invoice_number"] == "44031234-00000001"
    assert "ledger" not in body

    stored = db.session.get(Purchase, body["id"])
    assert stored.amount == Decimal("12345.67")
    assert stored.created_by_id == market.buyer.id
    # The facts the verdict depends on are frozen on the row.
    assert (stored.site_city_code, stored.site_lat, stored.site_lon) == (
        market.site.city_code,
        market.site.lat,
        market.site.lon,
    )
    assert (stored.plant_lat, stored.plant_lon) == (market.plant.lat, market.plant.lon)
    # Nothing for the ledger until the supplier confirms; the supplier is told (an event).
    after = counts()
    assert after["purchases"] == before["purchases"] + 1
    assert after["outbox"] == before["outbox"] + 1
    assert db.session.scalars(select(OutboxEvent.topic)).all() == [OutboxTopic.EVENT_DISPATCH]
    assert after["entries"] == before["entries"]

    confirmed = confirm(client, market, body["id"])
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["status"] == "confirmed"
    assert confirmed.get_json()["confirmation"] == "counterparty"
    events = db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.aggregate_id == body["id"],
            OutboxEvent.topic != OutboxTopic.EVENT_DISPATCH,  # events: aggregate = organisation
        )
    ).all()
    assert [(e.topic, e.aggregate_id) for e in events] == [(OutboxTopic.LEDGER_RECORD, body["id"])]


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0.01", "0.01"), ("1", "1.00"), ("100.5", "100.50"), ("9999999999.99", "9999999999.99")],
)
def test_amounts_are_exact(client, market, amount, expected):
    response = record(client, market, amount=amount, invoice_number=f"INV-{amount}")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["amount"] == expected
    assert db.session.get(Purchase, response.get_json()["id"]).amount == Decimal(expected)


@pytest.mark.parametrize(
    "amount",
    [
        12345.67,
        12345,
        0,
        "-1.00",
        "-0.01",
        "0",
        "0.00",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e309",
        "1E3",
        "1.001",
        "0.005",
        "10000000000.00",
        "1,000.00",
        "1_000.00",
        " 1.00",
        "+1.00",
        "1.",
        ".5",
        "",
        "abc",
        "１２３.４５",  # full-width digits
        None,
        True,
        [],
        {"value": "1.00"},
    ],
)
def test_bad_amounts_are_422_and_nothing_is_written(client, market, amount):
    before = counts()
    response = record(client, market, amount=amount)
    assert response.status_code == 422, (amount, response.get_json())
    assert "amount" in error_fields(response)
    assert counts() == before


def test_a_json_number_amount_is_explained(client, market):
    response = record(client, market, amount=12345.67)
    message = error_fields(response)["amount"][0]
    assert "string" in message and "12345.67" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"purchased_on": (TODAY + timedelta(days=1)).isoformat()}, "purchased_on"),
        ({"purchased_on": "1999-12-31"}, "purchased_on"),
        ({"purchased_on": "2025-02-29"}, "purchased_on"),
        ({"purchased_on": "yesterday"}, "purchased_on"),
        ({"purchased_on": ...}, "purchased_on"),
        ({"invoice_number": ""}, "invoice_number"),
        ({"invoice_number": "x" * 65}, "invoice_number"),
        ({"invoice_number": "INV 1"}, "invoice_number"),
        ({"invoice_number": "-INV1"}, "invoice_number"),
        ({"invoice_number": "INV\r\n1"}, "invoice_number"),
        ({"invoice_number": "<b>1</b>"}, "invoice_number"),
        ({"invoice_number": "1'; DROP TABLE purchases;--"}, "invoice_number"),
        ({"invoice_number": "发票001"}, "invoice_number"),
        ({"invoice_number": 44031234}, "invoice_number"),
        ({"invoice_number": "x" * 1_000_000}, "_body"),
        ({"invoice_number": ...}, "invoice_number"),
        ({"po_number": "PO 1"}, "po_number"),
        ({"category": "chassis.flux-capacitor"}, "category"),
        ({"category": "CHASSIS"}, "category"),
        ({"supplier_org_id": HUGE_ID}, "supplier_org_id"),
        ({"supplier_org_id": -1}, "supplier_org_id"),
        ({"supplier_org_id": "1"}, "supplier_org_id"),
        ({"supplier_site_id": 0}, "supplier_site_id"),
        ({"plant_id": 1.0}, "plant_id"),
        # Mass assignment.
        ({"status": "cancelled"}, "status"),
        ({"source": "award"}, "source"),
        ({"oem_org_id": 1}, "oem_org_id"),
        ({"quote_id": 1}, "quote_id"),
        ({"created_by_id": 1}, "created_by_id"),
    ],
)
def test_bad_fields_are_4xx_and_nothing_is_written(client, market, changes, field):
    before = counts()
    response = record(client, market, **changes)
    if field == "_body":
        assert response.status_code == 413  # beyond the body size limit
    else:
        assert response.status_code == 422, response.get_json()
        assert field in error_fields(response), response.get_json()
    assert counts() == before


def test_references_must_be_real_and_ours(client, market):
    oem_as_supplier = market.other_oem
    pending = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
    pending_site = factories.make_site(pending)
    cases = [
        ({"supplier_org_id": oem_as_supplier.id}, "supplier_org_id"),
        (
            {"supplier_org_id": pending.id, "supplier_site_id": pending_site.id},
            "supplier_org_id",
        ),
        ({"supplier_org_id": 2**31 - 1}, "supplier_org_id"),
        ({"supplier_site_id": market.other_site.id}, "supplier_site_id"),
        ({"supplier_site_id": market.plant.id}, "supplier_site_id"),
        ({"plant_id": market.other_plant.id}, "plant_id"),
        ({"plant_id": market.site.id}, "plant_id"),
    ]
    before = counts()
    for changes, field in cases:
        response = record(client, market, **changes)
        assert response.status_code == 422, (changes, response.get_json())
        assert field in error_fields(response), changes
    assert counts() == before


def test_one_invoice_is_one_purchase_per_supplier(client, market):
    assert record(client, market, invoice_number="INV-7").status_code == 201
    before = counts()
    again = record(client, market, invoice_number="inv-7", amount="1.00")
    assert again.status_code == 409
    assert "invoice_number" in error_fields(again)
    assert counts() == before
    # The same number from another supplier is another invoice.
    other = record(
        client,
        market,
        supplier_org_id=market.other_supplier.id,
        supplier_site_id=market.other_site.id,
        invoice_number="INV-7",
    )
    assert other.status_code == 201


def test_a_pending_oem_cannot_record_purchases(client, market):
    pending = factories.make_org(OrgKind.OEM, status=OrgStatus.PENDING)
    plant = factories.make_site(pending)
    buyer = factories.make_user(pending)
    before = counts()
    response = record(client, market, user=buyer, plant_id=plant.id)
    assert response.status_code == 403
    assert "verification" in response.get_json()["error"]["message"]
    assert counts() == before


def test_a_suspended_oems_buyer_is_signed_out(client, market):
    market.oem.status = OrgStatus.SUSPENDED
    db.session.flush()
    before = counts()
    assert record(client, market).status_code == 401
    assert counts() == before


@pytest.mark.parametrize("who", ["auditor", "admin"])
def test_only_the_parties_record_purchases(client, market, who):
    before = counts()
    assert record(client, market, user=getattr(market, who)).status_code == 403
    assert counts() == before


def test_purchases_are_immutable(client, market):
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    headers = market.headers(market.buyer)
    url = f"/api/v1/purchases/{purchase.id}"
    assert client.patch(url, json={"amount": "1.00"}, headers=headers).status_code == 405
    assert client.put(url, json={"amount": "1.00"}, headers=headers).status_code == 405
    assert client.delete(url, headers=headers).status_code == 405
    db.session.expire_all()
    assert db.session.get(Purchase, purchase.id).amount == Decimal("10000.00")


# --- reading ------------------------------------------------------------------------------------


def test_who_sees_a_purchase(client, market):
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    url = f"/api/v1/purchases/{purchase.id}"
    for user, status in [
        (market.buyer, 200),
        (market.supplier_user, 200),
        (market.auditor, 200),
        (market.admin, 200),
        (market.other_buyer, 404),
        (market.other_supplier_user, 404),
    ]:
        response = client.get(url, headers=market.headers(user))
        assert response.status_code == status, user.role
    assert client.get(url).status_code == 401
    body = client.get(url, headers=market.headers(market.buyer)).get_json()
    assert body["amount"] == "10000.00"


@pytest.mark.parametrize("purchase_id", [HUGE_ID, 2**31, 0, 123456789])
def test_unknown_and_overflowing_purchase_ids_are_404(client, market, purchase_id):
    headers = market.headers(market.admin)
    assert client.get(f"/api/v1/purchases/{purchase_id}", headers=headers).status_code == 404
    response = client.post(
        f"/api/v1/purchases/{purchase_id}/cancel", json={"reason": "typo"}, headers=headers
    )
    assert response.status_code == 404


def test_listing_is_scoped_filtered_sorted_and_paginated(client, market):
    make = factories.make_purchase
    p1 = make(
        market.oem, market.plant, market.supplier, market.site, amount="300.00",
        purchased_on=date(2025, 5, 1),
    )  # fmt: skip
    p2 = make(
        market.oem, market.plant, market.supplier, market.site, amount="100.00",
        purchased_on=date(2026, 1, 1),
    )  # fmt: skip
    p3 = make(
        market.oem, market.plant, market.other_supplier, market.other_site, amount="200.00",
        purchased_on=date(2026, 3, 1), status=PurchaseStatus.CANCELLED,
    )  # fmt: skip
    theirs = make(
        market.other_oem, market.other_plant, market.supplier, market.site, amount="50.00",
        source=PurchaseSource.AWARD,
    )  # fmt: skip

    def ids(query: str, user: Any) -> list[int]:
        response = client.get(f"/api/v1/purchases?{query}", headers=market.headers(user))
        assert response.status_code == 200, response.get_json()
        return [p["id"] for p in response.get_json()["items"]]

    assert ids("", market.buyer) == [p3.id, p2.id, p1.id]  # newest first by default
    assert ids("sort=amount", market.buyer) == [p2.id, p3.id, p1.id]
    assert ids("sort=-purchased_on", market.buyer) == [p3.id, p2.id, p1.id]
    assert ids("year=2026", market.buyer) == [p3.id, p2.id]
    assert ids("status=cancelled", market.buyer) == [p3.id]
    assert ids(f"supplier={market.supplier.id}", market.buyer) == [p2.id, p1.id]
    assert ids("", market.supplier_user) == [theirs.id, p2.id, p1.id]
    assert ids(f"oem={market.oem.id}", market.supplier_user) == [p2.id, p1.id]
    assert ids("source=award", market.supplier_user) == [theirs.id]
    assert ids("", market.other_supplier_user) == [p3.id]
    assert ids(f"oem={market.other_oem.id}", market.buyer) == []  # others' purchases stay hidden
    assert ids(f"oem={market.other_oem.id}", market.auditor) == [theirs.id]
    assert ids(f"supplier={market.supplier.id}&sort=id", market.admin) == [
        p1.id,
        p2.id,
        theirs.id,
    ]

    page = client.get(
        f"/api/v1/purchases?per_page=2&page=2&oem={market.oem.id}",
        headers=market.headers(market.auditor),
    ).get_json()
    assert page["meta"] == {"page": 2, "per_page": 2, "total": 3, "pages": 2}
    assert [p["id"] for p in page["items"]] == [p1.id]


@pytest.mark.parametrize(
    "query",
    [
        "year=1999",
        "year=abc",
        "year=20260",
        "supplier=0",
        "oem=99999999999999999999",
        "status=void",
        "source=magic",
        "sort=-invoice_number",
        "per_page=101",
        "per_page=0",
        "page=0",
        "page=-3",
        "invoice=1",
    ],
)
def test_bad_purchase_list_queries_are_422(client, market, query):
    response = client.get(f"/api/v1/purchases?{query}", headers=market.headers(market.buyer))
    assert response.status_code == 422, query


# --- cancelling ---------------------------------------------------------------------------------


def test_the_buyer_cancels_a_purchase_once_and_the_ledger_is_told(client, market):
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    url = f"/api/v1/purchases/{purchase.id}/cancel"
    response = client.post(
        url, json={"reason": "Duplicate of invoice 123"}, headers=market.headers(market.buyer)
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "cancelled"
    assert body["cancel_reason"] == "Duplicate of invoice 123"
    assert body["cancelled_at"]
    assert body["amount"] == "10000.00"  # the record itself is unchanged
    events = db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.aggregate_id == purchase.id,
            OutboxEvent.topic == OutboxTopic.LEDGER_REVERSE,
        )
    ).all()
    assert len(events) == 1

    before = counts()
    again = client.post(url, json={"reason": "again"}, headers=market.headers(market.buyer))
    assert again.status_code == 409
    assert counts() == before


def test_an_admin_may_cancel(client, market):
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    response = client.post(
        f"/api/v1/purchases/{purchase.id}/cancel",
        json={"reason": "Fraudulent invoice"},
        headers=market.headers(market.admin),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("who", "status"),
    [("other_buyer", 404), ("supplier_user", 403), ("auditor", 403)],
)
def test_others_cannot_cancel(client, market, who, status):
    """Nobody but the buyer's organization or an admin cancels a confirmed purchase (a supplier
    may only withdraw an unconfirmed one it recorded itself)."""
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    before = counts()
    response = client.post(
        f"/api/v1/purchases/{purchase.id}/cancel",
        json={"reason": "mine now"},
        headers=market.headers(getattr(market, who)),
    )
    assert response.status_code == status
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(Purchase, purchase.id).status is PurchaseStatus.CONFIRMED


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 501},
        {"reason": "ok\r\nforged"},
        {"reason": "<script>x</script>"},
        {"reason": "ok", "status": "recorded"},
        {"reason": 42},
    ],
)
def test_a_cancellation_needs_a_plain_reason(client, market, body):
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    before = counts()
    response = client.post(
        f"/api/v1/purchases/{purchase.id}/cancel", json=body, headers=market.headers(market.buyer)
    )
    assert response.status_code == 422
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(Purchase, purchase.id).status is PurchaseStatus.CONFIRMED


# --- the subsidy preview and the ledger (TestConfig runs the ledger worker inline) -------------

# Guangzhou (the plant) to Shenzhen (the supplier's site) and to Changsha (Hunan), rounded to the
# metre as the ledger keeps it.
GUANGZHOU_SHENZHEN_KM = "104.203"
GUANGZHOU_CHANGSHA_KM = "567.932"
ENTRY_FIELDS = (
    "near_shore",
    "reason_code",
    "distance_km",
    "policy_version",
    "baseline",
    "increment",
    "subsidy",
)


def detail(client: Any, market: Market, purchase_id: int, user: Any = None) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/purchases/{purchase_id}", headers=market.headers(user or market.buyer)
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def entry_row(purchase_id: int, kind: EntryKind = EntryKind.RECORD) -> LedgerEntry:
    return db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.purchase_id == purchase_id, LedgerEntry.kind == kind)
    ).one()


def test_a_recorded_purchase_shows_its_ledger_entry(client, market):
    created = record_confirmed(client, market)
    body = detail(client, market, created.get_json()["id"])

    ledger = body["ledger"]
    assert ledger["status"] == "recorded"
    assert ledger["reversal"] is None
    entry = ledger["entry"]
    assert {name: entry[name] for name in ENTRY_FIELDS} == {
        "near_shore": True,
        "reason_code": "NEAR_SHORE",
        "distance_km": GUANGZHOU_SHENZHEN_KM,
        "policy_version": 1,
        "baseline": "0.00",
        "increment": "12345.67",
        "subsidy": "123.46",  # 123.4567, half-up
    }
    row = entry_row(body["id"])
    assert (entry["seq"], entry["entry_hash"]) == (row.seq, row.entry_hash)
    assert len(entry["entry_hash"]) == 64
    chain = client.get("/api/v1/ledger/verify", headers=market.headers(market.auditor))
    assert chain.get_json()["ok"] is True
    assert chain.get_json()["head_hash"] == entry["entry_hash"]
    # The detail is the purchase itself plus its ledger; the supplier sees the verdict, never
    # the OEM's baseline or subsidy.
    assert body["amount"] == "12345.67" and body["status"] == "confirmed"
    assert "subsidy_preview" not in body
    confidential = {"baseline", "baseline_source", "held", "increment", "subsidy"}
    seen = detail(client, market, body["id"], market.supplier_user)["ledger"]
    assert seen["entry"] == {k: v for k, v in entry.items() if k not in confidential}
    assert seen["status"] == "recorded"


def test_the_preview_is_what_the_ledger_records_for_a_fresh_oems_first_purchase(client, market):
    before = db.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0
    response = record_confirmed(client, market)
    body = response.get_json()
    preview = body["subsidy_preview"]
    assert preview == {
        "near_shore": True,
        "reason_code": "NEAR_SHORE",
        "distance_km": GUANGZHOU_SHENZHEN_KM,
        "policy_version": 1,
        "year": (TODAY - timedelta(days=2)).year,
        "baseline": "0.00",  # on the platform all last year, no purchases then, none declared
        "baseline_source": "platform",
        "held": False,
        "near_shore_total_before": "0.00",
        "near_shore_total_after": "12345.67",
        "increment": "12345.67",
        "subsidy": "123.46",
        "message": "adds ¥12,345.67 of new near-shore purchasing "
        "(estimated subsidy ¥123.46, policy v1)",
    }
    entry = detail(client, market, body["id"])["ledger"]["entry"]
    assert {name: entry[name] for name in ENTRY_FIELDS} == {
        name: preview[name] for name in ENTRY_FIELDS
    }
    row = entry_row(body["id"])
    assert (row.year, row.near_shore_total_before) == (preview["year"], Decimal("0.00"))
    # The preview itself wrote nothing: one entry, the worker's.
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == before + 1


def test_the_preview_counts_last_years_purchases_as_the_baseline(client, market):
    last_year = date(TODAY.year - 1, 6, 1)
    first = record_confirmed(client, market, amount="1000.00", purchased_on=last_year.isoformat())
    assert first.get_json()["subsidy_preview"]["increment"] == "1000.00"

    second = record_confirmed(
        client, market, amount="1500.00", purchased_on=TODAY.isoformat(), invoice_number="INV-2"
    )
    preview = second.get_json()["subsidy_preview"]
    assert (preview["year"], preview["baseline"], preview["near_shore_total_before"]) == (
        TODAY.year,
        "1000.00",
        "0.00",
    )
    assert (preview["increment"], preview["subsidy"]) == ("500.00", "5.00")
    assert preview["message"].startswith("adds ¥500.00 of new near-shore purchasing")
    entry = detail(client, market, second.get_json()["id"])["ledger"]["entry"]
    assert {name: entry[name] for name in ENTRY_FIELDS} == {
        name: preview[name] for name in ENTRY_FIELDS
    }


def test_a_cancelled_purchase_is_reversed_in_the_ledger(client, market):
    created = record_confirmed(client, market)
    purchase_id = created.get_json()["id"]
    recorded = detail(client, market, purchase_id)["ledger"]["entry"]
    cancel = client.post(
        f"/api/v1/purchases/{purchase_id}/cancel",
        json={"reason": "Duplicate of invoice 123"},
        headers=market.headers(market.buyer),
    )
    assert cancel.status_code == 200, cancel.get_json()

    ledger = detail(client, market, purchase_id)["ledger"]
    assert ledger["status"] == "reversed"
    assert ledger["entry"] == recorded  # the record entry is never changed
    reversal = ledger["reversal"]
    assert {name: reversal[name] for name in ENTRY_FIELDS} == {
        "near_shore": True,
        "reason_code": "NEAR_SHORE",
        "distance_km": GUANGZHOU_SHENZHEN_KM,
        "policy_version": 1,
        "baseline": "0.00",
        "increment": "-12345.67",
        "subsidy": "-123.46",
    }
    assert reversal["seq"] == recorded["seq"] + 1
    row = entry_row(purchase_id, EntryKind.REVERSAL)
    assert (row.amount, row.prev_hash) == (Decimal("-12345.67"), recorded["entry_hash"])
    assert reversal["entry_hash"] == row.entry_hash


def test_a_supplier_site_outside_guangdong_is_out_of_province(client, market):
    hunan = factories.make_org(OrgKind.SUPPLIER, city_code="430100")
    site = factories.make_site(hunan, at=factories.CHANGSHA)
    response = record(client, market, supplier_org_id=hunan.id, supplier_site_id=site.id)
    assert response.status_code == 201, response.get_json()
    hunan_user = factories.make_user(hunan)
    assert confirm(client, market, response.get_json()["id"], hunan_user).status_code == 200
    preview = response.get_json()["subsidy_preview"]
    assert (preview["near_shore"], preview["reason_code"], preview["distance_km"]) == (
        False,
        "OUT_OF_PROVINCE",
        GUANGZHOU_CHANGSHA_KM,
    )
    assert (preview["increment"], preview["subsidy"]) == ("0.00", "0.00")
    assert preview["message"] == (
        f"not near-shore (OUT_OF_PROVINCE, {GUANGZHOU_CHANGSHA_KM} km from the plant): no subsidy"
    )

    ledger = detail(client, market, response.get_json()["id"])["ledger"]
    assert ledger["status"] == "recorded"
    assert {name: ledger["entry"][name] for name in ENTRY_FIELDS} == {
        "near_shore": False,
        "reason_code": "OUT_OF_PROVINCE",
        "distance_km": GUANGZHOU_CHANGSHA_KM,
        "policy_version": 1,
        "baseline": "0.00",
        "increment": "0.00",
        "subsidy": "0.00",
    }


def test_a_purchase_not_recorded_yet_is_pending_and_a_dead_one_failed(client, market):
    # Rows made by the factory, without the worker: no entry yet.
    waiting = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    stuck = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    db.session.add(
        OutboxEvent(
            topic=OutboxTopic.LEDGER_RECORD,
            aggregate_id=stuck.id,
            payload={},
            status=OutboxStatus.DEAD,
            attempts=8,
            last_error="boom",
        )
    )
    db.session.flush()
    assert detail(client, market, waiting.id)["ledger"] == {
        "status": "pending",
        "entry": None,
        "reversal": None,
    }
    assert detail(client, market, stuck.id)["ledger"]["status"] == "failed"


def test_list_items_carry_the_compact_ledger_status(client, market):
    recorded = record_confirmed(client, market, invoice_number="INV-A").get_json()["id"]
    reversed_ = record_confirmed(client, market, invoice_number="INV-B").get_json()["id"]
    unconfirmed = record(client, market, invoice_number="INV-C").get_json()["id"]
    client.post(
        f"/api/v1/purchases/{reversed_}/cancel",
        json={"reason": "typo"},
        headers=market.headers(market.buyer),
    )
    pending = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    failed = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    db.session.add(
        OutboxEvent(
            topic=OutboxTopic.LEDGER_RECORD,
            aggregate_id=failed.id,
            payload={},
            status=OutboxStatus.DEAD,
        )
    )
    db.session.flush()

    items = client.get(
        f"/api/v1/purchases?oem={market.oem.id}&sort=id", headers=market.headers(market.auditor)
    ).get_json()["items"]
    assert [(p["id"], p["ledger_status"]) for p in items] == [
        (recorded, "recorded"),
        (reversed_, "reversed"),
        (unconfirmed, "not_counted"),
        (pending.id, "pending"),
        (failed.id, "failed"),
    ]
    assert all("ledger" not in p and "subsidy_preview" not in p for p in items)


def test_a_page_of_purchases_costs_the_same_queries_whatever_its_size(client, market):
    for _ in range(6):
        factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    headers = market.headers(market.buyer)
    client.get("/api/v1/purchases", headers=headers)  # the token's user is loaded and cached

    def statements(per_page: int) -> int:
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        # The engine of the test's connection (tests/conftest.py: the tables' owner's,
        # acting as the app's role), not the app's own engine.
        engine = db.session.get_bind().engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            response = client.get(f"/api/v1/purchases?per_page={per_page}", headers=headers)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(response.get_json()["items"]) == per_page
        return len(seen)

    assert statements(1) == statements(6) > 0


def test_a_new_policy_version_reaches_the_preview_at_once(client, market):
    """The preview caches the policy terms keyed by a fingerprint of the table read in the
    same statement: a version added by anyone (another process, an operator) is seen by the
    very next preview, with no explicit invalidation in this process."""
    first = record(client, market, amount="10000.00", invoice_number="INV-P1")
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["subsidy_preview"]["policy_version"] == 1  # the terms now cached
    db.session.add(
        SubsidyPolicy(
            version=2,
            effective_from=date(2020, 1, 1),
            effective_until=None,
            province_prefix="44",
            max_distance_km=Decimal("300.000"),
            rate=Decimal("0.050000"),
            annual_cap=Decimal("2000000.00"),
        )
    )
    db.session.flush()
    second = record(client, market, amount="10000.00", invoice_number="INV-P2")
    preview = second.get_json()["subsidy_preview"]
    assert (preview["policy_version"], preview["increment"], preview["subsidy"]) == (
        2,
        "10000.00",
        "500.00",
    )


def test_recording_and_confirming_take_few_statements(client, market, monkeypatch):
    """The lean paths (issue 18): one read and one write to record (besides signing in); to
    confirm, a guarded UPDATE that also queues the ledger's outbox row, then the supplier lock
    and the twins; no reload."""
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("the combined write is PostgreSQL's")
    record(client, market, invoice_number="INV-WARM")  # warm the policy cache
    # The inline jobs the tests run after a commit are not the request's statements.
    monkeypatch.setattr(unit_of_work, "_publisher", lambda ids, topics: None)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db.session.get_bind().engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        created = record(client, market, invoice_number="INV-COUNT")
        recorded = list(statements)
        statements.clear()
        confirmed = confirm(client, market, created.get_json()["id"])
        confirming = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert created.status_code == 201 and confirmed.status_code == 200
    mine = [s for s in recorded if "api_tokens" not in s and "SAVEPOINT" not in s.upper()]
    assert len(mine) == 2, mine
    mine = [s for s in confirming if "api_tokens" not in s and "SAVEPOINT" not in s.upper()]
    assert len(mine) == 3, mine
    assert "INSERT INTO outbox_events" in mine[0]
    assert confirmed.get_json()["status"] == "confirmed"
    queued = db.session.scalars(
        select(OutboxEvent.topic).where(OutboxEvent.aggregate_id == created.get_json()["id"])
    ).all()
    assert OutboxTopic.LEDGER_RECORD in queued
    assert confirmed.get_json()["supplier_name"] == created.get_json()["supplier_name"]
