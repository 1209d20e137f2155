"""The RQ worker: ``flask --app wsgi worker`` (see ``market/commands/ledger.py``).

One process per worker, listening on the app's queues (``periodic`` first, then ``default``),
with RQ's scheduler thread-process so retries with a delay come back (``--no-scheduler`` to
leave that to another worker). Each job runs in a forked work-horse inside the app context of
the parent; the database engine is disposed before every fork, so a horse never shares a
connection with its parent or a sibling (ckan's and redash's worker do the same). Every log
line of a job carries its job id.

Redis may vanish at any time. RQ's own loop waits for it while idle, but quits when Redis
fails mid-job (or during its maintenance); :func:`run_worker` then waits until Redis answers
again and starts a fresh worker in the same process, so a Redis outage never leaves the
deployment without workers. Only a stop signal (or ``--burst``/``--max-jobs``) ends it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask
from redis import Redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from sqlalchemy.orm import configure_mappers

from market import geo
from market.extensions import db
from market.ledger.policy import DEFAULT_POLICY
from market.logs import set_log_context
from workers.queue import QUEUES, REDIS_ERRORS, jobs, wait_for_redis
from workers.registry import load_handlers

log = logging.getLogger(__name__)
# How long the command-channel thread may sleep: a stop waits for it at most this long.
PUBSUB_POLL_SECONDS = 1.0


class AppWorker(Worker):
    """An RQ worker whose jobs run in the Flask app context it was started in."""

    stop_signalled = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        # Remembered so that run_worker can tell a stop from a lost Redis.
        self.stop_signalled = True
        try:
            super().request_stop(signum, frame)
        except REDIS_ERRORS:  # RQ asks Redis for the worker's state first
            raise StopRequested() from None

    def subscribe(self) -> None:
        """RQ's subscription to its command channel, with a thread that wakes every second.

        RQ polls with ``sleep_time=60``; once unsubscribed at shutdown, redis-py's thread then
        waits up to 60 s for a subscription that never comes, and ``unsubscribe`` (RQ's
        teardown) joins it without a deadline: an idle worker took a minute to stop on SIGTERM.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )

    def execute_job(self, job: Job, queue: Queue) -> Any:
        # Pooled connections must not cross the fork: the horse would share the parent's
        # sockets. The pool re-opens on the next use.
        db.session.remove()
        db.engine.dispose()
        set_log_context(worker=self.name, job_id=job.id)
        try:
            return super().execute_job(job, queue)
        finally:
            set_log_context(worker=self.name)

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        # Runs in the horse, which exits with os._exit right after: close cleanly first.
        try:
            return bool(super().perform_job(job, queue, *args, **kwargs))
        finally:
            db.session.remove()
            db.engine.dispose()


def _stopped(worker: AppWorker) -> Callable[[], bool]:
    return lambda: worker.stop_signalled


def worker_name(prefix: str, generation: int = 0) -> str:
    suffix = f"-{generation}" if generation else ""
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}{suffix}"


def run_worker(
    app: Flask,
    *,
    queues: Sequence[str] = QUEUES,
    burst: bool = False,
    with_scheduler: bool = True,
    max_jobs: int | None = None,
) -> bool:
    """Work the app's queues until stopped (or, with ``burst``, until they are empty)."""
    with app.app_context():
        transport = jobs()
        if transport.mode != "rq" or not transport.redis_url:
            raise RuntimeError("the worker needs REDIS_URL (jobs run inline without it)")
        # Import the job modules and configure the ORM mappers once here, not in every
        # forked horse (each would spend a quarter of a second on it).
        load_handlers()
        configure_mappers()
        # Likewise the province outline the ledger's near-shore verdict reads (~1-6 ms to parse).
        geo.province_boundary(DEFAULT_POLICY.province_prefix)
        # Its own connection: RQ raises its socket timeout above the blocking pop's.
        connection = Redis.from_url(transport.redis_url)
        generation = 0
        while True:
            # A new name after a loss: the previous one may still be registered in Redis.
            worker = AppWorker(
                [transport.queue(name, connection) for name in queues],
                connection=connection,
                name=worker_name(transport.prefix, generation),
            )
            set_log_context(worker=worker.name)
            log.info("worker starting", extra={"queues": [transport.queue_name(q) for q in queues]})
            try:
                worked = worker.work(
                    burst=burst,
                    with_scheduler=with_scheduler,
                    max_jobs=max_jobs,
                    logging_level=app.config["LOG_LEVEL"],
                )
                if burst or max_jobs is not None or worker.stop_signalled:
                    return worked
                reason = "the work loop ended"
            except REDIS_ERRORS as exc:  # RQ could not even record its own end
                if worker.stop_signalled:
                    return False
                reason = type(exc).__name__
            log.warning(
                "worker lost Redis; it starts again once Redis answers", extra={"reason": reason}
            )
            if not wait_for_redis(connection, stopped=_stopped(worker)):
                return False
            generation += 1
