"""Database round trips saved without losing a guarantee, against real PostgreSQL.

- Pooled connections pinged only after idling (``market.pool``): the server ends a pooled
  connection's backend (what a restart or a firewall does to an idle connection); the next
  checkout still gets a working connection when the connection idled long enough to be
  pinged, and a connection used moments ago is handed out unpinged.
- Read-only views without a transaction (``unit_of_work.reads_only``): their statements run in
  autocommit, and the connection goes back with its transactions restored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from market.extensions import db
from market.models import OrgKind
from market.pool import ping_idle_connections
from tests import factories
from tests.conftest import USE_POSTGRES

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="ends a PostgreSQL backend"),
]


@pytest.fixture
def pooled(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend_of(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    other = create_engine(database_url, poolclass=None)
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            conn.commit()
    finally:
        other.dispose()


def test_an_idle_connection_ended_by_the_server_is_replaced_before_use(pooled, database_url):
    ping_idle_connections(pooled, idle_seconds=0)  # every reuse counts as idle: pinged
    first = _backend_of(pooled)
    _terminate(database_url, first)
    second = _backend_of(pooled)  # no error: the ping found it dead, the pool opened another
    assert second != first


def test_a_connection_used_moments_ago_is_not_pinged(pooled, database_url, monkeypatch):
    ping_idle_connections(pooled, idle_seconds=3600)
    pings: list[object] = []
    real_ping = pooled.dialect.do_ping
    monkeypatch.setattr(pooled.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    first = _backend_of(pooled)
    assert _backend_of(pooled) == first
    assert pings == []
    # The trade-off, said plainly: a connection ended within those seconds fails the
    # statement that finds it (the request answers 503), and the pool replaces it for the next.
    _terminate(database_url, first)
    with pytest.raises(OperationalError):
        _backend_of(pooled)
    assert _backend_of(pooled) != first


def test_read_only_views_run_without_a_transaction_and_leave_none_behind(app, committed_db):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=factories.GUANGZHOU, name="工厂")
    supplier = factories.make_org(tier=1)
    factories.make_site(supplier, at=factories.GUANGZHOU, name="供应商工厂")
    factories.make_capability(supplier, "chassis.braking")
    demand = factories.make_demand(oem, plant, category="chassis.braking")
    headers = factories.auth(factories.make_user(oem))
    demand_id, supplier_id = demand.id, supplier.id
    committed_db.commit()  # and no ORM object touched after it: a refresh would begin one
    seen: list[tuple[bool, str]] = []

    def record(conn, _cursor, statement, *_args) -> None:
        seen.append((conn.connection.dbapi_connection.autocommit, statement.split()[0]))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        client = app.test_client()  # this app context stays pushed: its session too
        matches_url = f"/api/v1/demands/{demand_id}/matches"
        # The token's first use is recorded with a commit (at most once a minute), which
        # ends the autocommit connection's use: the rest of that request has a transaction.
        assert client.get(matches_url, headers=headers).status_code == 200
        seen[:] = []
        response = client.get(matches_url, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert [s["supplier"]["id"] for s in response.get_json()["items"]] == [supplier_id]
        matches, seen[:] = list(seen), []
        assert len(matches) >= 3 and all(autocommit for autocommit, _ in matches), matches
        response = client.get("/api/v1/demands", headers=headers)  # an ordinary view
        assert response.status_code == 200, response.get_json()
        assert seen and not any(autocommit for autocommit, _ in seen), seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
