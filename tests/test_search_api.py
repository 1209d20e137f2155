"""The search routes over HTTP (database backend): access, explanations, validation, bad input."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from market.clock import business_today
from market.models import OrgKind, OrgStatus, Role
from market.schemas import link_header
from market.schemas.search import MatchPageSchema, SupplierSearchPageSchema
from search import spec
from tests import factories

PLANT = factories.GUANGZHOU


def north_of(km: float) -> tuple[float, float]:
    return PLANT[0] + math.degrees(km / spec.EARTH_RADIUS_KM), PLANT[1]


@pytest.fixture
def market(db_session):
    """An OEM with a plant and a demand, its buyer, and three suppliers (one hidden)."""
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=PLANT, name="南沙工厂")
    suppliers = []
    for km, tier in [(5, 2), (30, 1), (80, 3)]:
        org = factories.make_org(tier=tier, description="制动卡钳 brake calipers")
        factories.make_site(org, at=north_of(km), name=f"工厂{km}")
        factories.make_capability(org, "chassis.braking.foundation")
        factories.make_certification(org, "iatf-16949")
        suppliers.append(org)
    hidden = factories.make_org(tier=1, listed=False, description="制动卡钳 hidden")
    factories.make_site(hidden, at=PLANT)
    factories.make_capability(hidden, "chassis.braking.foundation")
    demand = factories.make_demand(
        oem, plant, category="chassis.braking", required_standards=["iatf-16949"]
    )
    return {
        "demand": demand,
        "suppliers": suppliers,
        "hidden": hidden,
        "buyer": factories.make_user(oem),
        "other_buyer": factories.make_user(factories.make_org(OrgKind.OEM)),
        "supplier_user": factories.make_user(suppliers[0]),
        "auditor": factories.make_user(role=Role.AUDITOR),
    }


def test_matches_are_ranked_and_explained(client, market):
    response = client.get(
        f"/api/v1/demands/{market['demand'].id}/matches", headers=factories.auth(market["buyer"])
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    near, mid, far = market["suppliers"]
    assert [item["supplier"]["id"] for item in body["items"]] == [mid.id, near.id, far.id]
    assert body["meta"] == {"page": 1, "per_page": 20, "total": 3, "pages": 1}
    assert body["degraded"] is False
    first = body["items"][0]
    assert first["rank"] == 1
    assert first["distance_km"] == pytest.approx(30, abs=1e-6)
    assert first["nearest_site"]["name"] == "工厂30"
    assert first["tier_factor"] == 1.0
    assert first["distance_factor"] == pytest.approx(spec.distance_factor(30))
    assert first["score"] == pytest.approx(first["distance_factor"])
    assert [c["standard"] for c in first["matched_certifications"]] == ["iatf-16949"]
    assert first["supplier"]["capabilities"] == ["chassis.braking.foundation"]
    assert body["items"][1]["distance_factor"] == 1.0  # 5 km: inside the offset


def test_matches_page_through_the_ranking(client, market):
    headers = factories.auth(market["buyer"])
    url = f"/api/v1/demands/{market['demand'].id}/matches"
    second = client.get(f"{url}?page=2&per_page=2", headers=headers).get_json()
    assert [i["rank"] for i in second["items"]] == [3]
    assert second["meta"] == {"page": 2, "per_page": 2, "total": 3, "pages": 2}


@pytest.mark.parametrize(
    ("who", "status"),
    [("buyer", 200), ("auditor", 200), ("other_buyer", 404), ("supplier_user", 403)],
)
def test_matches_are_for_the_demands_buyers_auditors_and_admins(client, market, who, status):
    response = client.get(
        f"/api/v1/demands/{market['demand'].id}/matches", headers=factories.auth(market[who])
    )
    assert response.status_code == status


@pytest.mark.parametrize("demand_id", ["999999", str(2**40), "0"])
def test_unknown_or_impossible_demand_ids_are_404(client, market, demand_id):
    response = client.get(
        f"/api/v1/demands/{demand_id}/matches", headers=factories.auth(market["buyer"])
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=-1", "page"),
        ("page=101&per_page=100", "page"),  # beyond the first 10 000 results
        ("page=abc", "page"),
        ("sort=score", "sort"),
    ],
)
def test_bad_paging_is_422_with_the_field(client, market, query, field):
    response = client.get(
        f"/api/v1/demands/{market['demand'].id}/matches?{query}",
        headers=factories.auth(market["buyer"]),
    )
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_unusable_stored_tier_weights_are_422_not_500(client, market):
    market["demand"].tier_weights = {"1": -1}
    response = client.get(
        f"/api/v1/demands/{market['demand'].id}/matches", headers=factories.auth(market["buyer"])
    )
    assert response.status_code == 422
    assert "tier_weights" in response.get_json()["error"]["fields"]


# --- the supplier search box ------------------------------------------------------------------


def search(client, user, query: str = ""):
    return client.get(f"/api/v1/suppliers/search?{query}", headers=factories.auth(user))


def test_search_finds_chinese_and_english_text_with_facets(client, market):
    near, mid, far = market["suppliers"]
    body = search(client, market["supplier_user"], "q=制动+calipers").get_json()
    assert sorted(i["supplier"]["id"] for i in body["items"]) == sorted(
        o.id for o in (near, mid, far)
    )
    assert body["facets"]["tier"] == [
        {"value": 1, "count": 1},
        {"value": 2, "count": 1},
        {"value": 3, "count": 1},
    ]
    assert body["facets"]["certification"] == [{"value": "iatf-16949", "count": 3}]
    assert body["facets"]["city"] == [{"value": "440100", "count": 3}]
    assert body["items"][0]["certifications"] == ["iatf-16949"]
    assert body["degraded"] is False


def test_search_near_a_point_orders_by_distance(client, market):
    near, mid, far = market["suppliers"]
    query = f"lat={PLANT[0]}&lon={PLANT[1]}&radius_km=50&category=chassis&cert=iatf-16949"
    body = search(client, market["buyer"], query).get_json()
    assert [i["supplier"]["id"] for i in body["items"]] == [near.id, mid.id]
    assert body["items"][0]["distance_km"] == pytest.approx(5, abs=1e-6)
    assert body["items"][0]["nearest_site"]["name"] == "工厂5"
    assert body["meta"]["total"] == 2
    body = search(client, market["buyer"], "tier=3&city=440100").get_json()
    assert [i["supplier"]["id"] for i in body["items"]] == [far.id]
    assert body["items"][0]["distance_km"] is None


def test_search_certification_filter_needs_a_certificate_valid_today(client, market):
    near, mid, _ = market["suppliers"]
    factories.make_certification(
        near, "iso-26262", valid_until=business_today() - timedelta(days=1)
    )
    factories.make_certification(mid, "iso-26262")
    body = search(client, market["buyer"], "cert=iatf-16949&cert=iso-26262").get_json()
    assert [i["supplier"]["id"] for i in body["items"]] == [mid.id]


RELIABILITY_STRINGS = ["*", "a AND (", '"', "\\", "/.*/", "[* TO *]", "%", "_", "' OR '1'='1"]


@pytest.mark.parametrize("text", RELIABILITY_STRINGS)
def test_search_box_strings_never_fail_nor_reveal_hidden_suppliers(client, market, text):
    market["hidden"].description = f"制动卡钳 {text}"
    suspended = factories.make_org(status=OrgStatus.SUSPENDED, description=text)
    response = client.get(
        "/api/v1/suppliers/search",
        query_string={"q": text},
        headers=factories.auth(market["buyer"]),
    )
    assert response.status_code == 200, response.get_json()
    found = {item["supplier"]["id"] for item in response.get_json()["items"]}
    assert not found & {market["hidden"].id, suspended.id}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "x" * 100_000}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": " ".join(["w"] * 11)}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"lat": "23.1"}, "lon"),
        ({"lon": "113.2"}, "lat"),
        ({"radius_km": "50"}, "radius_km"),
        ({"lat": "23", "lon": "113", "radius_km": "501"}, "radius_km"),
        ({"lat": "23", "lon": "113", "radius_km": "0"}, "radius_km"),
        ({"lat": "NaN", "lon": "113"}, "lat"),
        ({"lat": "1e309", "lon": "113"}, "lat"),
        ({"lat": "91", "lon": "113"}, "lat"),
        ({"category": "chassis.nope"}, "category"),
        ({"cert": "iso-0000"}, "cert"),
        ({"tier": "4"}, "tier"),
        ({"city": "110000"}, "city"),
        ({"per_page": "1000"}, "per_page"),
        ({"owner": "1"}, "owner"),
    ],
)
def test_bad_search_parameters_are_422_with_the_field(client, market, params, field):
    response = client.get(
        "/api/v1/suppliers/search",
        query_string=params,
        headers=factories.auth(market["buyer"]),
    )
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_search_needs_a_signed_in_user(client, market):
    assert client.get("/api/v1/suppliers/search").status_code == 401


# --- pages sent as built (market.api.pagination.prebuilt_page) ----------------------------------


def _types(value):
    """The JSON shape of a value: its types all the way down (1 and "1" differ; 1 and 1.0 are
    both numbers)."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return type(value).__name__
    return "number"


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        ("/api/v1/demands/{demand}/matches", MatchPageSchema),
        ("/api/v1/demands/{demand}/matches?page=2&per_page=1", MatchPageSchema),
        ("/api/v1/demands/{demand}/matches?page=9&per_page=1", MatchPageSchema),
        ("/api/v1/suppliers/search?q=制动+calipers", SupplierSearchPageSchema),
        (
            f"/api/v1/suppliers/search?lat={PLANT[0]}&lon={PLANT[1]}&radius_km=50"
            "&cert=iatf-16949&per_page=1",
            SupplierSearchPageSchema,
        ),
        ("/api/v1/suppliers/search?q=卡钳&specialized=false&city=广州", SupplierSearchPageSchema),
    ],
)
def test_pages_sent_as_built_are_what_their_schema_dumps(client, market, path, schema):
    """The hot read paths skip the schema dump; what they send must be exactly what the
    documented schema would have sent (values, types, links and the Link header)."""
    response = client.get(
        path.format(demand=market["demand"].id), headers=factories.auth(market["buyer"])
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    links = body.pop("links")
    dumped = json.loads(json.dumps(schema().dump(body)))  # no request context: no links added
    assert body == dumped
    assert _types(body) == _types(dumped)
    assert body["items"] or body["meta"]["page"] > body["meta"]["pages"]
    assert set(links) == {"self", "next", "prev"}
    assert links["self"].endswith(f"page={body['meta']['page']}")
    assert response.headers["Link"] == link_header(links)
