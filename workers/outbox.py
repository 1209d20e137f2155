"""The outbox relay: hand committed outbox rows to workers, process them there, sweep.

Each topic has one handler, registered by the area that owns it:

- :func:`handles` registers a per-row handler (the search sync): one job per row, run by
  :func:`process_outbox_event` in the job's transaction; the row is marked done in that same
  transaction, so a job that dies before its commit leaves the row pending for a retry, and a
  job delivered twice finds the row done and does nothing.
- :func:`handles_batch` registers a batch handler (the ledger): :func:`drain` takes up to
  ``batch_size`` pending rows of its topics at a time, optionally under the handler's lock, and
  marks them done in the same transaction as the handler's writes. :func:`publish` enqueues one
  drain job however many rows were committed (a Redis flag coalesces the requests), so a burst
  of purchases costs one job, not one per purchase.

Rows whose processing fails are retried (RQ retries, then the sweeper); after
``OUTBOX_MAX_ATTEMPTS`` failures a row is marked ``dead``: kept, listed for admins
(``flask outbox list``, ``GET /api/v1/admin/outbox``) and retried on request
(``flask outbox retry-dead``), never dropped. :func:`sweep_outbox`, a periodic job, re-enqueues
rows still pending after ``OUTBOX_STALE_SECONDS`` (Redis may have lost their jobs).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from market.extensions import db
from market.models import OutboxEvent, OutboxStatus, OutboxTopic
from market.services.pagination import Page, paginate
from market.services.unit_of_work import commit, rollback
from workers.queue import DRAIN_QUEUE, PERIODIC_QUEUE, enqueue, jobs

log = logging.getLogger(__name__)

Handler = Callable[[OutboxEvent], None]


@dataclass(frozen=True)
class OutboxItem:
    """What a batch handler gets of a row (plain values: no ORM objects for 500 rows)."""

    id: int
    topic: OutboxTopic
    aggregate_id: int
    payload: dict[str, Any]


# Returns, per row id, None (done) or an error message (the row failed; the others go on).
BatchHandlerFunc = Callable[[list[OutboxItem]], Mapping[int, str | None]]

DRAIN_BUDGET_SECONDS = 40.0  # below the job timeout; a longer backlog continues in a new job
DRAIN_FLAG_TTL = 120  # a lost drain job's flag expires; the sweeper does not wait for it
SWEEP_LIMIT = 5000


@dataclass(frozen=True)
class BatchHandler:
    name: str
    topics: tuple[OutboxTopic, ...]
    handle: BatchHandlerFunc
    lock: Callable[[], None] | None
    batch_size: int


_HANDLERS: dict[OutboxTopic, Handler] = {}
_BATCH_HANDLERS: dict[str, BatchHandler] = {}
_BATCH_BY_TOPIC: dict[OutboxTopic, BatchHandler] = {}


def handles(topic: OutboxTopic) -> Callable[[Handler], Handler]:
    """Register the per-row handler of a topic."""

    def register(func: Handler) -> Handler:
        _HANDLERS[topic] = func
        return func

    return register


def handles_batch(
    *topics: OutboxTopic,
    name: str,
    lock: Callable[[], None] | None = None,
    batch_size: int = 500,
) -> Callable[[BatchHandlerFunc], BatchHandlerFunc]:
    """Register a batch handler for ``topics``; ``lock`` runs first in every batch transaction."""

    def register(func: BatchHandlerFunc) -> BatchHandlerFunc:
        spec = BatchHandler(name, tuple(topics), func, lock, batch_size)
        _BATCH_HANDLERS[name] = spec
        for topic in topics:
            _BATCH_BY_TOPIC[topic] = spec
        return func

    return register


def job_id_for(event_id: int) -> str:
    return f"outbox-{event_id}"


# --- publishing --------------------------------------------------------------------------------


def publish(event_ids: list[int], topics: Mapping[int, OutboxTopic] | None = None) -> None:
    """After commit: one drain per batch handler concerned, one job per other row.

    ``topics`` (id → topic) saves reading them back when the caller knows them. Never raises:
    the rows are committed, and whatever is not enqueued now the sweeper will.
    """
    if not event_ids:
        return
    try:
        if topics is None:
            topics = {
                event_id: topic
                for event_id, topic in db.session.execute(
                    select(OutboxEvent.id, OutboxEvent.topic).where(OutboxEvent.id.in_(event_ids))
                )
            }
    except Exception as exc:
        db.session.rollback()
        log.warning(
            "could not publish outbox rows; the sweeper will",
            extra={"rows": len(event_ids), "error": type(exc).__name__},
        )
        return
    drains: list[str] = []
    for event_id in event_ids:
        topic = topics.get(event_id)
        spec = _BATCH_BY_TOPIC.get(topic) if topic is not None else None
        if spec is None:
            enqueue(process_outbox_event, event_id, job_id=job_id_for(event_id))
        elif spec.name not in drains:
            drains.append(spec.name)
    for name in drains:
        request_drain(name)


def _drain_flag(name: str) -> str:
    return jobs().key(f"drain:{name}:queued")


def request_drain(name: str, *, force: bool = False) -> bool:
    """Enqueue a drain of batch handler ``name`` unless one is queued and not started yet.

    A queued drain clears the flag when it starts, before it reads the outbox, so rows committed
    before this call are always seen by it. ``force`` (the sweeper) enqueues regardless.
    """
    transport = jobs()
    if transport.mode == "rq":
        try:
            first = transport.connection().set(_drain_flag(name), "1", nx=True, ex=DRAIN_FLAG_TTL)
        except Exception as exc:
            log.warning(
                "could not request a drain; the sweeper will",
                extra={"drain": name, "error": type(exc).__name__},
            )
            return False
        if not first and not force:
            return True
    return enqueue(drain, name, job_id=f"drain-{name}-{uuid.uuid4().hex[:16]}", queue=DRAIN_QUEUE)


def _clear_drain_flag(name: str) -> None:
    transport = jobs()
    if transport.mode != "rq":
        return
    try:
        transport.connection().delete(_drain_flag(name))
    except Exception as exc:  # the flag expires on its own
        log.warning("could not clear the drain flag", extra={"error": type(exc).__name__})


# --- processing --------------------------------------------------------------------------------


def _is_outage(exc: BaseException) -> bool:
    """The database is unreachable or busy: not the row's fault, so no attempt is counted."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def process_outbox_event(event_id: int) -> None:
    """RQ job: run the topic's handler for one outbox row, exactly once in effect."""
    session = db.session
    row = session.execute(
        select(OutboxEvent.topic, OutboxEvent.status).where(OutboxEvent.id == event_id)
    ).first()
    if row is None or row.status is not OutboxStatus.PENDING:
        session.rollback()
        return
    batch = _BATCH_BY_TOPIC.get(row.topic)
    if batch is not None:
        session.rollback()
        drain(batch.name)
        return
    handler = _HANDLERS.get(row.topic)
    if handler is None:
        session.rollback()
        raise LookupError(f"no handler registered for outbox topic {row.topic}")
    # FOR UPDATE on PostgreSQL: two deliveries of one job serialise (SQLite locks the file).
    event = session.get(OutboxEvent, event_id, with_for_update=True)
    if event is None or event.status is not OutboxStatus.PENDING:
        session.rollback()
        return
    try:
        handler(event)
        event.status = OutboxStatus.DONE
        event.processed_at = datetime.now(UTC)
        event.attempts += 1
        commit()  # publishes the outbox rows the handler emitted (events, email, webhooks)
    except Exception as exc:
        rollback()
        if not _is_outage(exc):
            _record_failure(event_id, f"{type(exc).__name__}: {exc}")
        raise


