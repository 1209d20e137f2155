"""The outbox relay: hand committed outbox rows to workers, and process them there.

Each topic has one handler, registered by the area that owns it (the ledger, the search sync).
A handler does its work in the job's transaction; the row is marked done in that same
transaction, so a job that dies before its commit leaves the row pending for a retry, and a job
delivered twice finds the row done (or the handler's own unique constraint) and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from market.extensions import db
from market.models import OutboxEvent, OutboxStatus, OutboxTopic
from workers.queue import enqueue

log = logging.getLogger(__name__)

Handler = Callable[[OutboxEvent], None]
_HANDLERS: dict[OutboxTopic, Handler] = {}


def handles(topic: OutboxTopic) -> Callable[[Handler], Handler]:
    """Register the handler of a topic."""

    def register(func: Handler) -> Handler:
        _HANDLERS[topic] = func
        return func

    return register


def job_id_for(event_id: int) -> str:
    return f"outbox-{event_id}"


def publish(event_ids: list[int]) -> None:
    """After commit: enqueue one job per outbox row (inline mode runs them now)."""
    for event_id in event_ids:
        enqueue(process_outbox_event, event_id, job_id=job_id_for(event_id))


def process_outbox_event(event_id: int) -> None:
    """RQ job: run the topic's handler for one outbox row, exactly once in effect."""
    from workers.registry import load_handlers

    load_handlers()
    session = db.session
    # FOR UPDATE on PostgreSQL: two deliveries of one job serialise (SQLite locks the file).
    event = session.get(OutboxEvent, event_id, with_for_update=True)
    if event is None or event.status is not OutboxStatus.PENDING:
        session.rollback()
        return
    handler = _HANDLERS.get(event.topic)
    if handler is None:
        session.rollback()
        raise LookupError(f"no handler registered for outbox topic {event.topic}")
    try:
        handler(event)
        event.status = OutboxStatus.DONE
        event.processed_at = datetime.now(UTC)
        event.attempts += 1
        session.commit()
    except Exception as exc:
        session.rollback()
        _record_failure(event_id, exc)
        raise


def _record_failure(event_id: int, exc: Exception) -> None:
    from flask import current_app

    event = db.session.get(OutboxEvent, event_id)
    if event is None:
        return
    event.attempts += 1
    event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if event.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
        event.status = OutboxStatus.DEAD
        log.error("outbox row is dead", extra={"outbox_id": event_id, "topic": str(event.topic)})
    db.session.commit()


def pending_events(limit: int = 1000) -> list[OutboxEvent]:
    return list(
        db.session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.status == OutboxStatus.PENDING)
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
    )
