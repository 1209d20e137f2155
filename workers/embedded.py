"""Periodic jobs inside the embedded default's own process (it has no scheduler or Redis).

The first request starts one daemon thread that runs each job at its interval in an app
context, as the RQ scheduler would enqueue it in production. Only where jobs run inline
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
    _start_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self._start_lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="embedded-periodic-jobs", daemon=True
                )
                self.thread.start()

    def _run(self) -> None:
        next_run = [0.0] * len(self.jobs)
        while not self.stop.is_set():
            for index, (job, interval) in enumerate(self.jobs):
                if time.monotonic() >= next_run[index]:
                    self._run_one(job)
                    next_run[index] = time.monotonic() + interval
            self.stop.wait(max(0.0, min(next_run) - time.monotonic()))

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
    from market.ledger.checkpoints import issue_checkpoint_job

    every = int(app.config["CHECKPOINT_EVERY_SECONDS"])
    runner = EmbeddedJobs(app, [(issue_checkpoint_job, every)])
    app.extensions["embedded_jobs"] = runner
    app.before_request(runner.start)