def _fail(event: OutboxEvent, message: str) -> None:
    """Count a failed attempt on a row (in the caller's transaction); dead at the limit."""
    event.attempts += 1
    event.last_error = message[:2000]
    if event.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
        event.status = OutboxStatus.DEAD
        log.error(
            "outbox row is dead",
            extra={"outbox_id": event.id, "topic": str(event.topic), "error": message[:300]},
        )
    else:
        log.warning(
            "outbox row failed; it will be retried",
            extra={"outbox_id": event.id, "topic": str(event.topic), "error": message[:300]},
        )


def _record_failure(event_id: int, message: str) -> None:
    event = db.session.get(OutboxEvent, event_id)
    if event is None or event.status is not OutboxStatus.PENDING:
        db.session.rollback()
        return
    _fail(event, message)
    db.session.commit()


def drain(name: str, *, budget_seconds: float = DRAIN_BUDGET_SECONDS) -> int:
    """RQ job: process every pending row of batch handler ``name``, batch by batch.

    Returns the number of rows taken (done or failed). A row that fails is not taken again by
    this run: it waits for a later drain (the sweeper's), so a transient fault is not counted
    eight times in a millisecond.
    """
    spec = _BATCH_HANDLERS[name]
    _clear_drain_flag(name)
    deadline = time.monotonic() + budget_seconds
    skip: set[int] = set()
    taken = 0
    while True:
        count, more = _drain_batch(spec, skip)
        taken += count
        if not more:
            break
        if time.monotonic() >= deadline:
            request_drain(name, force=True)
            break
    if taken:
        log.info("drained outbox rows", extra={"drain": name, "rows": taken})
    return taken


