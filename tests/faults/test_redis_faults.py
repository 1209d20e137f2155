"""Redis down, and Redis restarted empty with jobs queued: nothing acknowledged is lost.

The app (over HTTP), the workers and the scheduler use a private Redis server that the test kills
with SIGKILL and starts again empty on the same port. PostgreSQL is the source of truth: every
purchase answered 201 has its outbox row committed, and the sweeper re-enqueues what Redis lost.
Time to converge: from Redis being back to every acknowledged purchase being in the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Stack, StackFactory
from tests.faults.harness import Reply, build_world, confirm_purchase, purchase_body
from tests.faults.toolkit import PrivateRedis, wait_until
from workers.queue import DRAIN_QUEUE, jobs

pytestmark = [pytest.mark.faults, pytest.mark.redis]

CONVERGE_WITHIN = 30.0


@pytest.fixture
def private_redis(tmp_path: Path, redis_url: str) -> Iterator[PrivateRedis]:
    """A Redis of the test's own (``redis_url`` only proves Redis is installed and reachable)."""
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def redis_stack(
    make_stack: StackFactory, private_redis: PrivateRedis, engine, database_url, name: str
) -> Stack:
    return make_stack(
        database_url=database_url,
        redis_url=private_redis.url,
        world=build_world(3),
        engine=engine,
        name=name,
    )


def buy(stack: Stack, n: int) -> Reply:
    """The buyer records a purchase and its supplier confirms it: both answer 2xx, fast."""
    reply = stack.api.post("/api/v1/purchases", purchase_body(stack.world, n), stack.world.buyer)
    assert reply.status == 201, reply
    assert reply.elapsed < 3.0, reply  # Redis being down costs a refused connection, no more
    confirmed = confirm_purchase(stack.api, stack.world, reply.json())
    assert confirmed.status == 200, confirmed
    assert confirmed.elapsed < 3.0, confirmed
    return reply


def wait_recorded(stack: Stack, acknowledged: list[int], what: str) -> float:
    return wait_until(
        lambda: stack.check.ledger_caught_up(acknowledged),
        timeout=CONVERGE_WITHIN,
        interval=0.1,
        what=lambda: f"{what}: every acknowledged purchase in the ledger\n{stack.processes.logs()}",
    )


def queued_drains(stack: Stack) -> int:
    """Jobs waiting in the drains queue (the ledger's; the scheduler's own jobs go to the
    periodic queue, which it refills at once after a restart)."""
    with stack.app.app_context():
        return jobs().queue(DRAIN_QUEUE).count


def test_redis_down_during_purchases(
    fresh_db, engine, database_url, private_redis, make_stack, scenario
):
    report = scenario(
        "Redis down during POST /purchases (SIGKILL, restarted empty)",
        "purchases 201 while Redis is down; after restart the sweeper enqueues; ledger complete",
    )
    stack = redis_stack(make_stack, private_redis, engine, database_url, "redis-down")
    stack.processes.worker(ready=True)
    stack.processes.scheduler(every=1, ready=True)
    acknowledged: list[int] = []
    n = 0
    for run in range(3):
        for _ in range(2):  # Redis up
            acknowledged.append(buy(stack, n).json()["id"])
            n += 1
        private_redis.kill()
        for _ in range(5):  # Redis down: still 201
            acknowledged.append(buy(stack, n).json()["id"])
            n += 1
        ready = stack.api.get("/readyz")
        assert ready.status == 200 and ready.json()["checks"]["redis"]["status"] == "down", ready
        private_redis.start()  # empty: whatever was queued is gone
        report.converged(wait_recorded(stack, acknowledged, f"run {run}"))
    stack.check.ledger_invariants(acknowledged)
    report.invariants |= stack.check.checked


def test_redis_restarted_empty_with_jobs_queued(
    fresh_db, engine, database_url, private_redis, make_stack, scenario
):
    report = scenario(
        "Redis restarted empty with jobs queued",
        "jobs lost with Redis; a worker started, the sweeper re-enqueues from the outbox",
    )
    stack = redis_stack(make_stack, private_redis, engine, database_url, "redis-empty")
    stack.processes.scheduler(every=1, ready=True)  # it rides out the restarts
    acknowledged: list[int] = []
    n = 0
    for run in range(3):
        # No worker is running: the purchases' drain job waits in Redis...
        for _ in range(6):
            acknowledged.append(buy(stack, n).json()["id"])
            n += 1
        assert queued_drains(stack) >= 1
        private_redis.restart_empty()  # ...and is lost.
        assert queued_drains(stack) == 0
        restarted = time.monotonic()
        worker = stack.processes.worker()
        wait_recorded(stack, acknowledged, f"run {run}")
        report.converged(time.monotonic() - restarted)
        stack.processes.terminate(worker)  # idle again
    stack.check.ledger_invariants(acknowledged)
    report.invariants |= stack.check.checked
