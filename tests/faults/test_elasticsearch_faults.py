"""Elasticsearch down, slow, rejecting items: writes go on, search degrades cleanly, the index
converges after recovery.

The app (over HTTP) and the worker processes reach Elasticsearch through a :class:`FaultProxy`;
the checks read the real node directly. Suppliers change during the fault (a profile edit, a
suspension, a supplier hiding itself, a new site); after the fault heals, the index's
(id, version) pairs must equal the database's within 30 s (I4) — the time is the scenario's
"time to converge".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from sqlalchemy import update

from market.models import OutboxTopic, Site
from search.sync import reconcile
from tests.conftest import make_test_app
from tests.faults.conftest import Stack
from tests.faults.harness import Api, ApiServer, Reply, build_world
from tests.faults.toolkit import FaultProxy, wait_until
from workers import outbox

pytestmark = [pytest.mark.faults, pytest.mark.elasticsearch, pytest.mark.redis]

CONVERGE_WITHIN = 30.0  # RELIABILITY.md I4
ES_TIMEOUT = 1.0
SEARCH = "/api/v1/suppliers/search?q=制动"


@pytest.fixture
def es(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    client = Elasticsearch(elasticsearch_url, request_timeout=10, max_retries=0)
    yield client
    client.close()


@pytest.fixture
def es_proxy(elasticsearch_url: str) -> Iterator[FaultProxy]:
    port = int(elasticsearch_url.rsplit(":", 1)[1].strip("/"))
    proxy = FaultProxy(port).start()
    yield proxy
    proxy.stop()


def search_stack(
    make_stack: Any,
    request: pytest.FixtureRequest,
    proxy: FaultProxy,
    name: str,
    *,
    suppliers: int = 4,
    scheduler_args: tuple[str, ...] = (),
    **worker_env: str,
) -> Stack:
    """A synced world behind the proxy: app over HTTP, one worker, the sweeper every second."""
    world = build_world(suppliers, sync=True)
    stack = make_stack(
        database_url=request.getfixturevalue("database_url"),
        redis_url=request.getfixturevalue("redis_url"),
        world=world,
        engine=request.getfixturevalue("engine"),
        name=name,
        elasticsearch_url=f"http://{proxy.url_host_port}",
        app_settings={"ELASTICSEARCH_TIMEOUT": ES_TIMEOUT, "SEARCH_BREAKER_SECONDS": 0.5},
        worker_env={"ELASTICSEARCH_TIMEOUT": str(ES_TIMEOUT), **worker_env},
    )
    stack.processes.worker(ready=True)
    stack.processes.scheduler(1, *scheduler_args, ready=True)
    publish_pending(stack)
    return stack


def alias_of(stack: Stack) -> str:
    return f"{stack.prefix}-suppliers"


def publish_pending(stack: Stack) -> None:
    with stack.app.app_context():
        outbox.publish([event.id for event in outbox.pending_events()])


def wait_converged(stack: Stack, es: Elasticsearch, what: str) -> float:
    """Poll until the index equals the database; meanwhile users keep searching (what they
    are shown while the index catches up is checked by I4 afterwards)."""

    def converged() -> bool:
        stack.api.get(SEARCH, stack.world.buyer)
        return stack.check.index_converged(es, alias_of(stack))

    return wait_until(
        converged,
        timeout=CONVERGE_WITHIN,
        interval=0.1,
        what=lambda: f"{what}: the index to equal the database\n{stack.processes.logs()}",
    )


def visible_ids(stack: Stack) -> set[int]:
    return set(stack.check.database_versions()) - stack.check.invisible_suppliers()


def found(reply: Reply) -> set[int]:
    return {item["supplier"]["id"] for item in reply.json()["items"]}


def assert_ok(reply: Reply, status: int = 200) -> Reply:
    assert reply.status == status, reply
    return reply


def strict_server(stack: Stack, database_url: str) -> ApiServer:
    """A second app on the same stack that answers 503 instead of falling back."""
    app = make_test_app(
        database_url,
        REDIS_URL=stack.app.config["REDIS_URL"],
        JOB_MODE="rq",
        RQ_QUEUE_PREFIX=stack.prefix,
        ELASTICSEARCH_URL=stack.app.config["ELASTICSEARCH_URL"],
        ELASTICSEARCH_INDEX_PREFIX=stack.prefix,
        ELASTICSEARCH_TIMEOUT=ES_TIMEOUT,
        SEARCH_BREAKER_SECONDS=0.5,
        SEARCH_FALLBACK=False,
    )
    return ApiServer(app)


def profile(version: int, **changes: Any) -> dict[str, Any]:
    """A whole supplier profile (PUT replaces it) that still matches the test's search."""
    return {"tier": 1 + version % 3, "description": f"制动 卡钳 第{version}版", **changes}