def _drain_batch(
    spec: BatchHandler, skip: set[int], only: list[int] | None = None
) -> tuple[int, bool]:
    """One transaction: lock, take pending rows, handle them, mark them. Returns (taken, more)."""
    session = db.session
    ids: list[int] = []
    try:
        if spec.lock is not None:
            spec.lock()
        query = (
            select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.aggregate_id, OutboxEvent.payload)
            .where(OutboxEvent.status == OutboxStatus.PENDING, OutboxEvent.topic.in_(spec.topics))
            .order_by(OutboxEvent.id)
            .limit(spec.batch_size)
            .with_for_update()
        )
        if skip:
            query = query.where(OutboxEvent.id.not_in(skip))
        if only is not None:
            query = query.where(OutboxEvent.id.in_(only))
        events = [OutboxItem(*row) for row in session.execute(query)]
        ids = [event.id for event in events]
        if not events:
            session.commit()
            return 0, False
        errors = spec.handle(events)
        done = [event.id for event in events if errors.get(event.id) is None]
        if done:
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(done))
                .values(
                    status=OutboxStatus.DONE,
                    processed_at=datetime.now(UTC),
                    attempts=OutboxEvent.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
        for event_id, error in errors.items():
            if error is not None:
                failed = session.get(OutboxEvent, event_id)
                if failed is not None:
                    _fail(failed, error)
                skip.add(event_id)
        commit()  # publishes the outbox rows the handler emitted (events of the ledger)
        return len(events), len(events) == spec.batch_size
    except Exception as exc:
        rollback()
        if _is_outage(exc) or not ids:
            raise
        if len(ids) == 1:
            _record_failure(ids[0], f"{type(exc).__name__}: {exc}")
            skip.add(ids[0])
            return 1, True
        # One bad row must not stop the others: redo this batch one row at a time.
        log.warning("batch failed; isolating its rows", extra={"drain": spec.name})
        for event_id in ids:
            _drain_batch(spec, skip, only=[event_id])
        return len(ids), True


# --- the sweeper and dead rows -----------------------------------------------------------------


def sweep_outbox(limit: int = SWEEP_LIMIT) -> dict[str, int]:
    """RQ job (periodic): re-enqueue rows still pending after ``OUTBOX_STALE_SECONDS``.

    Rows already at ``OUTBOX_MAX_ATTEMPTS`` are marked dead instead. The rows' ``enqueued_at``
    is committed before enqueueing, so a sweep waits another stale period before the next try.
    """
    config = current_app.config
    session = db.session
    now = datetime.now(UTC)
    stale_before = now - timedelta(seconds=config["OUTBOX_STALE_SECONDS"])
    rows = list(
        session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.status == OutboxStatus.PENDING,
                func.coalesce(OutboxEvent.enqueued_at, OutboxEvent.created_at) <= stale_before,
            )
            .order_by(OutboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    dead = drains = 0
    drain_names: list[str] = []
    singles: list[int] = []
    for row in rows:
        if row.attempts >= config["OUTBOX_MAX_ATTEMPTS"]:
            row.status = OutboxStatus.DEAD
            dead += 1
            continue
        row.enqueued_at = now
        spec = _BATCH_BY_TOPIC.get(row.topic)
        if spec is None:
            singles.append(row.id)
        elif spec.name not in drain_names:
            drain_names.append(spec.name)
    session.commit()
    for name in drain_names:
        drains += request_drain(name, force=True)
    enqueued = sum(
        enqueue(process_outbox_event, event_id, job_id=job_id_for(event_id), unless_live=True)
        for event_id in singles
    )
    report = {"stale": len(rows), "dead": dead, "drains": drains, "enqueued": enqueued}
    if rows:
        log.info("outbox swept", extra=report)
    return report


def enqueue_sweep() -> bool:
    """Ask a worker for a sweep now (``flask outbox sweep``)."""
    return enqueue(
        sweep_outbox, job_id=f"sweep-{uuid.uuid4().hex[:16]}", queue=PERIODIC_QUEUE, retries=0
    )


def pending_events(limit: int = 1000) -> list[OutboxEvent]:
    """The oldest pending rows."""
    return list(
        db.session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.status == OutboxStatus.PENDING)
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
    )


def outbox_page(
    statuses: Iterable[OutboxStatus], topic: OutboxTopic | None, page: int, per_page: int
) -> Page:
    """Outbox rows with the given statuses, oldest first (admins: dead and pending work)."""
    query = select(OutboxEvent).where(OutboxEvent.status.in_(list(statuses)))
    if topic is not None:
        query = query.where(OutboxEvent.topic == topic)
    return paginate(query.order_by(OutboxEvent.id), page, per_page)


def outbox_counts() -> dict[str, int]:
    rows = db.session.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status))
    counts = {status.value: 0 for status in OutboxStatus}
    counts.update({status.value: count for status, count in rows})
    return counts


