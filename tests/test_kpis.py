"""Chain KPIs: near-shore ratio, 整零比, chip localisation share; charts; declared output.

Hand-computed figures (DESIGN.md "Chain intelligence (v2)", issue 16's "done means"): 100,000
near + 300,000 far is 0.25 exactly; 80k domestic + 320k foreign chips is 0.20 (target met); the
near-shore totals reconcile to the cent with ``GET /ledger/summary``. Purchases enter through
the real ledger (``ledger.sync_purchase``, what the worker does).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from market import ledger
from market.clock import business_year
from market.extensions import db
from market.models import AuditLogEntry, OrgKind, PurchaseStatus, Role
from tests import factories
from tests.factories import CHANGSHA, GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
YEAR = business_year()


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def world(db_session):
    """OEM A: 100,000 near-shore (Shenzhen) + 300,000 far (Shantou, in Guangdong) + a cancelled
    50,000; OEM B: 1,000 from Hunan; chips 80k domestic + 320k foreign for OEM A's other plant."""
    oem_a = factories.make_org(OrgKind.OEM, legal_name="广汽测试")
    oem_b = factories.make_org(OrgKind.OEM, legal_name="=比亚迪测试")  # CSV injection attempt
    plant_a = factories.make_site(oem_a, at=GUANGZHOU, name="番禺工厂")
    plant_b = factories.make_site(oem_b, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    hunan = factories.make_org(city_code="430100")
    hunan_site = factories.make_site(hunan, at=CHANGSHA)
    on = date(YEAR, 3, 1)
    rows = [
        (oem_a, plant_a, near, near_site, "100000.00", "chassis.braking.foundation"),
        (oem_a, plant_a, far, far_site, "300000.00", "body.stamping"),
        (oem_a, plant_a, near, near_site, "50000.00", "chassis.braking.foundation"),
        (oem_b, plant_b, hunan, hunan_site, "1000.00", "chassis.braking.foundation"),
    ]
    purchases = [
        factories.make_purchase(o, p, s, site, amount=a, purchased_on=on, category=c)
        for o, p, s, site, a, c in rows
    ]
    for purchase in purchases:
        ledger.sync_purchase(purchase.id)
    purchases[2].status = PurchaseStatus.CANCELLED
    db.session.flush()
    ledger.sync_purchase(purchases[2].id)
    db.session.flush()
    return {
        "oem_a": oem_a,
        "oem_b": oem_b,
        "plant_a": plant_a,
        "plant_b": plant_b,
        "near": near,
        "near_site": near_site,
        "far_site": far_site,
        "buyer_a": factories.auth(factories.make_user(oem_a)),
        "buyer_b": factories.auth(factories.make_user(oem_b)),
        "admin": factories.auth(factories.make_user(role=Role.ADMIN)),
        "purchases": purchases,
    }


def kpis(client, headers, query=""):
    response = client.get(f"/api/v1/insights/kpis?year={YEAR}&{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_near_shore_ratio_is_exact_and_reconciles_with_the_ledger_summary(client, world):
    body = kpis(client, world["buyer_a"])
    (item,) = body["items"]
    assert item["key"] == str(world["oem_a"].id) and item["label"] == "广汽测试"
    assert item["near_shore_ratio"] == {
        "value": "0.2500",
        "reason": None,
        "near_shore_amount": "100000.00",
        "total_amount": "400000.00",
    }
    # The same year's summary, for the buyer and for an admin over every OEM: to the cent.
    for headers in (world["buyer_a"], world["admin"]):
        summary = client.get(f"/api/v1/ledger/summary?year={YEAR}", headers=headers).get_json()
        mine = kpis(client, headers)
        by_oem = {i["key"]: i["near_shore_ratio"] for i in mine["items"]}
        for row in summary["items"]:
            mine_row = by_oem[str(row["oem_org_id"])]
            assert mine_row["near_shore_amount"] == row["near_shore_total"]
            assert mine_row["total_amount"] == row["total_amount"]
        totals = mine["totals"]["near_shore_ratio"]
        assert totals["near_shore_amount"] == summary["totals"]["near_shore_total"]
        assert totals["total_amount"] == summary["totals"]["total_amount"]


def test_groupings_by_plant_city_and_category(client, world):
    by_category = kpis(client, world["buyer_a"], "by=category")
    ratios = {i["key"]: i["near_shore_ratio"]["value"] for i in by_category["items"]}
    assert ratios == {"body": "0.0000", "chassis": "1.0000"}
    assert [i["label"] for i in by_category["items"]] == ["车身系统", "底盘系统"]
    by_plant = kpis(client, world["buyer_a"], "by=plant")
    assert [(i["key"], i["label"]) for i in by_plant["items"]] == [
        (str(world["plant_a"].id), "番禺工厂")
    ]
    by_city = kpis(client, world["admin"], "by=city")
    assert [i["key"] for i in by_city["items"]] == ["440100"]
    assert by_city["items"][0]["near_shore_ratio"]["total_amount"] == "401000.00"
    # 整零比 is declared per OEM: other groupings say so instead of inventing a figure.
    assert by_city["items"][0]["vehicle_ratio"]["reason"] == "declared per OEM: see by=oem"


def test_no_data_is_null_with_a_reason_never_zero(client, world):
    response = client.get("/api/v1/insights/kpis?year=2019", headers=world["admin"])
    body = response.get_json()
    assert body["items"] == []
    for name, reason in (
        ("near_shore_ratio", "no confirmed purchases"),
        ("chip_share", "no ic.chips purchases"),
        ("vehicle_ratio", "no vehicle output declared for this OEM and year"),
    ):
        assert body["totals"][name]["value"] is None
        assert body["totals"][name]["reason"] == reason
    (item,) = kpis(client, world["buyer_a"])["items"]
    assert item["chip_share"]["value"] is None and item["chip_share"]["target"] == "0.2000"
    assert item["vehicle_ratio"]["value"] is None and item["vehicle_ratio"]["display"] is None


def declare_output(client, admin, oem, amount, year=YEAR, **extra):
    body = {"oem_org_id": oem.id, "year": year, "output_value": amount, **extra}
    return client.post("/api/v1/vehicle-outputs", json=body, headers=admin)


def test_vehicle_ratio_against_the_declared_output(client, world):
    # Guangdong parts of OEM A: 100,000 + 300,000 = 400,000; declared output 512,820.51.
    response = declare_output(client, world["admin"], world["oem_a"], "1000000.00", vehicles=10)
    assert response.status_code == 201, response.get_json()
    (item,) = kpis(client, world["buyer_a"])["items"]
    vehicle = item["vehicle_ratio"]
    assert vehicle["value"] == "0.4000" and vehicle["display"] == "1:0.4"
    assert vehicle["guangdong_parts_amount"] == "400000.00"
    assert vehicle["vehicle_output_value"] == "1000000.00"
    assert vehicle["target"] == "0.9000" and vehicle["target_display"] == "1:0.9"
    assert vehicle["target_met"] is False
    # Replacing the declaration: the figure follows, the audit log keeps both.
    assert declare_output(client, world["admin"], world["oem_a"], "400000.00").status_code == 201
    (item,) = kpis(client, world["buyer_a"])["items"]
    assert item["vehicle_ratio"]["display"] == "1:1" and item["vehicle_ratio"]["target_met"]
    logged = db.session.scalars(
        select(AuditLogEntry)
        .where(AuditLogEntry.action == "vehicle_output.declared")
        .order_by(AuditLogEntry.id)
    ).all()
    assert [e.details["output_value"] for e in logged] == ["1000000.00", "400000.00"]
    assert logged[1].details["previous"] == {"output_value": "1000000.00", "vehicles": 10}
    assert logged[1].organization_id == world["oem_a"].id
    # OEM B (Hunan parts only): no Guangdong parts, no declaration: no data.
    body = kpis(client, world["admin"])
    by_oem = {i["key"]: i["vehicle_ratio"] for i in body["items"]}
    assert by_oem[str(world["oem_b"].id)]["value"] is None
    # Totals: over the OEMs with a declaration only.
    assert body["totals"]["vehicle_ratio"]["value"] == "1.0000"


def test_declared_output_validation_and_visibility(client, world):
    admin = world["admin"]
    assert declare_output(client, admin, world["near"], "1.00").status_code == 422
    future = declare_output(client, admin, world["oem_a"], "1.00", year=YEAR + 1)
    assert future.status_code == 422 and "year" in future.get_json()["error"]["fields"]
    bad = client.post(
        "/api/v1/vehicle-outputs",
        json={"oem_org_id": world["oem_a"].id, "year": YEAR, "output_value": 1000.5},
        headers=admin,
    )
    assert bad.status_code == 422  # a JSON number is no exact amount
    assert declare_output(client, world["buyer_a"], world["oem_a"], "1.00").status_code == 403
    declare_output(client, admin, world["oem_a"], "10.00")
    declare_output(client, admin, world["oem_b"], "20.00")
    own = client.get("/api/v1/vehicle-outputs", headers=world["buyer_b"]).get_json()["items"]
    assert [(i["oem_org_id"], i["output_value"]) for i in own] == [(world["oem_b"].id, "20.00")]
    shantou = factories.auth(
        factories.make_user(role=Role.AUDITOR, authority=factories.make_authority(["440500"]))
    )
    assert client.get("/api/v1/vehicle-outputs", headers=shantou).get_json()["items"] == []


def test_chip_share_from_the_domestic_origin_frozen_on_purchases(client, world):
    oem, plant = world["oem_a"], world["plant_a"]
    domestic = factories.make_org(city_code="440300")
    factories.make_capability(domestic, "ic.chips", domestic_origin=True)
    domestic_site = factories.make_site(domestic, at=SHENZHEN)
    foreign = factories.make_org(city_code="440300")
    foreign_cap = factories.make_capability(foreign, "ic.chips.mcu")
    foreign_site = factories.make_site(foreign, at=SHENZHEN)
    buyer = factories.make_user(oem)
    created = []
    for supplier, site, amount in (
        (domestic, domestic_site, "80000.00"),
        (foreign, foreign_site, "320000.00"),
    ):
        response = client.post(
            "/api/v1/purchases",
            json={
                "supplier_org_id": supplier.id,
                "supplier_site_id": site.id,
                "plant_id": plant.id,
                "category": "ic.chips.mcu",
                "amount": amount,
                "purchased_on": date(YEAR, 3, 2).isoformat(),
                "invoice_number": f"CHIP-{supplier.id}",
            },
            headers=factories.auth(buyer),
        )
        assert response.status_code == 201, response.get_json()
        created.append(response.get_json())
    # The domestic flag comes from the most specific covering capability (ic.chips, domestic).
    assert [p["chip_domestic_origin"] for p in created] == [True, False]
    # Editing the flag later changes nothing already recorded.
    supplier_user = factories.auth(factories.make_user(foreign))
    patch = client.patch(
        f"/api/v1/suppliers/{foreign.id}/capabilities/{foreign_cap.id}",
        json={"domestic_origin": True},
        headers=supplier_user,
    )
    assert patch.status_code == 200 and patch.get_json()["domestic_origin"] is True
    for purchase, supplier in zip(created, (domestic, foreign), strict=True):
        user = factories.auth(factories.make_user(supplier))
        assert (
            client.post(f"/api/v1/purchases/{purchase['id']}/confirm", headers=user).status_code
            == 200
        )
        ledger.sync_purchase(purchase["id"])
    db.session.flush()
    (item,) = kpis(client, world["buyer_a"])["items"]
    assert item["chip_share"] == {
        "value": "0.2000",
        "reason": None,
        "domestic_amount": "80000.00",
        "chips_amount": "400000.00",
        "target": "0.2000",
        "target_met": True,
    }


def test_domestic_origin_is_only_for_chips(client, world):
    supplier = world["near"]
    user = factories.auth(factories.make_user(supplier))
    response = client.post(
        f"/api/v1/suppliers/{supplier.id}/capabilities",
        json={"category": "chassis.steering", "domestic_origin": True},
        headers=user,
    )
    assert response.status_code == 422
    assert "domestic_origin" in response.get_json()["error"]["fields"]
    cap = factories.make_capability(supplier, "body.stamping")
    patch = client.patch(
        f"/api/v1/suppliers/{supplier.id}/capabilities/{cap.id}",
        json={"domestic_origin": True},
        headers=user,
    )
    assert patch.status_code == 422
    ok = client.post(
        f"/api/v1/suppliers/{supplier.id}/capabilities",
        json={"category": "ic.chips.sic", "domestic_origin": True},
        headers=user,
    )
    assert ok.status_code == 201 and ok.get_json()["domestic_origin"] is True


def test_who_sees_which_kpis(client, world):
    supplier = factories.auth(factories.make_user(world["near"]))
    assert client.get("/api/v1/insights/kpis", headers=supplier).status_code == 403
    # Buyers see their own OEM whatever they ask for.
    other = kpis(client, world["buyer_b"], f"oem={world['oem_a'].id}")
    assert [i["key"] for i in other["items"]] == [str(world["oem_b"].id)]
    shantou = factories.auth(
        factories.make_user(role=Role.AUDITOR, authority=factories.make_authority(["440500"]))
    )
    assert kpis(client, shantou)["items"] == []
    province = factories.auth(factories.make_user(role=Role.AUDITOR))
    assert {i["key"] for i in kpis(client, province)["items"]} == {
        str(world["oem_a"].id),
        str(world["oem_b"].id),
    }


def test_csv_has_a_bom_the_same_figures_and_no_formulas(client, world):
    response = client.get(f"/api/v1/insights/kpis?year={YEAR}&format=csv", headers=world["admin"])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    by_key = {row["key"]: row for row in rows}
    assert by_key[str(world["oem_a"].id)]["near_shore_ratio"] == "0.2500"
    assert by_key[str(world["oem_b"].id)]["label"] == "'=比亚迪测试"
    assert by_key["total"]["near_shore_amount"] == "100000.00"
    assert by_key["total"]["chip_share"] == "" and by_key["total"]["chip_share_reason"]


@pytest.mark.parametrize("kind", ["near_shore", "vehicle_ratio", "chips"])
def test_charts_are_deterministic_svg_with_text_and_a_target_line(client, world, kind):
    url = f"/api/v1/insights/kpis/chart.svg?kind={kind}&year={YEAR}"
    first = client.get(url, headers=world["admin"])
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("image/svg+xml")
    svg = first.get_data(as_text=True)
    assert svg == client.get(url, headers=world["admin"]).get_data(as_text=True)
    assert "<svg" in svg and "<dc:date>" not in svg
    assert "广汽测试" in svg  # text stays text (svg.fonttype none): no font file needed
    assert "stroke-dasharray" in svg  # the dashed target line
    if kind == "vehicle_ratio":
        assert "目标 1:0.9" in svg and "无数据" in svg
    bad = client.get(
        f"/api/v1/insights/kpis/chart.svg?kind=pie&year={YEAR}", headers=world["admin"]
    )
    assert bad.status_code == 422