def change_suppliers(stack: Stack, run: int, hidden_since: dict[int, float]) -> None:
    """Writes during the fault: each must succeed at once (they only commit outbox rows)."""
    world, api = stack.world, stack.api
    editor = world.suppliers[0 if run % 2 == 0 else 3]  # never one hidden below
    edit = assert_ok(
        api.put(f"/api/v1/suppliers/{editor.id}/profile", profile(run), editor.headers)
    )
    assert edit.elapsed < 2.0, edit
    if run == 0:  # an admin suspends a supplier
        victim = world.suppliers[1]
        reply = api.post(f"/api/v1/organizations/{victim.id}/suspend", {}, world.admin)
        assert_ok(reply)
        hidden_since[victim.id] = time.monotonic()
    elif run == 1:  # a supplier hides itself from search
        shy = world.suppliers[2]
        reply = api.put(
            f"/api/v1/suppliers/{shy.id}/profile", profile(run, listed=False), shy.headers
        )
        assert_ok(reply)
        hidden_since[shy.id] = time.monotonic()
    else:  # a new site
        site = {"name": f"二厂 {run}", "city_code": "440300", "lat": 22.6, "lon": 114.1}
        assert_ok(api.post(f"/api/v1/suppliers/{editor.id}/sites", site, editor.headers), 201)


def assert_degraded_search(stack: Stack, strict: Api | None) -> None:
    """The fallback answers from the database (flagged); the strict app answers a clean 503."""
    reply = assert_ok(stack.api.get(SEARCH, stack.world.buyer))
    assert reply.json()["degraded"] is True, reply
    assert found(reply) == visible_ids(stack), reply
    assert reply.elapsed < ES_TIMEOUT + 3, reply
    if strict is not None:
        refused = strict.get(SEARCH, stack.world.buyer)
        assert refused.status == 503, refused
        assert "Search is temporarily unavailable" in refused.json()["error"]["message"]


def search_recovered(stack: Stack) -> bool:
    reply = stack.api.get(SEARCH, stack.world.buyer)
    return (
        reply.status == 200
        and reply.json()["degraded"] is False
        and found(reply) == visible_ids(stack)
    )


def final_checks(
    stack: Stack, es: Elasticsearch, hidden_since: dict[int, float], *, all_done: bool = True
) -> None:
    wait_until(lambda: search_recovered(stack), timeout=10, what="search answered by the index")
    check = stack.check
    check.i4_search_converged(es, alias_of(stack))
    check.i4_no_hidden_supplier_in_results(hidden_since)
    if all_done:
        wait_until(
            lambda: not check._unfinished(), timeout=CONVERGE_WITHIN, what="every outbox row done"
        )
    check.i7_failures_listed()
    check.i5_clean_failures()


# --- the scenarios ----------------------------------------------------------------------------


def test_elasticsearch_down_writes_go_on_and_the_index_converges(
    fresh_db, engine, database_url, es, es_proxy, make_stack, request, scenario
):
    report = scenario(
        "Elasticsearch down (connections cut)",
        "writes 2xx; search degraded (database) or 503; index converges after heal",
    )
    stack = search_stack(make_stack, request, es_proxy, "es-down")
    wait_converged(stack, es, "the first sync")
    hidden_since: dict[int, float] = {}
    with strict_server(stack, database_url) as strict_app:
        strict = Api(strict_app.url)
        for run in range(3):
            es_proxy.cut()
            change_suppliers(stack, run, hidden_since)
            assert_degraded_search(stack, strict)
            es_proxy.heal()
            report.converged(wait_converged(stack, es, f"run {run}"))
        stack.check.i5_clean_failures(strict.replies)
    final_checks(stack, es, hidden_since)
    report.invariants |= stack.check.checked


def test_elasticsearch_slow_answers_degrade_within_the_timeout(
    fresh_db, engine, database_url, es, es_proxy, make_stack, request, scenario
):
    report = scenario(
        "Elasticsearch slow (latency > ELASTICSEARCH_TIMEOUT)",
        "searches time out into the database fallback; writes unaffected; index converges",
    )
    stack = search_stack(make_stack, request, es_proxy, "es-slow")
    wait_converged(stack, es, "the first sync")
    hidden_since: dict[int, float] = {}
    for run in range(2):
        es_proxy.set_latency(ES_TIMEOUT * 1.5)
        change_suppliers(stack, run, hidden_since)
        assert_degraded_search(stack, None)
        es_proxy.heal()
        report.converged(wait_converged(stack, es, f"run {run}"))
    final_checks(stack, es, hidden_since)
    report.invariants |= stack.check.checked