def retry_dead(event_ids: Iterable[int] | None = None) -> list[int]:
    """Put dead rows (all, or these) back to pending with a fresh count, and publish them."""
    query = select(OutboxEvent).where(OutboxEvent.status == OutboxStatus.DEAD)
    if event_ids is not None:
        query = query.where(OutboxEvent.id.in_(list(event_ids)))
    now = datetime.now(UTC)
    rows = list(db.session.scalars(query.order_by(OutboxEvent.id).with_for_update()))
    for row in rows:
        row.status = OutboxStatus.PENDING
        row.attempts = 0
        row.enqueued_at = now
        row.worker_note = f"retried after being dead, {now.isoformat(timespec='seconds')}"
    ids = [row.id for row in rows]
    db.session.commit()
    publish(ids)
    return ids


def describe(event: OutboxEvent) -> dict[str, Any]:
    """A row for admins; the error is its first line only (database errors carry their SQL
    on the following lines, which no response body shows)."""
    error = event.last_error.splitlines()[0][:300] if event.last_error else None
    return {
        "id": event.id,
        "topic": event.topic.value,
        "aggregate_id": event.aggregate_id,
        "status": event.status.value,
        "attempts": event.attempts,
        "last_error": error,
        "created_at": event.created_at,
        "enqueued_at": event.enqueued_at,
        "processed_at": event.processed_at,
    }
