"""Purchases recorded directly: money as exact strings, references, visibility, cancel, list."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.extensions import db
from market.models import (
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxTopic,
    Purchase,
    PurchaseSource,
    PurchaseStatus,
)
from tests import factories
from tests import test_demands as shared
from tests.test_demands import (
    HUGE_ID,
    TODAY,
    Market,
    build_market,
    counts,
    error_fields,
    fresh_client,
)

marketplace_db = shared.marketplace_db  # the test's rolled-back transaction


@pytest.fixture
def client(app: Flask, marketplace_db: Any) -> FlaskClient:
    return fresh_client(app)


@pytest.fixture
def market(marketplace_db: Any) -> Market:
    return build_market()


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


# --- recording ----------------------------------------------------------------------------------


def test_a_buyer_records_an_off_platform_purchase(client, market):
    before = counts()
    response = record(client, market)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["amount"] == "12345.67"
    assert body["source"] == "direct"
    assert body["status"] == "recorded"
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
    events = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.aggregate_id == body["id"])
    ).all()
    assert [(e.topic, e.aggregate_id) for e in events] == [(OutboxTopic.LEDGER_RECORD, body["id"])]
    after = counts()
    assert after["purchases"] == before["purchases"] + 1
    assert after["outbox"] == before["outbox"] + 1


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


@pytest.mark.parametrize("who", ["supplier_user", "auditor", "admin"])
def test_only_buyers_record_purchases(client, market, who):
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
    assert db.session.get(Purchase, purchase.id).status is PurchaseStatus.RECORDED


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
    assert db.session.get(Purchase, purchase.id).status is PurchaseStatus.RECORDED
