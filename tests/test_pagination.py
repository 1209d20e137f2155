"""Every paginated list carries ``links`` (self/next/prev) and the same links in a ``Link``
header (RFC 8288), made in one place (``market.schemas.PageSchema``)."""

from __future__ import annotations

import re

import pytest

from market.models import OrgKind
from tests import factories

PLANTS = "/api/v1/plants"


@pytest.fixture
def buyer(db_session) -> dict[str, str]:
    oem = factories.make_org(OrgKind.OEM)
    for _ in range(5):
        factories.make_site(oem)
    return factories.auth(factories.make_user(oem))


def _link_header(value: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="([a-z]+)"', value)}


def test_a_middle_page_links_to_both_neighbours_keeping_the_other_arguments(client, buyer):
    response = client.get(f"{PLANTS}?per_page=2&page=2", headers=buyer)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["meta"] == {"page": 2, "per_page": 2, "total": 5, "pages": 3}
    assert body["links"] == {
        "self": "http://localhost/api/v1/plants?per_page=2&page=2",
        "next": "http://localhost/api/v1/plants?per_page=2&page=3",
        "prev": "http://localhost/api/v1/plants?per_page=2&page=1",
    }
    assert _link_header(response.headers["Link"]) == body["links"]


def test_the_first_and_last_pages_have_no_prev_or_next(client, buyer):
    first = client.get(f"{PLANTS}?per_page=2", headers=buyer)
    assert first.get_json()["links"]["prev"] is None
    assert first.get_json()["links"]["next"].endswith("page=2")
    assert set(_link_header(first.headers["Link"])) == {"self", "next"}
    last = client.get(f"{PLANTS}?per_page=2&page=3", headers=buyer).get_json()
    assert last["links"]["next"] is None and last["links"]["prev"].endswith("page=2")


def test_a_page_past_the_end_points_back_to_the_last_page(client, buyer):
    body = client.get(f"{PLANTS}?per_page=2&page=9", headers=buyer).get_json()
    assert body["items"] == []
    assert body["links"]["next"] is None
    assert body["links"]["prev"].endswith("page=3")


def test_every_paginated_response_documents_links_and_the_link_header(client):
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    pages = [name for name in schemas if name.endswith("Page")]
    assert len(pages) >= 10
    for name in pages:
        assert "links" in schemas[name]["properties"], name
    paged = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            ok = operation["responses"].get("200", {})
            ref = ok.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref and ref.endswith("Page"):
                assert "Link" in ok.get("headers", {}), f"{method} {path}"
                paged += 1
    assert paged >= 10
