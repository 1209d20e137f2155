"""Periodic jobs inside the embedded default's own process (it has no scheduler or Redis).

The jobs: the outbox sweep (every ``EMBEDDED_SWEEP_EVERY_SECONDS``, 60 by default: emails whose
SMTP server was down, events whose sink failed, are retried by it), the certificate expiry
check (every ``EMBEDDED_CERTIFICATIONS_EVERY_SECONDS``, daily by default, and once at start)
and the ledger checkpoints (every ``CHECKPOINT_EVERY_SECONDS``).

The first request starts one daemon thread that runs each job at its interval in an app
context, as the RQ scheduler would enqueue it in production. ``flask scheduler`` without
Redis runs the same jobs in the foreground instead (set ``EMBEDDED_PERIODIC_JOBS=0`` for the
web process then, or both run them: harmless, see below). Only where jobs run inline
(no ``REDIS_URL``), never in tests (``TESTING``) unless asked, never for CLI commands (they
serve no request). The jobs are idempotent and take their own locks, so two processes of
the embedded default running them at once do no harm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


@dataclass
class EmbeddedJobs:
    """The thread and its jobs: (function, interval in seconds)."""

    app: Flask
    jobs: list[tuple[Callable[[], Any], int]]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    next_run: list[float] = field(default_factory=list)
    _start_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self._start_lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="embedded-periodic-jobs", daemon=True
                )
                self.thread.start()

    def run_due(self, now: float) -> list[str]:
        """Run every job due at monotonic time ``now`` (each is due at once the first time);
        returns their names. The loop calls it; tests drive it with their own clock."""
        if not self.next_run:
            self.next_run = [0.0] * len(self.jobs)
        ran = []
        for index, (job, interval) in enumerate(self.jobs):
            if now >= self.next_run[index]:
                self._run_one(job)
                self.next_run[index] = now + interval
                ran.append(job.__name__)
        return ran

    def run_forever(self) -> None:
        """Run the jobs at their intervals until ``stop`` is set (the thread, or the
        foreground of ``flask scheduler`` without Redis)."""
        while not self.stop.is_set():
            self.run_due(time.monotonic())
            self.stop.wait(max(0.0, min(self.next_run) - time.monotonic()))

    def _run(self) -> None:
        self.run_forever()

    def _run_one(self, job: Callable[[], Any]) -> None:
        with self.app.app_context():
            try:
                job()
            except Exception:
                # The job has logged and recorded its failure; the next run tries again.
                log.exception("embedded periodic job failed", extra={"job": job.__name__})


def init_embedded_jobs(app: Flask) -> None:
    """Run the periodic jobs in-process where nothing else would (the embedded default).

    ``EMBEDDED_PERIODIC_JOBS`` forces it on or off; unset, it is on unless ``TESTING``.
    """
    wanted = app.config.get("EMBEDDED_PERIODIC_JOBS")
    if wanted is None:
        wanted = not app.config.get("TESTING")
    if app.config["JOB_MODE"] != "inline" or not wanted:
        return
    runner = EmbeddedJobs(app, embedded_jobs(app))
    app.extensions["embedded_jobs"] = runner
    app.before_request(runner.start)


def embedded_jobs(app: Flask) -> list[tuple[Callable[[], Any], int]]:
    """The periodic jobs and their intervals (seconds) where no RQ scheduler runs them."""
    from market.ledger.checkpoints import issue_checkpoint_job
    from market.services.deliveries import refresh_performance_job
    from workers.outbox import sweep_outbox
    from workers.scheduler import warn_expiring_certifications

    config = app.config
    return [
        (sweep_outbox, int(config["EMBEDDED_SWEEP_EVERY_SECONDS"])),
        (warn_expiring_certifications, int(config["EMBEDDED_CERTIFICATIONS_EVERY_SECONDS"])),
        (issue_checkpoint_job, int(config["CHECKPOINT_EVERY_SECONDS"])),
        # Delivery performance (the opt-in ranking factor): its 90-day window moves daily.
        (refresh_performance_job, int(config["EMBEDDED_CERTIFICATIONS_EVERY_SECONDS"])),
    ]
