"""Chain-gap maps: the counts against hand-computed expectations, access, bad input, CSV, SVG.

The plant sits at (23.0, 113.4) in Guangzhou; suppliers sit due north of it, where the spec's
haversine distance is exactly R·Δφ, so a site ``d`` km north is at d/KM_PER_DEGREE degrees.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from market.clock import business_today
from market.geo import KM_PER_DEGREE
from market.models import DemandState, OrgKind, OrgStatus, Role
from market.services import gaps as gap_service
from tests import factories
from tests.conftest import USE_POSTGRES

GAPS = "/api/v1/insights/gaps"
PROVINCE = "/api/v1/insights/gaps/province"
MAP = "/api/v1/insights/gaps/map.svg"
PLANT_AT = (23.0, 113.4)
SVG = "{http://www.w3.org/2000/svg}"


def north(km: float) -> tuple[float, float]:
    return (PLANT_AT[0] + km / KM_PER_DEGREE, PLANT_AT[1])


def supplier(km: float, category: str, *, tier: int | None = 1, **org: Any) -> Any:
    organization = factories.make_org(OrgKind.SUPPLIER, tier=tier, **org)
    factories.make_site(organization, at=north(km))
    factories.make_capability(organization, category)
    return organization


@pytest.fixture
def world(db_session) -> dict[str, Any]:
    oem = factories.make_org(OrgKind.OEM)
    rival = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=PLANT_AT)
    rival_plant = factories.make_site(rival, at=PLANT_AT)
    a = supplier(10, "chassis.braking.foundation", tier=1)
    factories.make_site(a, at=north(50))  # a second, farther site: the nearest one counts
    factories.make_certification(a, "iatf-16949")
    b = supplier(40, "chassis.braking.esc-abs", tier=2)
    yesterday = business_today() - timedelta(days=1)
    factories.make_certification(
        b, "iatf-16949", valid_from=yesterday - timedelta(days=400), valid_until=yesterday
    )
    c = supplier(80, "chassis.steering", tier=3)
    supplier(120, "chassis.suspension")  # beyond 100 km
    supplier(5, "chassis.suspension", status=OrgStatus.SUSPENDED)
    supplier(5, "chassis.suspension", listed=False)
    supplier(5, "chassis.suspension", status=OrgStatus.PENDING)
    inactive = factories.make_org(OrgKind.SUPPLIER)
    factories.make_site(inactive, at=north(5), active=False)
    factories.make_capability(inactive, "chassis.suspension")
    above_cut = supplier(5, "chassis")  # counts at depth 1 only
    factories.make_demand(oem, plant, category="chassis.braking.foundation")
    factories.make_demand(oem, plant, category="chassis.braking")
    factories.make_demand(oem, plant, category="chassis.braking", state=DemandState.CLOSED)
    factories.make_demand(rival, rival_plant, category="chassis.braking")
    return {
        "oem": oem,
        "plant": plant,
        "rival_plant": rival_plant,
        "a": a,
        "b": b,
        "c": c,
        "above_cut": above_cut,
        "buyer": factories.auth(factories.make_user(oem)),
        "rival_buyer": factories.auth(factories.make_user(rival)),
        "supplier_user": factories.auth(factories.make_user(a)),
        "auditor": factories.auth(factories.make_user(role=Role.AUDITOR)),
        "shantou_auditor": factories.auth(
            factories.make_user(role=Role.AUDITOR, authority=factories.make_authority(["440500"]))
        ),
        "admin": factories.auth(factories.make_user(role=Role.ADMIN)),
    }


def rows(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["category"]: row for row in body["categories"]}


def gaps(client, world, who: str = "buyer", **query: Any) -> Any:
    params = {"plant": world["plant"].id, "radius_km": 100, **query}
    return client.get(GAPS, query_string=params, headers=world[who])


def test_the_plant_view_counts_what_the_spec_would_match(client, world):
    response = gaps(client, world, depth=2)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    table = rows(body)
    braking = table["chassis.braking"]
    assert braking["suppliers"] == 2
    assert braking["nearest_km"] == pytest.approx(10.0, abs=1e-6)
    assert braking["tier_mix"] == {"1": 1, "2": 1, "3": 0}
    assert braking["open_demands"] == 2  # not the closed one, not the rival's plant
    assert (braking["gap"], braking["single_source"]) == (False, False)
    steering = table["chassis.steering"]
    assert (steering["suppliers"], steering["single_source"], steering["gap"]) == (1, True, False)
    assert steering["nearest_km"] == pytest.approx(80.0, abs=1e-6)
    assert steering["tier_mix"] == {"1": 0, "2": 0, "3": 1}
    suspension = table["chassis.suspension"]
    assert (suspension["suppliers"], suspension["gap"], suspension["nearest_km"]) == (0, True, None)
    # The depth-2 cut: every depth-2 category (plus none shallower: all depth-1 nodes branch).
    assert "chassis" not in table and "chassis.braking.foundation" not in table
    assert body["summary"]["suppliers"] == 3  # a, b, c (the "chassis"-only one is above the cut)
    assert body["summary"]["gaps"] == body["summary"]["categories"] - 2
    assert body["summary"]["single_source"] == 1
    assert [s["id"] for s in body["suppliers"]] == [world["a"].id, world["b"].id, world["c"].id]
    assert body["center"] == {
        "kind": "plant",
        "plant_id": world["plant"].id,
        "name": world["plant"].name,
        "city_code": "440100",
        "lat": PLANT_AT[0],
        "lon": PLANT_AT[1],
    }


@pytest.mark.skipif(not USE_POSTGRES, reason="the packed transfer is PostgreSQL's")
@pytest.mark.parametrize(
    "options",
    [
        gap_service.GapOptions(radius_km=100, depth=1),
        gap_service.GapOptions(radius_km=100, depth=3, certs=("iatf-16949",)),
    ],
    ids=["depth 1", "depth 3, certified"],
)
def test_packed_columns_are_the_rows(world, options):
    """The candidates arrive on PostgreSQL as packed binary columns; they must be exactly what
    the rows say (the embedded default's way), row order and all."""
    factories.make_site(world["c"], at=north(3))  # a supplier with sites in two places
    factories.make_certification(world["c"], "iatf-16949")
    packed = gap_service.load_candidates([], options, packed=True)
    as_rows = gap_service.load_candidates([], options, packed=False)
    assert len(packed.orgs) >= 2 and len(packed.pair_org) >= 2 and len(packed.lat) >= 3
    for name in ("orgs", "tiers", "site_org", "lat", "lon", "pair_org", "pair_category"):
        np.testing.assert_array_equal(getattr(packed, name), getattr(as_rows, name), err_msg=name)
        assert getattr(packed, name).dtype == getattr(as_rows, name).dtype, name


def test_depth_one_and_three(client, world):
    chassis = rows(gaps(client, world, depth=1).get_json())["chassis"]
    assert chassis["suppliers"] == 4  # a, b, c and the one that declared only "chassis"
    assert chassis["nearest_km"] == pytest.approx(5.0, abs=1e-6)
    assert chassis["open_demands"] == 2
    deep = rows(gaps(client, world, depth=3).get_json())
    assert deep["chassis.braking.foundation"]["suppliers"] == 1
    assert deep["chassis.braking.foundation"]["open_demands"] == 1  # the other is above the cut
    assert deep["chassis.braking.esc-abs"]["single_source"] is True
    # A branch that ends at depth 2 keeps its leaf at depth 3.
    assert deep["chassis.steering"]["suppliers"] == 1


def test_required_certificates_valid_today(client, world):
    table = rows(gaps(client, world, certs="iatf-16949").get_json())
    # b's certificate expired yesterday; c holds none.
    assert table["chassis.braking"]["suppliers"] == 1
    assert table["chassis.braking"]["single_source"] is True
    assert table["chassis.steering"]["gap"] is True


def test_the_radius_is_inclusive_and_bounded_by_it(client, world):
    table = rows(gaps(client, world, radius_km=40).get_json())
    assert table["chassis.braking"]["suppliers"] == 2  # b at exactly 40 km (to rounding)
    table = rows(gaps(client, world, radius_km=39.9).get_json())
    assert table["chassis.braking"]["suppliers"] == 1
    table = rows(gaps(client, world, radius_km=130).get_json())
    assert table["chassis.suspension"]["suppliers"] == 1


def test_a_gap_appears_when_every_braking_supplier_goes_and_closes_when_one_comes(
    client, db_session, world
):
    for org in (world["a"], world["b"]):
        org.status = OrgStatus.SUSPENDED
    db_session.flush()
    assert rows(gaps(client, world).get_json())["chassis.braking"]["gap"] is True
    supplier(99, "chassis.braking.esc-abs", tier=2)
    braking = rows(gaps(client, world).get_json())["chassis.braking"]
    assert (braking["gap"], braking["single_source"], braking["suppliers"]) == (False, True, 1)


def test_the_city_view_measures_from_the_city_seat(client, world):
    body = client.get(
        GAPS, query_string={"city": "广州", "radius_km": 100}, headers=world["buyer"]
    ).get_json()
    assert body["center"]["kind"] == "city" and body["center"]["city_code"] == "440100"
    # The buyer counts its own open demands in the city only (not the rival's).
    assert rows(body)["chassis.braking"]["open_demands"] == 2
    admin = client.get(
        GAPS, query_string={"city": "440100", "radius_km": 100}, headers=world["admin"]
    ).get_json()
    assert rows(admin)["chassis.braking"]["open_demands"] == 3


def test_the_province_view_has_every_city_and_the_auditors_only_theirs(client, world):
    body = client.get(
        PROVINCE, query_string={"radius_km": 100, "depth": 1}, headers=world["admin"]
    ).get_json()
    assert len(body["cities"]) == 21
    guangzhou = next(c for c in body["cities"] if c["center"]["city_code"] == "440100")
    assert rows(guangzhou)["chassis"]["open_demands"] == 3
    assert rows(guangzhou)["chassis"]["suppliers"] >= 3
    shantou = client.get(PROVINCE, headers=world["shantou_auditor"]).get_json()
    assert [c["center"]["city_code"] for c in shantou["cities"]] == ["440500"]
    assert rows(shantou["cities"][0])["chassis.braking"]["open_demands"] == 0


def test_access(client, world):
    assert gaps(client, world, "buyer").status_code == 200
    assert gaps(client, world, "rival_buyer").status_code == 404
    assert gaps(client, world, "auditor").status_code == 200
    assert gaps(client, world, "shantou_auditor").status_code == 404
    assert gaps(client, world, "admin").status_code == 200
    assert gaps(client, world, "supplier_user").status_code == 403
    assert client.get(GAPS, query_string={"plant": world["plant"].id}).status_code == 401
    city = {"city": "440100"}
    assert client.get(GAPS, query_string=city, headers=world["shantou_auditor"]).status_code == 404
    assert client.get(PROVINCE, headers=world["supplier_user"]).status_code == 403
    map_query = {"plant": world["plant"].id}
    assert client.get(MAP, query_string=map_query, headers=world["rival_buyer"]).status_code == 404
    assert (
        client.get(MAP, query_string=map_query, headers=world["supplier_user"]).status_code == 403
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"radius_km": 0}, "radius_km"),
        ({"radius_km": 501}, "radius_km"),
        ({"radius_km": "nan"}, "radius_km"),
        ({"depth": 0}, "depth"),
        ({"depth": 4}, "depth"),
        ({"certs": "iatf-16949,no-such"}, "certs"),
        ({"format": "xml"}, "format"),
        ({"city": "440100"}, "plant"),  # both
        ({"plant": None}, "plant"),  # neither
        ({"plant": 0}, "plant"),
        ({"city": "Atlantis", "plant": None}, "city"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_422_with_the_field(client, world, query, field):
    params = {k: v for k, v in {"plant": world["plant"].id, **query}.items() if v is not None}
    response = client.get(GAPS, query_string=params, headers=world["admin"])
    assert response.status_code == 422, response.get_json()
    assert field in str(response.get_json()), response.get_json()


def test_an_unknown_plant_is_404(client, world):
    response = client.get(GAPS, query_string={"plant": 2_000_000_000}, headers=world["admin"])
    assert response.status_code == 404
    supplier_site = world["a"].sites[0].id  # a supplier's site is no plant
    response = client.get(GAPS, query_string={"plant": supplier_site}, headers=world["admin"])
    assert response.status_code == 404


def test_csv_has_a_bom_one_row_per_category_and_no_formulas(client, world):
    response = gaps(client, world, format="csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(text[1:])))
    assert len(table) == len(gaps(client, world).get_json()["categories"])
    braking = next(r for r in table if r["category"] == "chassis.braking")
    assert braking["suppliers"] == "2" and braking["tier_1"] == "1" and braking["tier_2"] == "1"
    assert braking["gap"] == "false" and braking["open_demands"] == "2"
    province = client.get(PROVINCE, query_string={"format": "csv"}, headers=world["admin"])
    lines = list(csv.reader(io.StringIO(province.get_data(as_text=True)[1:])))
    assert lines[0][:2] == ["city_code", "city_name"]
    assert len(lines) == 1 + 21 * len(table)


def test_a_formula_looking_name_is_neutralised():
    from market.services.gaps import _cell

    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("广州市") == "广州市"


def test_the_map_has_one_marker_per_supplier_counted(client, world):
    response = client.get(
        MAP, query_string={"plant": world["plant"].id, "radius_km": 100}, headers=world["buyer"]
    )
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    root = ET.fromstring(response.get_data())  # noqa: S314  (our own server's output)
    markers = [e for e in root.iter() if e.get("class") == "supplier-marker"]
    assert sorted(int(e.get("data-supplier-id")) for e in markers) == sorted(
        [world["a"].id, world["b"].id, world["c"].id]
    )
    assert {e.get("data-tier") for e in markers} == {"1", "2", "3"}
    assert {e.get("id") for e in markers} == {f"supplier-{world[k].id}" for k in "abc"}
    ids = {g.get("id") for g in root.iter(f"{SVG}g")}
    assert {"plant-marker", "radius-circle", "city-440100", "city-440500"} <= ids
    text = response.get_data(as_text=True)
    assert "chassis.suspension" in text  # a gap, listed beside the map
    assert "<dc:date>" not in text
    again = client.get(
        MAP, query_string={"plant": world["plant"].id, "radius_km": 100}, headers=world["buyer"]
    )
    assert again.get_data() == response.get_data()  # deterministic


def test_field_messages_in_chinese(client, world):
    response = client.get(
        GAPS,
        query_string={"plant": world["plant"].id, "radius_km": 900, "depth": 9},
        headers=world["admin"] | {"Accept-Language": "zh-CN"},
    )
    fields = response.get_json()["error"]["fields"]
    assert fields == {
        "radius_km": ["必须在 1 到 500 公里之间。"],
        "depth": ["必须在 1 到 3 之间（分类树的层数）。"],
    }