def test_elasticsearch_rejecting_bulk_items(
    fresh_db, engine, database_url, es, es_proxy, make_stack, request, scenario
):
    blocked = scenario(
        "Elasticsearch rejecting writes (index write block, 403 per item)",
        "rejected syncs stay pending with their error, listed for the admin; converge on unblock",
    )
    refused = scenario(
        "Elasticsearch rejecting one supplier's document (mapping error, 400 per item)",
        "the other items of the bulk are written; the failure is listed; converges once fixed",
    )
    stack = search_stack(make_stack, request, es_proxy, "es-reject")
    wait_converged(stack, es, "the first sync")
    world, api, check = stack.world, stack.api, stack.check
    (index,) = es.indices.get_alias(name=alias_of(stack))

    # 1. The index refuses every write for a moment (an operator's write block, a full disk).
    for run in range(2):
        es.indices.put_settings(index=index, settings={"index.blocks.write": True})
        try:
            change_suppliers(stack, run, {})
            wait_until(
                lambda: check.failing_rows_listed(OutboxTopic.SEARCH_SYNC),
                timeout=10,
                what="the rejected sync to be listed for the admin",
            )
            check.i7_failures_listed()
            listed = check.failing_rows_listed(OutboxTopic.SEARCH_SYNC)
            assert all("403" in item["last_error"] for item in listed), listed
        finally:
            es.indices.put_settings(index=index, settings={"index.blocks.write": None})
        blocked.converged(wait_converged(stack, es, f"unblocked, run {run}"))

    # 2. One supplier's document is refused by the mapping (a latitude out of range, written
    # behind the application's back), in the same bulk as good documents.
    bad, good = world.suppliers[0], world.suppliers[3]
    with engine.begin() as conn:
        conn.execute(update(Site).where(Site.id == bad.site_id).values(lat=95.0))
    assert_ok(api.put(f"/api/v1/suppliers/{bad.id}/profile", profile(7), bad.headers))
    assert_ok(api.put(f"/api/v1/suppliers/{good.id}/profile", profile(8), good.headers))
    wait_until(
        lambda: [
            item
            for item in check.failing_rows_listed(OutboxTopic.SEARCH_SYNC)
            if item["aggregate_id"] == bad.id and "400" in item["last_error"]
        ],
        timeout=10,
        what="the refused document's row to be listed with its error",
    )
    # The batch path (reconcile) judges each item on its own: the good one is written.
    with stack.app.app_context():
        batch = reconcile()
    assert set(batch.failed) == {bad.id}, batch
    assert set(check.index_difference(es, alias_of(stack))) == {bad.id}
    check.i7_failures_listed()
    # The admin corrects the site through the API: a new version, synced.
    fix = {"lat": 22.55}
    assert_ok(api.patch(f"/api/v1/suppliers/{bad.id}/sites/{bad.site_id}", fix, world.admin))
    started = time.monotonic()
    wait_converged(stack, es, "the corrected supplier")
    refused.converged(time.monotonic() - started)
    final_checks(stack, es, {})
    blocked.invariants |= check.checked
    refused.invariants |= check.checked


def test_elasticsearch_down_longer_than_the_retry_budget(
    fresh_db, engine, database_url, es, es_proxy, make_stack, request, scenario
):
    """An outage outlasting every retry of the sync rows (compressed: 2 attempts allowed).

    The rows die (kept, listed for the admin); the periodic reconciliation rewrites what the
    index missed. The scheduler reconciles every 5 s here (the default is every 30 s).
    """
    report = scenario(
        "Elasticsearch down longer than the sync's retry budget",
        "sync rows die and are listed for the admin; the periodic reconcile converges the index",
    )
    stack = search_stack(
        make_stack,
        request,
        es_proxy,
        "es-long",
        scheduler_args=("--reconcile-every", "5"),
        OUTBOX_MAX_ATTEMPTS="2",
    )
    wait_converged(stack, es, "the first sync")
    hidden_since: dict[int, float] = {}
    es_proxy.cut()
    change_suppliers(stack, 0, hidden_since)
    dead = wait_until(
        lambda: (
            len([item for item in stack.check.admin_outbox().values() if item["status"] == "dead"])
            >= 2
        ),
        timeout=20,
        what="the syncs made during the outage to die",
    )
    report.notes.append(f"sync rows dead {dead:.1f} s into the outage")
    stack.check.i7_failures_listed()
    assert_degraded_search(stack, None)
    es_proxy.heal()
    report.converged(wait_converged(stack, es, "after a long outage"))
    final_checks(stack, es, hidden_since, all_done=False)
    report.invariants |= stack.check.checked
