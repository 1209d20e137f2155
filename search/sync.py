"""Keeping the index in step with the database.

A change to a supplier's indexed data commits an outbox row (topic ``search.sync``, aggregate =
organization id) with the business rows. Three ways bring the index up to date, all idempotent
because documents carry the organization's version as an external version:

- :func:`sync_supplier`, the outbox handler: one row, one supplier, in the row's job;
- :func:`sync_pending`: many pending rows at once, re-read in one query, one bulk request,
  every item judged on its own;
- :func:`reconcile`: compare every (id, version) pair of the database and the index and rewrite
  the differences (after Elasticsearch lost data, or rows went dead during a long outage).

With the database backend there is no index: the handler succeeds without doing anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import select

from market.extensions import db
from market.models import Organization, OrgKind, OutboxEvent, OutboxStatus, OutboxTopic
from search.backends import SearchBackend
from search.current import search_backend
from workers.outbox import handles

log = logging.getLogger(__name__)

RECONCILE_CHUNK = 1000


class SyncFailed(Exception):
    """The index did not take a supplier's document; the outbox row stays pending."""


@handles(OutboxTopic.SEARCH_SYNC)
def sync_supplier(event: OutboxEvent) -> None:
    """Outbox handler: re-read the supplier and upsert its document (or mark it invisible)."""
    errors = search_backend().upsert_suppliers([event.aggregate_id])
    error = errors.get(event.aggregate_id)
    if error:
        raise SyncFailed(f"supplier {event.aggregate_id}: {error}")


def sync_events(
    events: list[OutboxEvent], backend: SearchBackend | None = None
) -> dict[int, str | None]:
    """Upsert the suppliers of many ``search.sync`` rows in one bulk request.

    Returns, per outbox row id, None (done) or the error of its supplier's item; the shape of a
    batch outbox handler, so the topic can move to batch processing without changes here.
    """
    backend = backend or search_backend()
    ids = {event.aggregate_id for event in events}
    try:
        results = backend.upsert_suppliers(ids)
    except Exception as exc:  # the index is unreachable: every row stays pending
        log.warning("search sync failed", extra={"error": type(exc).__name__})
        results = dict.fromkeys(ids, type(exc).__name__)
    return {event.id: results.get(event.aggregate_id, "not processed") for event in events}


@dataclass
class SyncReport:
    rows: int = 0
    suppliers: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # organization id → error


def sync_pending(limit: int = 500, backend: SearchBackend | None = None) -> SyncReport:
    """Job: process up to ``limit`` pending ``search.sync`` rows in one bulk request.

    Rows are locked with SKIP LOCKED (PostgreSQL), so this can run beside the per-row jobs;
    those find their row done afterwards and do nothing. A failed item leaves only its own rows
    pending (attempts + 1), never the whole batch.
    """
    backend = backend or search_backend()
    session = db.session
    rows = list(
        session.scalars(
            select(OutboxEvent)
            .where(
                OutboxEvent.topic == OutboxTopic.SEARCH_SYNC,
                OutboxEvent.status == OutboxStatus.PENDING,
            )
            .order_by(OutboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    report = SyncReport(rows=len(rows))
    if not rows:
        session.rollback()
        return report
    report.suppliers = len({row.aggregate_id for row in rows})
    errors = sync_events(rows, backend)
    now = datetime.now(UTC)
    max_attempts = current_app.config["OUTBOX_MAX_ATTEMPTS"]
    for row in rows:
        row.attempts += 1
        error = errors[row.id]
        if error is None:
            row.status = OutboxStatus.DONE
            row.processed_at = now
            row.worker_note = "search.sync_pending"
        else:
            report.failed[row.aggregate_id] = error
            row.last_error = f"SyncFailed: {error}"[:2000]
            if row.attempts >= max_attempts:
                row.status = OutboxStatus.DEAD
                log.error("outbox row is dead", extra={"outbox_id": row.id, "topic": row.topic})
    session.commit()
    return report


@dataclass
class ReconcileReport:
    database: int = 0
    indexed: int = 0
    stale: list[int] = field(default_factory=list)  # missing or older in the index
    extra: list[int] = field(default_factory=list)  # in the index, not a supplier any more
    # Newer in the index than in the database (a restored database): external versions keep
    # refusing the older rows, so only `flask search reindex` repairs these.
    ahead: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def reconcile(backend: SearchBackend | None = None, *, dry_run: bool = False) -> ReconcileReport:
    """Rewrite every document that is missing or older than the database's row.

    A document deleted by hand leaves a tombstone that refuses older external versions for
    ``index.gc_deletes`` (60 s); such a supplier converges on a later run.
    """
    from search.elastic import ElasticsearchBackend

    backend = backend or search_backend()
    report = ReconcileReport()
    if not isinstance(backend, ElasticsearchBackend):
        return report
    truth = dict(
        db.session.execute(
            select(Organization.id, Organization.version).where(
                Organization.kind == OrgKind.SUPPLIER
            )
        ).all()
    )
    report.database = len(truth)
    if not dry_run:
        backend.ensure_index()
    indexed = dict(backend.indexed_versions())
    report.indexed = len(indexed)
    report.stale = sorted(i for i, v in truth.items() if indexed.get(i, -1) < v)
    report.ahead = sorted(i for i, v in truth.items() if indexed.get(i, -1) > v)
    report.extra = sorted(set(indexed) - set(truth))
    if not dry_run:
        todo = [*report.stale, *report.extra]
        for start in range(0, len(todo), RECONCILE_CHUNK):  # bounded memory after a total loss
            results = backend.upsert_suppliers(todo[start : start + RECONCILE_CHUNK])
            report.failed.update({i: e for i, e in results.items() if e})
    return report


def reconcile_job() -> dict[str, int]:
    """RQ job (periodic): :func:`reconcile`, so the index converges after any loss.

    Cheap when the index is in step (one scan of ids and versions on each side); after
    Elasticsearch comes back empty it rewrites everything.
    """
    report = reconcile()
    if report.stale or report.extra or report.failed:
        log.warning(
            "search index reconciled",
            extra={
                "stale": len(report.stale),
                "extra": len(report.extra),
                "failed": len(report.failed),
            },
        )
    return {"stale": len(report.stale), "extra": len(report.extra), "failed": len(report.failed)}
