"""Issue 12's exploits, each tried as the attacker did, and the v2 answer to each.

The ledger worker runs inline (TestConfig), so a purchase that may be counted is in the ledger
when the request that made it countable returns.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from market import ledger
from market.clock import business_today
from market.extensions import db
from market.ledger.append import acquire_ledger_lock
from market.models import InvoiceReview, LedgerEntry, Purchase
from market.schemas.marketplace import PurchaseDetailSchema
from tests import factories
from tests import test_demands as shared
from tests.conftest import USE_POSTGRES
from tests.test_demands import Market, counts, error_fields
from tests.test_purchases import confirm, purchase_body, record, record_confirmed

market = shared.market
nothing_committed = shared.nothing_committed
TODAY = business_today()


def entries_of(purchase_id: int) -> list[LedgerEntry]:
    return list(
        db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.purchase_id == purchase_id)
            .order_by(LedgerEntry.seq)
        )
    )


def summary(client: Any, market: Market, year: int, user: Any = None) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/ledger/summary?year={year}&oem={market.oem.id}",
        headers=market.headers(user or market.auditor),
    )
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["items"]
    return items[0] if items else {}


def test_a_buyer_alone_cannot_put_a_purchase_in_the_ledger(client, market):
    created = record(client, market)
    assert created.status_code == 201, created.get_json()
    purchase_id = created.get_json()["id"]
    assert entries_of(purchase_id) == []  # v1 recorded it at once
    # Nor can the buyer confirm its own purchase.
    own = confirm(client, market, purchase_id, market.buyer)
    assert own.status_code == 403
    assert entries_of(purchase_id) == []
    # The supplier confirms: now, and only now, it counts.
    assert confirm(client, market, purchase_id).status_code == 200
    assert [e.kind.value for e in entries_of(purchase_id)] == ["record"]


def test_a_disputed_purchase_never_reaches_the_ledger(client, market):
    purchase_id = record(client, market).get_json()["id"]
    before = counts()
    no_reason = client.post(
        f"/api/v1/purchases/{purchase_id}/dispute",
        json={},
        headers=market.headers(market.supplier_user),
    )
    assert no_reason.status_code == 422 and "reason" in error_fields(no_reason)
    assert counts() == before
    disputed = client.post(
        f"/api/v1/purchases/{purchase_id}/dispute",
        json={"reason": "We never shipped this order."},
        headers=market.headers(market.supplier_user),
    )
    assert disputed.status_code == 200, disputed.get_json()
    assert disputed.get_json()["status"] == "disputed"
    assert disputed.get_json()["dispute_reason"] == "We never shipped this order."
    # Final: it cannot be confirmed afterwards.
    assert confirm(client, market, purchase_id).status_code == 409
    assert entries_of(purchase_id) == []


def test_a_supplier_records_and_the_buyer_confirms(client, market):
    body = {
        "oem_org_id": market.oem.id,
        "supplier_site_id": market.site.id,
        "plant_id": market.plant.id,
        "category": "chassis.braking.foundation",
        "amount": "2000.00",
        "purchased_on": TODAY.isoformat(),
        "invoice_number": "SUP-1",
    }
    created = client.post(
        "/api/v1/purchases", json=body, headers=market.headers(market.supplier_user)
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["created_by_party"] == "supplier"
    # A supplier is never shown the OEM's subsidy position.
    assert created.get_json()["subsidy_preview"] is None
    purchase_id = created.get_json()["id"]
    waiting = client.get("/api/v1/purchases?awaiting=me", headers=market.headers(market.buyer))
    assert [p["id"] for p in waiting.get_json()["items"]] == [purchase_id]
    mine = client.get("/api/v1/purchases?awaiting=me", headers=market.headers(market.supplier_user))
    assert mine.get_json()["items"] == []
    assert confirm(client, market, purchase_id, market.supplier_user).status_code == 403
    assert confirm(client, market, purchase_id, market.buyer).status_code == 200
    assert [e.kind.value for e in entries_of(purchase_id)] == ["record"]


@pytest.mark.parametrize(
    "purchased_on",
    [
        date(TODAY.year - 2, 12, 31),  # v1 took anything from 2000
        date(2000, 1, 1),
        TODAY + timedelta(days=1),
    ],
)
def test_purchase_dates_outside_the_window_are_refused(client, market, purchased_on):
    before = counts()
    response = record(client, market, purchased_on=purchased_on.isoformat(), amount="5000000.00")
    assert response.status_code == 422, response.get_json()
    assert "purchased_on" in error_fields(response)
    assert counts() == before


def test_the_order_of_recording_years_does_not_change_the_figures(client, market):
    """Newest year first: v1 gave this year a baseline of 0 and kept it."""
    this_year = record_confirmed(client, market, amount="100000.00", invoice_number="Y-1")
    assert this_year.get_json()["subsidy_preview"]["increment"] == "100000.00"
    record_confirmed(
        client,
        market,
        amount="60000.00",
        invoice_number="Y-0",
        purchased_on=date(TODAY.year - 1, 6, 1).isoformat(),
    )
    figures = summary(client, market, TODAY.year)
    assert (figures["baseline"], figures["increment"], figures["subsidy"]) == (
        "60000.00",
        "40000.00",  # = 100,000 − 60,000, as if last year had been recorded first
        "400.00",
    )
    assert figures["consistent"] is True
    kinds = db.session.scalars(
        select(LedgerEntry.kind)
        .where(LedgerEntry.oem_org_id == market.oem.id)
        .order_by(LedgerEntry.seq)
    ).all()
    assert [k.value for k in kinds] == ["record", "record", "adjustment"]


def test_a_moved_site_does_not_change_a_verdict(client, market, db_session):
    """The purchase froze the site where it was; the supplier moves it before the worker runs."""
    purchase = factories.make_purchase(market.oem, market.plant, market.supplier, market.site)
    db.session.flush()
    moved = client.patch(
        f"/api/v1/suppliers/{market.supplier.id}/sites/{market.site.id}",
        json={"lat": 21.27, "lon": 110.36, "city_code": "440800"},  # Zhanjiang, ~400 km away
        headers=market.headers(market.supplier_user),
    )
    assert moved.status_code == 200, moved.get_json()
    acquire_ledger_lock()
    ledger.sync_purchases([purchase.id])
    (entry,) = entries_of(purchase.id)
    assert (entry.near_shore, entry.reason_code, entry.supplier_city_code) == (
        True,
        "NEAR_SHORE",
        "440300",
    )


def test_a_first_year_on_the_platform_is_held_until_a_baseline_is_declared(client, market):
    market.oem.verified_at = datetime.now(UTC) - timedelta(days=30)  # joined this year
    db.session.flush()
    created = record_confirmed(client, market, amount="300000.00")
    preview = created.get_json()["subsidy_preview"]
    assert (preview["held"], preview["baseline"], preview["increment"]) == (True, None, "0.00")
    figures = summary(client, market, TODAY.year)
    assert figures["held"] is True and figures["baseline_source"] == "missing"
    assert (figures["increment"], figures["subsidy"]) == ("0.00", "0.00")
    assert figures["subsidy_if_declared"] == "3000.00"  # shown, not granted
    position = client.get(
        f"/api/v1/ledger/position?year={TODAY.year}", headers=market.headers(market.buyer)
    )
    assert position.status_code == 200 and position.get_json()["held"] is True

    # Declaring the real baseline later is allowed (v1: 409) and appends an adjustment.
    declared = client.post(
        "/api/v1/baselines",
        json={"oem_org_id": market.oem.id, "year": TODAY.year - 1, "amount": "250000.00"},
        headers=market.headers(market.admin),
    )
    assert declared.status_code == 201, declared.get_json()
    figures = summary(client, market, TODAY.year)
    assert (figures["held"], figures["baseline"], figures["baseline_source"]) == (
        False,
        "250000.00",
        "declared",
    )
    assert (figures["increment"], figures["subsidy"]) == ("50000.00", "500.00")
    adjustment = db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.kind == "adjustment").order_by(LedgerEntry.seq.desc())
    ).first()
    assert adjustment is not None
    assert (adjustment.reason_code, adjustment.increment, adjustment.subsidy) == (
        "BASELINE_CHANGED",
        Decimal("50000.00"),
        Decimal("500.00"),
    )


def test_a_deactivated_site_cannot_be_used(client, market):
    market.site.active = False
    db.session.flush()
    before = counts()
    response = record(client, market)
    assert response.status_code == 422
    assert "supplier_site_id" in error_fields(response)
    assert counts() == before


def test_suppliers_never_see_the_oems_baseline_or_subsidy(client, market):
    purchase_id = record_confirmed(client, market).get_json()["id"]
    seen = client.get(
        f"/api/v1/purchases/{purchase_id}", headers=market.headers(market.supplier_user)
    )
    entry = seen.get_json()["ledger"]["entry"]
    assert entry["near_shore"] is True and entry["distance_km"]
    assert not {"baseline", "increment", "subsidy", "held"} & set(entry)
    denied = client.get("/api/v1/ledger/summary", headers=market.headers(market.supplier_user))
    assert denied.status_code == 403


def test_buyers_see_their_own_position_only(client, market):
    record_confirmed(client, market, amount="1000.00")
    other = client.get(
        f"/api/v1/ledger/summary?year={TODAY.year}&oem={market.oem.id}",
        headers=market.headers(market.other_buyer),
    )
    assert other.status_code == 200
    assert other.get_json()["items"] == []  # v1: 403 for every buyer; now: only their own
    own = client.get("/api/v1/ledger/summary", headers=market.headers(market.buyer))
    assert [item["oem_org_id"] for item in own.get_json()["items"]] == [market.oem.id]


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="racing transactions need PostgreSQL")
def test_two_oems_purchases_of_one_invoice_confirmed_at_once_both_wait_for_review(
    app, committed_db
):
    """Two OEMs' purchases of the same supplier invoice, confirmed at the same moment: each
    confirmation must see the other (the supplier's row lock makes them take turns), so both
    wait for an auditor and neither is counted. Without the lock both miss the other."""
    market = shared.build_market()
    committed_db.commit()
    client = app.test_client()
    pairs = []
    for n in range(8):  # several rounds: each is one chance for the two to interleave
        invoice = f"TWIN-RACE-{n}"
        first = record(client, market, invoice_number=invoice)
        second = client.post(
            "/api/v1/purchases",
            json=purchase_body(market, invoice_number=invoice, plant_id=market.other_plant.id),
            headers=market.headers(market.other_buyer),
        )
        assert first.status_code == second.status_code == 201, second.get_json()
        pairs.append((first.get_json()["id"], second.get_json()["id"]))

    supplier = market.headers(market.supplier_user)
    committed_db.commit()  # the token, for the threads' own sessions

    def race(pair: tuple[int, int]) -> list[int]:
        barrier = threading.Barrier(2)

        def send(purchase_id: int) -> int:
            own = app.test_client()  # its own app context, session and connection
            barrier.wait()
            return own.post(
                f"/api/v1/purchases/{purchase_id}/confirm", headers=supplier
            ).status_code

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(send, pair))

    for pair in pairs:
        assert race(pair) == [200, 200]
    committed_db.expire_all()
    ids = [purchase_id for pair in pairs for purchase_id in pair]
    held = committed_db.execute(
        select(Purchase.id, Purchase.review).where(Purchase.id.in_(ids))
    ).all()
    assert {review for _, review in held} == {InvoiceReview.PENDING}, held
    for purchase_id in ids:
        kinds = committed_db.scalars(
            select(LedgerEntry.kind)
            .where(LedgerEntry.purchase_id == purchase_id)
            .order_by(LedgerEntry.id)
        ).all()
        assert [k.value for k in kinds] in ([], ["record", "reversal"]), (purchase_id, kinds)


def test_another_oems_invoice_is_neither_revealed_nor_counted_twice(client, market):
    first = record_confirmed(client, market, invoice_number="SHARED-1").get_json()["id"]
    assert len(entries_of(first)) == 1
    # Another OEM records the same supplier invoice: v1 answered 409, telling it the invoice
    # exists elsewhere. Now it is accepted like any other purchase.
    second = client.post(
        "/api/v1/purchases",
        json={
            "supplier_org_id": market.supplier.id,
            "supplier_site_id": market.site.id,
            "plant_id": market.other_plant.id,
            "category": "chassis.braking.foundation",
            "amount": "12345.67",
            "purchased_on": TODAY.isoformat(),
            "invoice_number": "SHARED-1",
        },
        headers=market.headers(market.other_buyer),
    )
    assert second.status_code == 201, second.get_json()
    assert second.get_json()["review"] is None  # unconfirmed: nothing to see
    second_id = second.get_json()["id"]
    # The supplier confirms both: both wait for an auditor, the first is uncounted.
    assert confirm(client, market, second_id).status_code == 200
    assert [e.kind.value for e in entries_of(first)] == ["record", "reversal"]
    assert entries_of(second_id) == []
    held = client.get("/api/v1/purchases?review=pending", headers=market.headers(market.auditor))
    assert sorted(p["id"] for p in held.get_json()["items"]) == sorted([first, second_id])
    # Each buyer sees its own purchase in review, and nothing of the other's.
    mine = client.get(f"/api/v1/purchases/{second_id}", headers=market.headers(market.other_buyer))
    body = mine.get_json()
    assert body["review"] == "pending" and body["oem_org_id"] == market.other_oem.id
    assert market.oem.legal_name not in mine.get_data(as_text=True)
    # The answer has the fields of any purchase and nothing naming a twin.
    assert set(body) == set(PurchaseDetailSchema().fields)

    released = client.post(
        f"/api/v1/purchases/{first}/review",
        json={"decision": "release", "reason": "Invoice checked with the tax bureau."},
        headers=market.headers(market.auditor),
    )
    assert released.status_code == 200, released.get_json()
    rejected = client.post(
        f"/api/v1/purchases/{second_id}/review",
        json={"decision": "reject", "reason": "Copy of another OEM's invoice."},
        headers=market.headers(market.auditor),
    )
    assert rejected.status_code == 200
    assert [e.kind.value for e in entries_of(first)] == ["record", "reversal", "record"]
    assert entries_of(second_id) == []
    assert (
        client.post(
            f"/api/v1/purchases/{first}/review",
            json={"decision": "reject", "reason": "again"},
            headers=market.headers(market.auditor),
        ).status_code
        == 409
    )
    count = db.session.scalar(select(func.count()).select_from(Purchase))
    assert count and ledger.verify_chain().ok


ZHANJIANG = (21.2707, 110.3594)  # in Guangdong, ~410 km from the Guangzhou plant


def test_a_quote_and_its_award_ship_from_inside_the_radius(client, market):
    """v1 accepted a quote from any active site of an eligible supplier, even 400 km away."""
    from tests.test_quotes import make_quote, open_demand, quote_body

    demand = open_demand(market)
    far = factories.make_site(market.supplier, at=ZHANJIANG, city_code="440800")
    before = counts()
    refused = client.post(
        f"/api/v1/demands/{demand.id}/quotes",
        json=quote_body(market, site_id=far.id),
        headers=market.headers(market.supplier_user),
    )
    assert refused.status_code == 422, refused.get_json()
    assert "outside the demand's 200 km radius" in error_fields(refused)["site_id"][0]
    assert counts() == before
    # A quote made from a near site whose site then moved away cannot be awarded either.
    quote = make_quote(demand, market.supplier, market.site)
    market.site.lat, market.site.lon = ZHANJIANG
    db.session.flush()
    before = counts()
    award = client.post(
        f"/api/v1/quotes/{quote.id}/award",
        json={"invoice_number": "AWD-1"},
        headers=market.headers(market.buyer),
    )
    assert award.status_code == 422, award.get_json()
    assert "quote" in error_fields(award)
    assert counts() == before


HONG_KONG = (22.2793, 114.1628)


def test_a_hong_kong_site_declared_as_guangzhou_is_neither_accepted_nor_near_shore(client, market):
    """v1 checked a rectangle and the code prefix: 440100 in Hong Kong counted as near-shore."""
    before = counts()
    response = client.post(
        f"/api/v1/suppliers/{market.supplier.id}/sites",
        json={"name": "HK", "city_code": "440100", "lat": HONG_KONG[0], "lon": HONG_KONG[1]},
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 422, response.get_json()
    assert "香港" in error_fields(response)["lat"][0]
    assert counts() == before
    # A purchase whose frozen facts say so (e.g. recorded before the boundaries) is out.
    verdict = ledger.decide_near_shore(
        ledger.DEFAULT_POLICY, "440100", HONG_KONG, (market.plant.lat, market.plant.lon)
    )
    assert (verdict.near_shore, verdict.reason_code) == (False, "OUT_OF_PROVINCE")


def test_a_repeated_confirmation_answers_like_the_first_and_changes_nothing(client, market):
    """A client whose confirmation committed but whose answer was lost (a dropped connection,
    a database restart after the commit) confirms again: the same 200, nothing added."""
    purchase_id = record(client, market).get_json()["id"]
    first = confirm(client, market, purchase_id)
    assert first.status_code == 200
    before = counts()
    again = confirm(client, market, purchase_id)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["status"] == "confirmed"
    assert again.get_json()["confirmed_at"] == first.get_json()["confirmed_at"]
    assert counts() == before
    assert [e.kind.value for e in entries_of(purchase_id)] == ["record"]
