"""Pooled connections pinged only after idling (market.pool), against real PostgreSQL.

The server ends a pooled connection's backend (what a restart or a firewall does to an idle
connection); the next checkout must still get a working connection when the connection idled
long enough to be pinged, and a connection used moments ago is handed out unpinged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from market.pool import ping_idle_connections
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
