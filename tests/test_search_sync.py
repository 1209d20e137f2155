"""Keeping Elasticsearch in step: outbox sync, batch sync, versions, reindex, outages.

These commit for real (the sync runs after commit, in its own transaction), on an app wired to
the real Elasticsearch with an index prefix of its own.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from market.extensions import db
from market.models import (
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Role,
)
from market.services.unit_of_work import commit, emit
from search.current import search_backend
from search.elastic import ElasticsearchBackend
from search.reindex import ReindexFailed, reindex
from search.sync import reconcile, sync_pending
from tests import factories
from tests.conftest import RUN_ID, make_test_app

PLANT = factories.GUANGZHOU


def _app(database_url: str, **overrides: Any) -> Iterator[Flask]:
    application = make_test_app(database_url, **overrides)
    context = application.app_context()
    context.push()
    try:
        yield application
    finally:
        db.session.remove()
        db.engine.dispose()
        context.pop()


@pytest.fixture
def es_app(database_url, elasticsearch_url, committed_db) -> Iterator[Flask]:
    yield from _app(
        database_url,
        ELASTICSEARCH_URL=elasticsearch_url,
        ELASTICSEARCH_INDEX_PREFIX=f"{RUN_ID}-{uuid.uuid4().hex[:8]}",
    )


def elastic() -> ElasticsearchBackend:
    backend = search_backend()
    assert isinstance(backend, ElasticsearchBackend)
    return backend


def make_market() -> dict[str, Any]:
    """A buyer with a demand and two synced suppliers, committed (the sync runs inline)."""
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=PLANT)
    suppliers = []
    for lat in (23.2, 23.4):
        org = factories.make_org(tier=1, description="制动")
        factories.make_site(org, at=(lat, PLANT[1]))
        factories.make_capability(org, "chassis.braking")
        emit(OutboxTopic.SEARCH_SYNC, org.id)
        suppliers.append(org)
    demand = factories.make_demand(oem, plant, category="chassis")
    buyer = factories.make_user(oem)
    headers = factories.auth(buyer)
    commit()
    return {"demand_id": demand.id, "ids": [o.id for o in suppliers], "headers": headers}


def matched_ids(app: Flask, market: dict[str, Any]) -> list[int]:
    response = app.test_client().get(
        f"/api/v1/demands/{market['demand_id']}/matches", headers=market["headers"]
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["degraded"] is False
    return [item["supplier"]["id"] for item in response.get_json()["items"]]


@pytest.mark.elasticsearch
def test_a_suspended_supplier_disappears_after_the_sync(es_app):
    market = make_market()
    elastic().refresh()
    assert matched_ids(es_app, market) == market["ids"]

    org = db.session.get(factories.Organization, market["ids"][0])
    org.status = OrgStatus.SUSPENDED
    org.bump_version()
    emit(OutboxTopic.SEARCH_SYNC, org.id)
    commit()
    elastic().refresh()

    assert matched_ids(es_app, market) == market["ids"][1:]
    response = es_app.test_client().get(
        "/api/v1/suppliers/search?q=制动", headers=market["headers"]
    )
    assert [i["supplier"]["id"] for i in response.get_json()["items"]] == market["ids"][1:]
    # Still indexed, as invisible, at the new version.
    doc = elastic().client.get(index=elastic().alias, id=str(org.id))
    assert doc["_version"] == 2 and doc["_source"]["visible"] is False
    statuses = db.session.scalars(select(OutboxEvent.status)).all()
    assert set(statuses) == {OutboxStatus.DONE}


@pytest.mark.elasticsearch
def test_an_older_version_never_overwrites_a_newer_document(es_app):
    backend = elastic()
    backend.ensure_index()
    org = factories.make_org(tier=1, legal_name="新名字")
    factories.make_site(org, at=PLANT)
    org.version = 5
    db.session.commit()
    from search.documents import supplier_document

    newer = supplier_document(org)
    older = {**newer, "version": 3, "legal_name": "旧名字"}
    assert backend.write_documents([newer], refresh=True) == {org.id: None}
    # A late job with an older version: a 409 from Elasticsearch, which is success for a sync.
    assert backend.write_documents([older], refresh=True) == {org.id: None}
    doc = backend.client.get(index=backend.alias, id=str(org.id))
    assert doc["_version"] == 5 and doc["_source"]["legal_name"] == "新名字"


@pytest.mark.elasticsearch
def test_batch_sync_judges_every_item_on_its_own(es_app):
    good = []
    for _ in range(3):
        org = factories.make_org(tier=2)
        factories.make_site(org, at=PLANT)
        good.append(org)
    bad = factories.make_org(tier=2)
    factories.make_site(
        bad, at=(95.0, 113.0), city_code="440100", validate=False
    )  # not a latitude: Elasticsearch rejects the doc
    for org in [*good, bad, good[0]]:
        db.session.add(OutboxEvent(topic=OutboxTopic.SEARCH_SYNC, aggregate_id=org.id))
    db.session.commit()  # rows pending, not published

    report = sync_pending()
    assert report.rows == 5 and report.suppliers == 4
    assert set(report.failed) == {bad.id}
    rows = db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    assert [r.status for r in rows] == [
        OutboxStatus.DONE,
        OutboxStatus.DONE,
        OutboxStatus.DONE,
        OutboxStatus.PENDING,
        OutboxStatus.DONE,
    ]
    assert rows[3].attempts == 1 and "400" in rows[3].last_error
    elastic().refresh()
    assert elastic().count() == 3
    assert sync_pending().rows == 1  # only the failed one is left


@pytest.mark.elasticsearch
def test_reindex_swaps_the_alias_and_searches_never_stop(es_app):
    backend = elastic()
    # A stray write once auto-created a concrete index under the alias's name.
    backend.client.indices.create(index=backend.alias)
    market = make_market()
    first = reindex(backend)
    assert backend.alias_targets() == [first.index]
    assert not backend.client.indices.exists(index=backend.alias + "-initial")
    assert matched_ids(es_app, market) == market["ids"]

    seen_during: list[list[int]] = []

    def search_while_filling(_: int) -> None:
        seen_during.append(matched_ids(es_app, market))

    second = reindex(backend, batch_size=1, progress=search_while_filling)
    assert seen_during == [market["ids"], market["ids"]]
    assert backend.alias_targets() == [second.index]
    assert second.removed_indices == [first.index]
    assert not backend.client.indices.exists(index=first.index)
    assert backend.count() == 2
    assert matched_ids(es_app, market) == market["ids"]


@pytest.mark.elasticsearch
def test_a_reindex_with_a_refused_document_keeps_the_old_index(es_app):
    backend = elastic()
    market = make_market()
    first = reindex(backend)
    # A site the geo_point field refuses (written around the API, which validates coordinates).
    broken = factories.make_org(tier=1)
    factories.make_site(broken, at=(95.0, PLANT[1]), city_code="440100", validate=False)
    commit()

    with pytest.raises(ReindexFailed, match="1 documents failed"):
        reindex(backend, batch_size=1)

    assert backend.alias_targets() == [first.index]
    assert [name for name in backend.client.indices.get(index=backend.alias + "-*")] == [
        first.index
    ]
    assert matched_ids(es_app, market) == market["ids"]


@pytest.mark.elasticsearch
def test_after_elasticsearch_lost_its_index_reconcile_restores_it(es_app):
    market = make_market()
    backend = elastic()
    for index in backend.alias_targets():
        backend.delete_index(index)  # as if the node came back empty

    # A change meanwhile: its sync fails (no alias; nothing is auto-created) and stays pending.
    org = db.session.get(factories.Organization, market["ids"][1])
    org.description = "制动 changed"
    org.bump_version()
    emit(OutboxTopic.SEARCH_SYNC, org.id)
    commit()
    [row] = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.status == OutboxStatus.PENDING)
    ).all()
    assert "404" in row.last_error
    assert not backend.client.indices.exists(index=backend.alias)

    assert reconcile(backend, dry_run=True).stale == market["ids"]
    assert not backend.client.indices.exists(index=backend.alias)  # a dry run creates nothing
    report = reconcile(backend)
    assert report.stale == market["ids"] and report.indexed == 0 and not report.failed
    assert sync_pending().failed == {}
    backend.refresh()
    assert reconcile(backend).stale == []
    assert matched_ids(es_app, market) == market["ids"]
    doc = backend.client.get(index=backend.alias, id=str(org.id))
    assert doc["_source"]["description"] == "制动 changed"


@pytest.mark.elasticsearch
def test_the_search_commands(es_app):
    make_market()
    runner = es_app.test_cli_runner()
    result = runner.invoke(args=["search", "reindex", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "2 suppliers indexed" in result.output
    result = runner.invoke(args=["search", "status"])
    assert result.exit_code == 0, result.output
    assert "stale or missing: 0" in result.output
    result = runner.invoke(args=["search", "sync-pending", "--reconcile"])
    assert result.exit_code == 0, result.output
    assert "0 rows" in result.output and "reconcile: 0 stale" in result.output


# --- Elasticsearch down or slow ---------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Elasticsearch)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def down_app(database_url, committed_db) -> Iterator[Flask]:
    yield from _app(database_url, ELASTICSEARCH_URL="http://127.0.0.1:1")


def test_elasticsearch_down_the_database_answers_marked_degraded(down_app):
    market = make_market()  # the write commits although the sync cannot reach the index
    rows = db.session.scalars(select(OutboxEvent)).all()
    assert {r.status for r in rows} == {OutboxStatus.PENDING}
    assert all(r.attempts == 1 and r.last_error for r in rows)

    client = down_app.test_client()
    response = client.get(
        f"/api/v1/demands/{market['demand_id']}/matches", headers=market["headers"]
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["degraded"] is True
    assert [i["supplier"]["id"] for i in body["items"]] == market["ids"]
    response = client.get("/api/v1/suppliers/search?q=制动", headers=market["headers"])
    assert response.get_json()["degraded"] is True
    assert response.get_json()["meta"]["total"] == 2


def test_without_fallback_search_is_503_with_a_clear_message(down_app):
    down_app.config["SEARCH_FALLBACK"] = False
    market = make_market()
    response = down_app.test_client().get(
        f"/api/v1/demands/{market['demand_id']}/matches", headers=market["headers"]
    )
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "service_unavailable"
    assert "Search is temporarily unavailable" in error["message"]
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_a_hung_elasticsearch_costs_one_timeout_then_fails_fast(
    database_url, committed_db, silent_port
):
    for application in _app(
        database_url,
        ELASTICSEARCH_URL=f"http://127.0.0.1:{silent_port}",
        ELASTICSEARCH_TIMEOUT=0.5,
    ):
        auditor = factories.make_user(role=Role.AUDITOR)
        headers = factories.auth(auditor)
        db.session.commit()
        client = application.test_client()
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            response = client.get("/api/v1/suppliers/search", headers=headers)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
            assert response.get_json()["degraded"] is True
        assert 0.4 < timings[0] < 3
        assert max(timings[1:]) < 0.4  # the breaker is open: no second wait
