"""Where jobs go: RQ queues on Redis, or inline execution in the embedded default.

Every enqueue goes through :func:`enqueue`, which sets the timeout, TTLs, retries and a stable
job id. Job ids and queue names carry the configured prefix (``RQ_QUEUE_PREFIX``), so several
deployments (or test runs) can share one Redis without ever touching each other's jobs.

Queues, in the order a worker serves them: ``periodic`` (the sweeper and other scheduled jobs,
first so a backlog never delays recovery), ``drains`` (the batch drains of the outbox: the
ledger's, so a burst of notifications and search syncs never delays the money, nor the retry
of a drain whose work-horse died), then ``default`` (one job per outbox row).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"
DRAIN_QUEUE = "drains"
PERIODIC_QUEUE = "periodic"
QUEUES = (PERIODIC_QUEUE, DRAIN_QUEUE, DEFAULT_QUEUE)
JOB_TIMEOUT = 60
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600
RETRY_INTERVALS = [1, 5, 15]
# A job in one of these states will still run: enqueueing it again would only run it twice.
LIVE_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
REDIS_WAIT_MAX_SECONDS = 30.0


def embedded_redis(app: Flask) -> Redis:
    """A client of this process's embedded redis-server (``workers.embedded_redis``; embedded
    default only), started on first use; the server stops with the process."""
    if "embedded_redis" not in app.extensions:
        from workers.embedded_redis import embedded_redis_server

        server = embedded_redis_server(Path(app.config["INSTANCE_DIR"]))
        app.extensions["embedded_redis"] = server.client()
        app.extensions["embedded_redis_socket"] = server.socket_file
    return app.extensions["embedded_redis"]


@dataclass
class JobQueues:
    """The configured job transport of one app."""

    mode: str  # "rq" or "inline"
    prefix: str
    redis_url: str | None

    # One client (and its connection pool) per app and process: a new TCP connection per
    # enqueue cost ~5 ms a request. The pool reconnects after Redis restarts and resets itself
    # in a forked child (it checks the pid).
    _client: Redis | None = field(default=None, init=False, repr=False, compare=False)

    def connection(self) -> Redis:
        if not self.redis_url:
            return embedded_redis(current_app)
        if self._client is None:
            self._client = Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=5
            )
        return self._client

    def queue_name(self, name: str = DEFAULT_QUEUE) -> str:
        return f"{self.prefix}:{name}"

    def queue(self, name: str = DEFAULT_QUEUE, connection: Redis | None = None) -> Queue:
        return Queue(self.queue_name(name), connection=connection or self.connection())

    def job_id(self, job_id: str) -> str:
        """The Redis-wide job id: the prefix, then the caller's stable id."""
        return _UNSAFE_ID_CHARS.sub("_", f"{self.prefix}-{job_id}")

    def key(self, name: str) -> str:
        """A Redis key of this deployment (for small coordination flags)."""
        return f"{self.prefix}:{name}"

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        kind = "redis" if self.redis_url else "redis (embedded)"
        try:
            self.connection().ping()
        except Exception as exc:
            return {"status": "down", "kind": kind, "error": type(exc).__name__}
        latency = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "ok", "kind": kind, "jobs": self.mode, "latency_ms": latency}


def wait_for_redis(connection: Redis, stopped: Callable[[], bool] = lambda: False) -> bool:
    """Pause, then ping with growing pauses until Redis answers (True) or ``stopped()`` (False).

    For the worker and scheduler processes after Redis failed under them. The first pause also
    keeps a loop that keeps failing from spinning. RQ's signal handlers stay installed while
    this waits: the StopRequested they raise ends the wait too.
    """
    pause = 1.0
    try:
        while not stopped():
            time.sleep(pause)
            try:
                connection.ping()
                return not stopped()
            except REDIS_ERRORS:
                pause = min(pause * 2, REDIS_WAIT_MAX_SECONDS)
    except StopRequested:
        pass
    return False


def init_jobs(app: Flask) -> None:
    app.extensions["jobs"] = JobQueues(
        mode=app.config["JOB_MODE"],
        prefix=app.config["RQ_QUEUE_PREFIX"],
        redis_url=app.config.get("REDIS_URL"),
    )


def jobs() -> JobQueues:
    return current_app.extensions["jobs"]


def job_is_live(job_id: str, connection: Redis | None = None) -> bool:
    """True if the (unprefixed) job is queued, running, scheduled or deferred in Redis."""
    transport = jobs()
    try:
        job = Job.fetch(transport.job_id(job_id), connection=connection or transport.connection())
        return job.get_status(refresh=False) in LIVE_STATES
    except NoSuchJobError:
        return False


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    job_id: str,
    queue: str = DEFAULT_QUEUE,
    timeout: int = JOB_TIMEOUT,
    retries: int = 3,
    ttl: int | None = None,
    result_ttl: int = RESULT_TTL,
    unless_live: bool = False,
) -> bool:
    """Run ``func(*args)`` in a worker (or inline). Returns False if Redis could not take it.

    A False return is not an error for the caller: the work is in the outbox, and the sweeper
    enqueues it again once Redis is back. ``unless_live`` skips the enqueue when a job with this
    id is still going to run. ``ttl`` drops a job nobody started within that many seconds.
    """
    transport = jobs()
    if transport.mode == "inline":
        try:
            func(*args)
        except Exception:
            log.exception("inline job failed", extra={"job_id": job_id})
            return False
        return True
    try:
        connection = transport.connection()
        if unless_live and job_is_live(job_id, connection):
            return True
        transport.queue(queue, connection).enqueue_call(
            func,
            args=args,
            job_id=transport.job_id(job_id),
            timeout=timeout,
            ttl=ttl,
            result_ttl=result_ttl,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=retries, interval=RETRY_INTERVALS[:retries]) if retries else None,
        )
    except Exception as exc:
        log.warning(
            "enqueue failed; the sweeper will retry",
            extra={"job_id": job_id, "error": type(exc).__name__},
        )
        return False
    return True
