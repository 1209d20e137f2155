"""Periodic jobs, enqueued by RQ's cron scheduler: ``flask --app wsgi scheduler``.

- :func:`workers.outbox.sweep_outbox` every few seconds (5 by default): re-enqueues outbox
  rows Redis may have lost, marks rows dead at the attempt limit;
- :func:`warn_expiring_certifications` every few hours: tells a supplier's members (the
  ``certification.expiring``/``certification.expired`` events: inbox and email) 90, 60 and 30
  days before one of its certifications expires, and re-syncs the supplier to search once one
  has expired. It is idempotent (each notice has a unique key in ``notice_keys``), so running
  it often, or on two schedulers at once, never notifies twice;
- :func:`market.services.deliveries.refresh_performance_job` as often: recomputes suppliers'
  delivery performance scores (the opt-in ranking factor), whose 90-day window moves with the
  calendar; a changed score is re-synced to search;
- :func:`search.sync.reconcile_job` every 30 s when Elasticsearch is configured: compares the
  (id, version) pairs of the index with the database and rewrites what is missing or stale,
  so search converges after an outage even when sync rows went dead meanwhile;
- :func:`market.ledger.checkpoints.issue_checkpoint_job` every ``CHECKPOINT_EVERY_SECONDS``
  (300 by default): a signed checkpoint when the ledger grew. The embedded default, which has
  no scheduler, runs it in-process (:mod:`workers.embedded`).

The embedded default has no Redis and so no scheduler: its web process runs the outbox sweep,
the expiry check and the checkpoints itself (:mod:`workers.embedded`), and ``flask scheduler``
without Redis runs the same loop in the foreground instead (for when the web process's is off).

The scheduler only enqueues; workers run the jobs on the ``periodic`` queue, which they serve
before ``default``. A job nobody started within its ``ttl`` is dropped: the next one is due.
RQ's cron scheduler ends when Redis fails under it; :func:`run_scheduler` waits until Redis
answers again and starts a new one, so the sweeps resume by themselves after an outage.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from flask import Flask
from redis import Redis
from rq.cron import CronScheduler
from sqlalchemy import select

from market.clock import business_today
from market.extensions import db
from market.ledger.checkpoints import issue_checkpoint_job
from market.models import (
    Certification,
    CertStatus,
    NoticeKey,
    Organization,
    OutboxTopic,
)
from market.services.deliveries import refresh_performance_job
from market.services.events import EventKind, emit_event
from market.services.unit_of_work import commit, emit
from workers.outbox import sweep_outbox
from workers.queue import PERIODIC_QUEUE, REDIS_ERRORS, jobs, wait_for_redis

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 5
RECONCILE_EVERY_SECONDS = 30
CERTIFICATION_CHECK_EVERY_SECONDS = 6 * 3600
WARN_DAYS = (30, 60, 90)
# Expired certifications older than this are not looked at again (their notice went long ago).
EXPIRED_LOOKBACK_DAYS = 365


def _expiring_key(cert: Certification, threshold: int) -> str:
    return f"certification-expiring:{cert.id}:{cert.valid_until}:{threshold}"


def _expired_key(cert: Certification) -> str:
    return f"certification-expired:{cert.id}:{cert.valid_until}"


def _known_keys(keys: list[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        known.update(db.session.scalars(select(NoticeKey.key).where(NoticeKey.key.in_(chunk))))
    return known


def warn_expiring_certifications(today: date | None = None) -> dict[str, int]:
    """RQ job: expiry notices for active certifications; a search re-sync when one expired.

    A certification ``d`` days from its last valid day gets the notice of the smallest of
    90/60/30 that is ≥ d (one missed run never sends a stale "90 days" notice at 45 days).
    """
    today = today or business_today()
    session = db.session
    certs = list(
        session.scalars(
            select(Certification)
            .where(
                Certification.status == CertStatus.ACTIVE,
                Certification.valid_until.is_not(None),
                Certification.valid_until <= today + timedelta(days=max(WARN_DAYS)),
                Certification.valid_until >= today - timedelta(days=EXPIRED_LOOKBACK_DAYS),
            )
            .order_by(Certification.id)
        )
    )
    wanted: dict[str, tuple[Certification, EventKind, int]] = {}
    for cert in certs:
        assert cert.valid_until is not None
        days_left = (cert.valid_until - today).days
        if days_left < 0:
            wanted[_expired_key(cert)] = (cert, EventKind.CERTIFICATION_EXPIRED, days_left)
        else:
            threshold = min(t for t in WARN_DAYS if days_left <= t)
            wanted[_expiring_key(cert, threshold)] = (
                cert,
                EventKind.CERTIFICATION_EXPIRING,
                days_left,
            )
    report, resync = _announce(wanted)
    for organization_id in sorted(resync):
        organization = session.get(Organization, organization_id)
        if organization is not None:
            # Indexed data changed (a certification no longer valid): a new version to sync.
            organization.bump_version()
            emit(OutboxTopic.SEARCH_SYNC, organization_id, {"reason": "certification_expired"})
    commit()
    if report["warned"] or report["expired"]:
        log.info("certification expiry notices", extra=report)
    return report


def _announce(
    wanted: dict[str, tuple[Certification, EventKind, int]],
) -> tuple[dict[str, int], set[int]]:
    """Emit the notices not announced yet (no commit); returns the counts and the
    organisations whose certification expired."""
    known = _known_keys(list(wanted))
    report = {"warned": 0, "expired": 0}
    resync: set[int] = set()
    for key, (cert, kind, days_left) in wanted.items():
        if key in known:
            continue
        if kind is EventKind.CERTIFICATION_EXPIRED:
            resync.add(cert.organization_id)
            report["expired"] += 1
        else:
            report["warned"] += 1
        db.session.add(NoticeKey(key=key))
        emit_event(
            kind,
            organization_id=cert.organization_id,
            subject_type="certification",
            subject_id=cert.id,
            data={
                "standard": cert.standard,
                "number": cert.number,
                "valid_until": cert.valid_until.isoformat() if cert.valid_until else None,
                "days_left": days_left,
            },
        )
    return report, resync


def build_scheduler(
    app: Flask,
    *,
    sweep_every: int = SWEEP_EVERY_SECONDS,
    certifications_every: int = CERTIFICATION_CHECK_EVERY_SECONDS,
    reconcile_every: int = RECONCILE_EVERY_SECONDS,
    generation: int = 0,
) -> CronScheduler:
    """RQ's cron scheduler with the app's periodic jobs registered (call in an app context)."""
    transport = jobs()
    if transport.mode != "rq" or not transport.redis_url:
        raise RuntimeError("the scheduler needs REDIS_URL (jobs run inline without it)")
    queue = transport.queue_name(PERIODIC_QUEUE)
    prefix = transport.prefix
    scheduler = CronScheduler(
        connection=Redis.from_url(transport.redis_url),
        logging_level=app.config["LOG_LEVEL"],
        name=f"{prefix}-scheduler-{socket.gethostname()}-{os.getpid()}"
        + (f"-{generation}" if generation else ""),
    )
    checkpoint_every = int(app.config["CHECKPOINT_EVERY_SECONDS"])
    # (job, interval in seconds, job timeout, name); a job's ttl is its interval or a floor.
    periodic: list[tuple[Callable[[], Any], int, int, str, int]] = [
        (sweep_outbox, sweep_every, 60, "sweep-outbox", max(3 * sweep_every, 15)),
        (
            warn_expiring_certifications,
            certifications_every,
            600,
            "certification-expiry",
            certifications_every,
        ),
        (
            refresh_performance_job,
            certifications_every,
            600,
            "performance-refresh",
            certifications_every,
        ),
        # The first checkpoint after an upgrade hashes the whole ledger: a long timeout.
        (issue_checkpoint_job, checkpoint_every, 1800, "ledger-checkpoint", checkpoint_every),
    ]
    if app.config.get("ELASTICSEARCH_URL"):
        from search.sync import reconcile_job

        periodic.append(
            (reconcile_job, reconcile_every, 600, "search-reconcile", max(2 * reconcile_every, 30))
        )
    for job, interval, timeout, name, ttl in periodic:
        scheduler.register(
            job,
            interval=interval,
            job_timeout=timeout,
            ttl=ttl,
            name=f"{prefix}-{name}",
            queue_name=queue,
            result_ttl=300,
            failure_ttl=7 * 86400,
        )
    return scheduler


def run_scheduler(app: Flask, **intervals: int) -> None:
    """Enqueue the periodic jobs until stopped (SIGTERM/SIGINT), through Redis outages."""
    with app.app_context():
        generation = 0
        while True:
            scheduler = build_scheduler(app, generation=generation, **intervals)
            try:
                scheduler.start()
                return  # a stop signal
            except REDIS_ERRORS as exc:
                log.warning(
                    "scheduler lost Redis; it starts again once Redis answers",
                    extra={"error": type(exc).__name__},
                )
            if not wait_for_redis(scheduler.connection):
                return
            generation += 1
