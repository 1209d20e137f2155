"""Text search over HTTP on both backends: bad input, city names, 专精特新, highlights, and the
text search of demands and organizations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from market.extensions import db
from market.models import DemandState, Organization, OrgKind, OrgStatus, Role
from search.database import DatabaseSearchBackend
from tests import factories
from tests.conftest import RUN_ID

SEARCH = "/api/v1/suppliers/search"


@pytest.fixture
def world(db_session) -> dict[str, Any]:
    brake = factories.make_org(
        legal_name="广州华南制动系统有限公司",
        english_name="Huanan Braking Systems",
        description="盘式制动器、制动盘和卡钳 (EPB)",
        city_code="440100",
        specialized=True,
        tier=1,
    )
    factories.make_capability(brake, "chassis.braking.foundation")
    wiper = factories.make_org(
        legal_name="江门雨刷电机有限公司",
        english_name="Jiangmen Wiper Motor",
        description="刮水器总成与雨刮电机",
        city_code="440700",
        tier=2,
    )
    factories.make_capability(wiper, "body.interior-exterior")
    hidden = factories.make_org(description="刹车 卡钳 🚗 !!! \"'", listed=False)
    suspended = factories.make_org(description="刹车 卡钳", status=OrgStatus.SUSPENDED)
    db.session.flush()
    return {
        "brake": brake,
        "wiper": wiper,
        "never": {hidden.id, suspended.id},
        "buyer": factories.make_user(role=Role.BUYER),
    }


@pytest.fixture(params=["database", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def backend(request: pytest.FixtureRequest, app: Flask, world) -> Iterator[str]:
    """Run the request through this backend (Elasticsearch filled with the world)."""
    configured = app.extensions["search"]
    if request.param == "database":
        app.extensions["search"] = DatabaseSearchBackend()
        yield "database"
        app.extensions["search"] = configured
        return
    from search.elastic import ElasticsearchBackend

    url = request.getfixturevalue("elasticsearch_url")
    elastic = ElasticsearchBackend(url, f"{RUN_ID}-textapi-{id(request)}", timeout=30)
    ids = db.session.scalars(
        db.select(Organization.id).where(Organization.kind == OrgKind.SUPPLIER)
    ).all()
    assert not any(elastic.upsert_suppliers(ids).values())
    elastic.refresh()
    app.extensions["search"] = elastic
    yield "elasticsearch"
    app.extensions["search"] = configured
    for index in elastic.alias_targets():
        elastic.delete_index(index)


def search(client, world, **params: Any) -> Any:
    return client.get(
        SEARCH, query_string={"per_page": 100, **params}, headers=factories.auth(world["buyer"])
    )


def found(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["supplier"]["id"] for item in response.get_json()["items"]]


# --- bad input ----------------------------------------------------------------------------------

ODD_QUERIES = [
    "!!!",
    "…。，、；：？！",
    "🚗🔧",
    "🚗刹车🔧",
    '"卡钳',
    "卡钳'",
    "'\"",
    "ＢＲＡＫＥ",
    "刹车brake混合Ｍｉｘ",
    "\u200b刹车\u200d",
    "e\u0301tude",
    "مرحبا 刹车",
    "%",
    "_",
    "\\",
    "*",
    "制动 AND (",
    "[* TO *]",
    "/.*/",
]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_odd_queries_are_answered_and_never_show_hidden_suppliers(client, world, backend, query):
    ids = found(search(client, world, q=query))
    assert not set(ids) & world["never"]


def test_odd_queries_mean_what_their_words_say(client, world, backend):
    brake, wiper = world["brake"].id, world["wiper"].id
    everyone = sorted([brake, wiper])
    assert sorted(found(search(client, world, q="!!!"))) == everyone  # no word: no text filter
    assert sorted(found(search(client, world, q="🚗🔧"))) == everyone
    assert found(search(client, world, q="🚗刹车🔧")) == [brake]
    assert found(search(client, world, q='"卡钳')) == [brake]
    assert found(search(client, world, q="ＢＲＡＫＥ")) == [brake]
    assert found(search(client, world, q="\u200b刹车\u200d")) == [brake]
    assert found(search(client, world, q="刹车brake混合Ｍｉｘ")) == []  # 混合, mix: not there
    assert found(search(client, world, q="雨刮 ＭＯＴＯＲＳ")) == [wiper]


@pytest.mark.parametrize(
    "query",
    ["刹" * 10_000, "x" * 10_000, "刹车 " * 2_000, "w " * 11, "刹 车 卡 钳 雨 刮 电 机 线 束 灯"],
)
def test_too_long_queries_are_422_on_q(client, world, query):
    response = search(client, world, q=query)
    assert response.status_code == 422, response.get_json()
    assert "q" in response.get_json()["error"]["fields"]


# --- filters and facets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "city", ["440100", "广州", "广州市", "Guangzhou", "GUANGZHOU", "ｇｕａｎｇｚｈｏｕ"]
)
def test_city_by_code_chinese_or_english_name(client, world, backend, city):
    assert found(search(client, world, city=city)) == [world["brake"].id]


@pytest.mark.parametrize("city", ["北京", "Beijing", "110000", ""])
def test_unknown_city_is_422_on_city(client, world, city):
    response = search(client, world, city=city)
    assert response.status_code == 422, response.get_json()
    assert "city" in response.get_json()["error"]["fields"]


def test_specialized_filter_and_facet(client, world, backend):
    assert found(search(client, world, specialized="true")) == [world["brake"].id]
    assert found(search(client, world, specialized="false")) == [world["wiper"].id]
    facets = search(client, world).get_json()["facets"]
    assert facets["specialized"] == [{"value": False, "count": 1}, {"value": True, "count": 1}]
    response = search(client, world, specialized="maybe")
    assert response.status_code == 422 and "specialized" in response.get_json()["error"]["fields"]


# --- highlights ---------------------------------------------------------------------------------


def test_highlights_mark_the_matched_words_and_synonyms(client, world, backend):
    body = search(client, world, q="刹车 caliper").get_json()
    (item,) = body["items"]
    marked = {h["field"]: [h["text"][s:e] for s, e in h["spans"]] for h in item["highlights"]}
    assert marked == {
        "legal_name": ["制动"],
        "english_name": ["Braking"],
        "description": ["制动", "制动", "卡钳"],
        "category": ["制动", "制动", "卡钳", "brakes", "calipers"],  # 制动器/制动盘/卡钳
    }
    assert found(search(client, world)) and all(
        i["highlights"] == [] for i in search(client, world).get_json()["items"]
    )


# --- demands and organizations ------------------------------------------------------------------


@pytest.fixture
def demands(db_session) -> dict[str, Any]:
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem)
    other_oem = factories.make_org(OrgKind.OEM)
    other_plant = factories.make_site(other_oem)
    made = {
        "calipers": factories.make_demand(oem, plant, title="前制动卡钳 2027 款"),
        "wipers": factories.make_demand(oem, plant, title="Wiper motors", description="雨刮电机"),
        "draft_calipers": factories.make_demand(
            oem, plant, title="刹车卡钳（草稿）", state=DemandState.DRAFT
        ),
        "other_calipers": factories.make_demand(other_oem, other_plant, title="Brake calipers"),
    }
    db.session.flush()
    return {
        **{key: demand.id for key, demand in made.items()},
        "buyer": factories.make_user(oem),
        "supplier": factories.make_user(factories.make_org()),
    }


def demand_ids(client, user, q: str) -> list[int]:
    response = client.get("/api/v1/demands", query_string={"q": q}, headers=factories.auth(user))
    assert response.status_code == 200, response.get_json()
    return sorted(item["id"] for item in response.get_json()["items"])


def test_demand_text_search_suppliers_see_open_demands_buyers_their_own(client, demands):
    # 刹车 finds 制动 and brake; a supplier sees only open demands, a buyer only its own.
    assert demand_ids(client, demands["supplier"], "刹车") == sorted(
        [demands["calipers"], demands["other_calipers"]]
    )
    assert demand_ids(client, demands["buyer"], "刹车") == sorted(
        [demands["calipers"], demands["draft_calipers"]]
    )
    assert demand_ids(client, demands["buyer"], "雨刮") == [demands["wipers"]]
    assert demand_ids(client, demands["buyer"], "wiper") == [demands["wipers"]]
    response = client.get(
        "/api/v1/demands",
        query_string={"q": "刹" * 10_000},
        headers=factories.auth(demands["buyer"]),
    )
    assert response.status_code == 422 and "q" in response.get_json()["error"]["fields"]


def test_organization_text_search_for_admins(client, world):
    admin = factories.make_user(role=Role.ADMIN)

    def ids(q: str) -> list[int]:
        response = client.get(
            "/api/v1/organizations", query_string={"q": q}, headers=factories.auth(admin)
        )
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    assert ids("华南 制动") == [world["brake"].id]
    assert ids("Huanan") == [world["brake"].id]
    assert set(ids("Braking")) == {world["brake"].id, *world["never"]}  # 刹车 = brake
    assert ids("刮水器") == [world["wiper"].id]  # 雨刷 in the name, 刮水器 in the description
    # Hidden and suspended suppliers are organizations too: admins find them.
    assert set(ids("卡钳")) == {world["brake"].id, *world["never"]}
    buyer = client.get(
        "/api/v1/organizations", query_string={"q": "卡钳"}, headers=factories.auth(world["buyer"])
    )
    assert buyer.status_code == 403


# --- keeping the stored tokens fresh ------------------------------------------------------------


def test_a_profile_change_is_searchable_at_once(client, world):
    brake = world["brake"]
    own = factories.auth(factories.make_user(brake))
    assert found(search(client, world, q="雨刮")) == [world["wiper"].id]
    response = client.put(
        f"/api/v1/suppliers/{brake.id}/profile",
        json={"description": "现也生产刮水器", "english_name": "Huanan Wipers", "tier": 1},
        headers=own,
    )
    assert response.status_code == 200, response.get_json()
    assert sorted(found(search(client, world, q="雨刮"))) == sorted([brake.id, world["wiper"].id])
    # The old description's words are gone (制动 still in the legal name: search 卡钳).
    assert found(search(client, world, q="盘式")) == []


def test_retokenize_repairs_token_sets_written_around_the_hooks(app, world):
    from sqlalchemy import update

    from search.reindex import retokenize

    brake = world["brake"]
    # A bulk UPDATE bypasses the ORM hook: the stored tokens go stale.
    db.session.execute(
        update(Organization).where(Organization.id == brake.id).values(search_text=" stale ")
    )
    result = retokenize(batch_size=2)
    assert result.organizations == 1 and result.demands == 0
    db.session.expire_all()
    assert " 卡钳 " in (db.session.get(Organization, brake.id).search_text or "")
    assert retokenize().organizations == 0  # nothing left to change
    runner = app.test_cli_runner()
    assert "0 organizations, 0 demands" in runner.invoke(args=["search", "retokenize"]).output
