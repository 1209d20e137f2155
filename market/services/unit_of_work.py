"""Committing a use case: business rows and outbox rows in one transaction, then publish.

A service function adds its rows, calls :func:`emit` for the asynchronous work it causes, and
ends with :func:`commit` — the only place in the services that commits. After the commit the
outbox rows are handed to the job transport; if that fails (Redis down) nothing is lost: the
rows stay pending and the sweeper enqueues them later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from market.extensions import db
from market.models import OutboxEvent, OutboxTopic

_PENDING_KEY = "outbox_pending"
_INSERTED_KEY = "outbox_inserted"


def emit(
    topic: OutboxTopic, aggregate_id: int, payload: dict[str, Any] | None = None
) -> OutboxEvent:
    """Record asynchronous work in the current transaction (published after commit)."""
    event = OutboxEvent(topic=topic, aggregate_id=aggregate_id, payload=payload or {})
    db.session.add(event)
    db.session.info.setdefault(_PENDING_KEY, []).append(event)
    return event


def emitted(topic: OutboxTopic, outbox_id: int) -> None:
    """An outbox row the use case inserted itself (with its own writes, in plain SQL): published
    after the commit like those of :func:`emit`."""
    db.session.info.setdefault(_INSERTED_KEY, {})[outbox_id] = topic


def commit() -> None:
    """Commit the use case, then publish the outbox rows it emitted."""
    session = db.session
    events: list[OutboxEvent] = session.info.pop(_PENDING_KEY, [])
    inserted: dict[int, OutboxTopic] = session.info.pop(_INSERTED_KEY, {})
    try:
        session.flush()
        topics = {event.id: event.topic for event in events}  # read before commit expires them
        topics.update(inserted)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    if topics:
        if _publisher is None:
            raise RuntimeError("No outbox publisher: create_app wires workers.outbox.publish.")
        _publisher(list(topics), topics)


Publisher = Callable[[list[int], Mapping[int, OutboxTopic]], None]
_publisher: Publisher | None = None


def set_publisher(publisher: Publisher) -> None:
    """Set what runs the committed outbox rows' jobs (``workers.outbox.publish``, wired by
    ``create_app``: this layer does not import the workers)."""
    global _publisher
    _publisher = publisher


def rollback() -> None:
    db.session.info.pop(_PENDING_KEY, None)
    db.session.info.pop(_INSERTED_KEY, None)
    db.session.rollback()


F = TypeVar("F", bound=Callable[..., Any])


def reads_only(view: F) -> F:
    """The view only reads: its statements run outside a transaction (DBAPI autocommit).

    Saves the BEGIN and the ROLLBACK, two round trips of the five a ranked-matches request
    made. Only for views whose reads need no common snapshot (each statement stands alone) and
    that write nothing but the sign-in bookkeeping (a token's last use, committed at once
    either way). Put it above ``allow`` so it runs before the caller is loaded. The pool
    restores the connection's transactions when it is returned.
    """

    @functools.wraps(view)
    def without_transaction(*args: Any, **kwargs: Any) -> Any:
        session = db.session()  # this request's Session (db.session is its registry)
        if session.in_transaction() or not isinstance(session.get_bind(), Engine):
            return view(*args, **kwargs)  # begun already, or pinned to a connection (tests)
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        try:
            return view(*args, **kwargs)
        finally:
            # The connection goes back to the pool now: whatever else runs in this app
            # context (a test's next request, a command) gets a transaction again.
            session.rollback()

    return without_transaction  # type: ignore[return-value]
