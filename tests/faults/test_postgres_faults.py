"""PostgreSQL crashed and restarted under load, on a private cluster (never the shared one).

Four client threads record purchases over HTTP in a loop, each with its own Idempotency-Key and
retrying the same request on a 503 until it gets its 201 — what a well-behaved client does.
Meanwhile PostgreSQL is crashed (``pg_ctl stop -m immediate``, then a SIGKILLed postmaster) and
started again. During the outage requests must get a clean 503 (never a 500); afterwards every
acknowledged purchase is in the ledger exactly once, and there is no purchase nobody was told
about (a commit whose answer was lost is replayed by the key). Time to converge: from
PostgreSQL accepting connections again to every acknowledged purchase in the ledger.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from market.extensions import db
from market.models import Purchase
from tests.conftest import _unreachable, make_test_app
from tests.faults.harness import (
    Api,
    Reply,
    World,
    build_world,
    confirm_purchase,
    purchase_body,
)
from tests.faults.toolkit import PrivatePostgres, wait_until
from tests.timing import scaled

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

CONVERGE_WITHIN = 30.0
UNAVAILABLE = "A backing service is unavailable; try again shortly."


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not PrivatePostgres.available():
        _unreachable("PostgreSQL's server binaries", FileNotFoundError("initdb"))
    cluster = PrivatePostgres().init()
    cluster.start()
    yield cluster
    cluster.destroy()


class PurchaseLoad:
    """Threads recording purchases until stopped; each retries its request on 503."""

    def __init__(self, api: Api, world: World, threads: int = 4) -> None:
        self.api, self.world = api, world
        self.acknowledged: list[int] = []
        self.failed: list[Reply] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> PurchaseLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=scaled(60))

    def acked_since(self, count: int) -> int:
        with self._lock:
            return len(self.acknowledged) - count

    def _run(self, index: int) -> None:
        n = index * 100_000
        while not self.stopping.is_set():
            body = purchase_body(self.world, n)
            headers = self.world.buyer | {"Idempotency-Key": f"load-{uuid.uuid4()}"}
            n += 1
            created: dict[str, Any] | None = None
            deadline = time.monotonic() + 45
            while True:
                reply = self.api.post("/api/v1/purchases", body, headers)
                if reply.status == 201 and not created:
                    created = reply.json()
                if created:
                    # Acknowledged once the supplier's confirmation is: then it must count.
                    reply = confirm_purchase(self.api, self.world, created)
                if reply.status == 200:
                    with self._lock:
                        self.acknowledged.append(created["id"])
                    break
                if reply.status == 503 and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                with self._lock:
                    self.failed.append(reply)
                break


def test_postgres_restarted_during_load(private_postgres, redis_url, make_stack, scenario):
    report = scenario(
        "PostgreSQL crashed and restarted during load (private cluster)",
        "clean 503s during the outage; every 201 in the ledger once; no unacknowledged purchase",
    )
    url = private_postgres.create_database("market")
    setup = make_test_app(url)
    with setup.app_context():
        upgrade(revision="heads")
        world = build_world(3)
        db.session.remove()
        db.engine.dispose()
    engine = create_engine(url, poolclass=NullPool)
    stack = make_stack(
        database_url=url, redis_url=redis_url, world=world, engine=engine, name="pg-restart"
    )
    stack.processes.worker(ready=True)
    stack.processes.scheduler(every=1, ready=True)
    api = stack.api
    crashes = {
        "pg_ctl stop -m immediate": lambda: private_postgres.stop("immediate"),
        "SIGKILL of the postmaster": private_postgres.kill_postmaster,
    }
    with PurchaseLoad(api, world) as load:
        for run, (how, crash) in enumerate(crashes.items()):
            before = len(load.acknowledged)
            wait_until(lambda b=before: load.acked_since(b) >= 8, timeout=30, what="load")
            crash()
            down = time.monotonic()
            wait_until(
                lambda d=down: sum(r.status == 503 and r.started > d for r in api.replies) >= 3,
                timeout=10,
                what=f"run {run} ({how}): requests answered 503 during the outage",
            )
            private_postgres.start()
            up = time.monotonic()
            served = len(load.acknowledged)
            first = wait_until(
                lambda s=served: load.acked_since(s) >= 1,
                timeout=CONVERGE_WITHIN,
                what=f"run {run}: a purchase acknowledged after the restart",
            )
            report.notes.append(f"run {run} ({how}): first 201 {first:.2f} s after the restart")
            wait_until(lambda s=served: load.acked_since(s) >= 8, timeout=30, what="load again")
            acked = list(load.acknowledged)  # the load goes on: those answered so far
            wait_until(
                lambda a=acked: stack.check.ledger_has(a),
                timeout=CONVERGE_WITHIN,
                interval=0.1,
                what=lambda run=run: (
                    f"run {run}: acknowledged purchases in the ledger\n{stack.processes.logs()}"
                ),
            )
            report.converged(time.monotonic() - up)
    acknowledged = load.acknowledged
    assert not load.failed, [str(r) for r in load.failed]
    assert len(set(acknowledged)) == len(acknowledged)
    unavailable = [r for r in api.replies if r.status == 503]
    assert unavailable and all(r.json()["error"]["message"] == UNAVAILABLE for r in unavailable)
    report.notes.append(
        f"{len(acknowledged)} purchases acknowledged, {len(unavailable)} answers 503 meanwhile"
    )
    with engine.connect() as conn:
        # A commit whose answer was lost was replayed to its retry: nobody-knows purchases none.
        assert conn.scalar(select(func.count()).select_from(Purchase)) == len(acknowledged)
    wait_until(
        lambda: stack.check.ledger_caught_up(acknowledged),
        timeout=CONVERGE_WITHIN,
        what="the last purchases in the ledger",
    )
    stack.check.ledger_invariants(acknowledged)
    report.invariants |= stack.check.checked
    engine.dispose()


def test_a_connection_lost_after_the_answer_is_released_quietly(private_postgres, scenario):
    """The moment the load above hits only by chance, made certain: PostgreSQL dies after the
    request's last query, before the session's rollback at teardown. The teardown must not
    raise (an exception there escapes every error handler: werkzeug's HTML 500)."""
    report = scenario(
        "PostgreSQL lost between a request's last query and its teardown",
        "the request's answer stands; the dead connection is discarded quietly",
    )
    url = private_postgres.create_database("teardown")
    app = make_test_app(url)
    context = app.app_context()
    context.push()
    try:
        db.session.execute(select(1))  # the session's transaction is open...
        private_postgres.stop("immediate")  # ...and its server is gone
    finally:
        started = time.monotonic()
        context.pop()  # runs the teardowns: must not raise
    report.converged(time.monotonic() - started)
    private_postgres.start()
    with app.app_context():
        assert db.session.execute(select(1)).scalar() == 1  # the pool recovers
        db.session.remove()
        db.engine.dispose()
    report.invariants.add("I5")
