"""Delivery records, supplier scorecards and the stored performance score.

The window rule (market.services.deliveries): the last 90 days' deliveries if at least 10, else
the 10 latest. On-time = delivered ≤ promised; quality = Σ accepted / Σ (accepted + rejected);
f_p = 0.5 + 0.25 × on-time + 0.25 × quality (basis points, half-up).
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from market.clock import business_today
from market.extensions import db
from market.models import (
    Delivery,
    OrgKind,
    OutboxEvent,
    OutboxTopic,
    PurchaseStatus,
    Role,
)
from market.services import deliveries
from tests import factories
from tests.factories import SHENZHEN

TODAY = business_today()
LONG_AGO = TODAY - timedelta(days=400)


@pytest.fixture
def market(db_session):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem)
    supplier = factories.make_org(city_code="440300")
    site = factories.make_site(supplier, at=SHENZHEN)
    purchase = factories.make_purchase(oem, plant, supplier, site, purchased_on=LONG_AGO)
    return {
        "oem": oem,
        "plant": plant,
        "supplier": supplier,
        "site": site,
        "purchase": purchase,
        "buyer": factories.auth(factories.make_user(oem)),
        "supplier_user": factories.auth(factories.make_user(supplier)),
    }


def body(promised, delivered, accepted=100, rejected=0):
    return {
        "promised_on": promised.isoformat(),
        "delivered_on": delivered.isoformat(),
        "accepted_qty": accepted,
        "rejected_qty": rejected,
    }


def post(client, market, data, headers=None, purchase=None):
    purchase = purchase or market["purchase"]
    return client.post(
        f"/api/v1/purchases/{purchase.id}/deliveries",
        json=data,
        headers=headers or market["buyer"],
    )


def add(market, promised, delivered, accepted=100, rejected=0):
    """A delivery row straight in the table (the window tests need many, in the past)."""
    purchase = market["purchase"]
    db.session.add(
        Delivery(
            purchase_id=purchase.id,
            supplier_org_id=purchase.supplier_org_id,
            promised_on=promised,
            delivered_on=delivered,
            accepted_qty=accepted,
            rejected_qty=rejected,
        )
    )
    db.session.flush()


def test_the_buyer_records_a_delivery_and_the_supplier_reads_it(client, market):
    version = market["supplier"].version
    response = post(client, market, body(TODAY - timedelta(days=3), TODAY, 980, 20))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["on_time"] is False and created["accepted_qty"] == 980
    listed = client.get(
        f"/api/v1/purchases/{market['purchase'].id}/deliveries", headers=market["supplier_user"]
    )
    assert [d["id"] for d in listed.get_json()["items"]] == [created["id"]]
    # The score was recomputed: 0.5 + 0.25 × 0 + 0.25 × 0.98 = 0.745; a search sync is queued.
    db.session.refresh(market["supplier"])
    assert market["supplier"].performance_bp == 7450
    assert market["supplier"].version == version + 1
    sync = db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.topic == OutboxTopic.SEARCH_SYNC,
            OutboxEvent.aggregate_id == market["supplier"].id,
        )
    ).all()
    assert sync and sync[-1].payload == {"version": version + 1}
    csv_response = client.get(
        f"/api/v1/purchases/{market['purchase'].id}/deliveries?format=csv",
        headers=market["buyer"],
    )
    text = csv_response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    (row,) = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    assert row["on_time"] == "false" and row["rejected_qty"] == "20"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (body(TODAY, TODAY + timedelta(days=1)), "delivered_on"),  # in the future
        (body(TODAY, LONG_AGO - timedelta(days=1)), "delivered_on"),  # before the purchase
        (body(LONG_AGO - timedelta(days=1), TODAY), "promised_on"),
        (body(TODAY, TODAY, 0, 0), "accepted_qty"),
        (body(TODAY, TODAY, -1, 5), "accepted_qty"),
        (body(TODAY, TODAY, 5, -1), "rejected_qty"),
        ({**body(TODAY, TODAY), "accepted_qty": "5"}, "accepted_qty"),
        ({**body(TODAY, TODAY), "extra": 1}, "extra"),
    ],
)
def test_bad_deliveries_are_refused_with_the_field(client, market, data, field):
    response = post(client, market, data)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert db.session.scalar(select(Delivery.id)) is None


def test_only_the_buyer_of_a_confirmed_purchase_records(client, market):
    data = body(TODAY, TODAY)
    assert post(client, market, data, headers=market["supplier_user"]).status_code == 403
    other = factories.auth(factories.make_user(factories.make_org(OrgKind.OEM)))
    assert post(client, market, data, headers=other).status_code == 404
    auditor = factories.auth(factories.make_user(role=Role.AUDITOR))
    assert post(client, market, data, headers=auditor).status_code == 403
    pending = factories.make_purchase(
        market["oem"],
        market["plant"],
        market["supplier"],
        market["site"],
        purchased_on=LONG_AGO,
        status=PurchaseStatus.PENDING_CONFIRMATION,
    )
    assert post(client, market, data, purchase=pending).status_code == 409
    other_supplier = factories.auth(factories.make_user(factories.make_org()))
    listed = client.get(
        f"/api/v1/purchases/{market['purchase'].id}/deliveries", headers=other_supplier
    )
    assert listed.status_code == 404


def scorecard(client, market, headers=None, query=""):
    response = client.get(
        f"/api/v1/suppliers/{market['supplier'].id}/scorecard{query}",
        headers=headers or market["supplier_user"],
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_no_deliveries_is_no_data_not_100_percent(client, market):
    card = scorecard(client, market)
    assert card["on_time_rate"]["value"] is None
    assert card["on_time_rate"]["reason"] == "no deliveries recorded"
    assert card["quality_rate"]["value"] is None
    assert card["performance_score"] is None and card["ranking_factor"] == "0.7500"
    assert card["window"]["deliveries"] == 0


def test_few_recent_deliveries_use_the_10_latest(client, market):
    # 3 in the last 90 days (all on time), 20 older ones (all late): the 10 latest count.
    for days in (1, 2, 3):
        add(market, TODAY - timedelta(days=days), TODAY - timedelta(days=days), 90, 10)
    for days in range(100, 120):
        add(market, TODAY - timedelta(days=days + 5), TODAY - timedelta(days=days), 100, 0)
    card = scorecard(client, market)
    assert card["window"]["rule"] == "last_10_deliveries"
    assert card["window"]["deliveries"] == 10
    assert card["window"]["first_delivered_on"] == (TODAY - timedelta(days=106)).isoformat()
    assert card["on_time_rate"] == {
        "value": "0.3000",
        "reason": None,
        "on_time": 3,
        "deliveries": 10,
    }
    # (270 + 700) / (300 + 700)
    assert card["quality_rate"]["value"] == "0.9700"


def test_many_recent_deliveries_use_the_90_days(client, market):
    # 12 in the last 90 days (8 on time), and older ones that must not count.
    for n in range(12):
        on_time = n < 8
        delivered = TODAY - timedelta(days=n * 7)
        promised = delivered if on_time else delivered - timedelta(days=2)
        add(market, promised, delivered, 99, 1)
    add(market, TODAY - timedelta(days=200), TODAY - timedelta(days=90), 0, 50)  # day 90: out
    card = scorecard(client, market)
    assert card["window"]["rule"] == "last_90_days" and card["window"]["deliveries"] == 12
    assert card["on_time_rate"]["value"] == "0.6667"
    assert card["quality_rate"]["value"] == "0.9900"
    # Stored when a delivery is recorded: 5000 + 2500 × 8/12 + 2500 × 0.99 = 9141.67 → 9142.
    assert deliveries.update_performance(market["supplier"].id) is True
    assert market["supplier"].performance_bp == 9142
    assert scorecard(client, market)["ranking_factor"] == "0.9142"


def test_who_sees_a_scorecard(client, market):
    buyer_elsewhere = factories.auth(factories.make_user(factories.make_org(OrgKind.OEM)))
    assert scorecard(client, market, buyer_elsewhere)["supplier_org_id"] == market["supplier"].id
    admin = factories.auth(factories.make_user(role=Role.ADMIN))
    assert scorecard(client, market, admin)["window"]["deliveries"] == 0
    other_supplier = factories.auth(factories.make_user(factories.make_org(city_code="440500")))
    url = f"/api/v1/suppliers/{market['supplier'].id}/scorecard"
    assert client.get(url, headers=other_supplier).status_code == 404
    shantou = factories.auth(
        factories.make_user(role=Role.AUDITOR, authority=factories.make_authority(["440500"]))
    )
    assert client.get(url, headers=shantou).status_code == 404
    an_oem = f"/api/v1/suppliers/{market['oem'].id}/scorecard"
    assert client.get(an_oem, headers=admin).status_code == 404
    text = client.get(url + "?format=csv", headers=admin).get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    assert row["on_time_rate"] == "" and row["reason"] == "no deliveries recorded"


def test_a_demand_opting_in_ranks_by_the_recorded_performance(client, market):
    """Through the API on the database backend: two suppliers at the same distance and tier;
    a delivery record for one of them reorders an opted-in demand, not a default one."""
    rival = factories.make_org(city_code="440300")
    factories.make_site(rival, at=SHENZHEN)
    for supplier in (market["supplier"], rival):
        factories.make_capability(supplier, "chassis.braking.foundation")
    buyer = market["buyer"]
    ids = {}
    for opt_in in (False, True):
        response = client.post(
            "/api/v1/demands",
            json={
                "plant_id": market["plant"].id,
                "category": "chassis",
                "title": "Calipers",
                "quantity": 100,
                "unit": "pcs",
                "need_by": (TODAY + timedelta(days=30)).isoformat(),
                "rank_by_performance": opt_in,
            },
            headers=buyer,
        )
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["rank_by_performance"] is opt_in
        ids[opt_in] = response.get_json()["id"]
        assert (
            client.post(f"/api/v1/demands/{ids[opt_in]}/publish", headers=buyer).status_code == 200
        )

    def ranking(opt_in):
        page = client.get(f"/api/v1/demands/{ids[opt_in]}/matches", headers=buyer).get_json()
        return [(m["supplier"]["id"], m["performance_factor"]) for m in page["items"]]

    first, second = sorted([market["supplier"].id, rival.id])
    assert ranking(True) == [(first, 0.75), (second, 0.75)]  # neutral: by id
    # A late, partly rejected delivery from market["supplier"]: f_p = 0.5 + 0 + 0.25 × 0.5.
    assert post(client, market, body(TODAY - timedelta(days=1), TODAY, 50, 50)).status_code == 201
    assert ranking(True) == [(rival.id, 0.75), (market["supplier"].id, 0.625)]
    assert ranking(False) == [(first, 1.0), (second, 1.0)]  # the default is unchanged


def test_the_periodic_refresh_follows_the_moving_window(client, market):
    # One late delivery 30 days ago: scored by the job (no delivery was recorded through the API).
    add(market, TODAY - timedelta(days=40), TODAY - timedelta(days=30), 10, 0)
    assert deliveries.refresh_performance_job() == {"changed": 1}
    assert market["supplier"].performance_bp == 7500  # 0.5 + 0 + 0.25
    assert deliveries.refresh_performance_job() == {"changed": 0}  # idempotent
    # Eleven on-time deliveries 100+ days ago: the 10 latest now hold ten of them.
    for days in range(100, 111):
        add(market, TODAY - timedelta(days=days), TODAY - timedelta(days=days), 10, 0)
    deliveries.refresh_performance_scores(TODAY)
    assert market["supplier"].performance_bp == 9750  # on-time 9/10: 0.5 + 0.225 + 0.25
