"""Pooled database connections checked before use only when they sat idle.

SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one round trip more on every request,
a sixth of a ranked-matches request's database time. A connection checked in moments ago is
alive with the same confidence as one just pinged; one that sat idle may have been cut (a
PostgreSQL restart, a firewall's idle timeout). So only a connection idle for
``DATABASE_PING_IDLE_SECONDS`` is pinged; a dead one is replaced before the request sees it
(SQLAlchemy's documented disconnect handling: raising ``DisconnectionError`` at checkout makes
the pool retry with a new connection).

A connection that dies while busy, or within those seconds of its last use, fails the
statement that finds it dead: the request answers 503 (``market.errors``), SQLAlchemy
invalidates every connection of the pool opened before that moment, and the client's retry
gets a fresh one — as with ``pool_pre_ping``, which cannot catch those either.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

_CHECKED_IN_AT = "market.checked_in_at"


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a connection at checkout only if it was checked in ``idle_seconds`` ago or more."""

    @event.listens_for(engine, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # just opened, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # Whatever went wrong, this connection is not one to hand out: a new one is.
            raise DisconnectionError("a pooled connection failed its ping after idling") from exc
