"""Work-horses and workers killed at the worst moments: nothing lost, nothing doubled.

The job is stopped exactly where wanted by a PostgreSQL lock the test holds, never by a sleep or
a hook in the code: the test sees the job's backend wait for that lock (``pg_stat_activity``),
then SIGKILLs the process. ``tests/test_workers.py`` covers the moments "waiting for the ledger
lock" and "inside its insert"; here:

- after its insert, before its commit: the drain has inserted the entries and waits to mark the
  outbox rows done (the test holds ``outbox_events`` in SHARE mode, which lets the drain lock
  rows but not update them);
- after its commit: 501 rows make two batches; the first commits 500 entries, the second waits
  for row 501, which the test has locked;
- the worker parent killed while its horse works (the orphaned horse finishes alone), and a
  worker killed with its whole process group and its horse (its job is lost; RQ's scheduler
  lock stays taken for about a minute, so the outbox sweeper hands the work to a new worker).

Time to converge: from the kill (and the lock's release) to every purchase in the ledger.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from sqlalchemy import Connection, text

from market.ledger.append import LEDGER_LOCK_KEY
from tests.conftest import USE_POSTGRES
from tests.faults.conftest import Stack, StackFactory
from tests.faults.harness import alive, build_world, insert_purchases, work_horse_of
from tests.faults.toolkit import eventually, wait_until
from tests.timing import scaled
from workers import outbox
from workers.ledger import BATCH_SIZE

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="stops jobs with PostgreSQL locks"),
]

CONVERGE_WITHIN = 30.0


def ledger_stack(make_stack: StackFactory, engine, database_url, redis_url, name: str) -> Stack:
    return make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=build_world(2),
        engine=engine,
        name=name,
    )


def publish_pending(stack: Stack) -> None:
    with stack.app.app_context():
        outbox.publish([event.id for event in outbox.pending_events()])


def waiting_backend(conn: Connection, wait_event: str | None = None) -> int | None:
    """The pid of a backend of this database waiting for a lock (of this kind), if any.

    Each poll ends its transaction: the activity view is a snapshot per transaction.
    """
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    if wait_event is not None:
        query += " AND wait_event = :event"
    try:
        return conn.execute(text(query + " LIMIT 1"), {"event": wait_event}).scalar()
    finally:
        conn.rollback()


def waiting_drain(conn: Connection) -> int | None:
    """The pid of a backend waiting for a relation lock while it holds its inserts into the
    ledger (the ledger drain between its insert and its commit), if any."""
    try:
        return conn.execute(
            text(
                "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database() "
                "AND a.wait_event_type = 'Lock' AND a.wait_event = 'relation' "
                "AND a.pid <> pg_backend_pid() AND EXISTS (SELECT 1 FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation WHERE l.pid = a.pid "
                "AND c.relname = 'ledger_entries' AND l.mode = 'RowExclusiveLock' AND l.granted) "
                "LIMIT 1"
            )
        ).scalar()
    finally:
        conn.rollback()


def outbox_idle(conn: Connection) -> bool:
    """No outbox row of any topic pending: the jobs still queued find their rows done and
    return without a lock (the ledger's event jobs emit rows of their own, hence all topics)."""
    try:
        return not conn.execute(
            text("SELECT count(*) FROM outbox_events WHERE status = 'pending'")
        ).scalar()
    finally:
        conn.rollback()


def committed_entries(conn: Connection) -> int:
    count = conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar()
    conn.rollback()
    return int(count or 0)


def horse_of(stack: Stack, worker: Any) -> int:
    return eventually(
        lambda: work_horse_of(worker.pid),
        timeout=30,
        what=lambda: f"the work-horse\n{stack.processes.logs()}",
    )


def wait_recorded(stack: Stack, acknowledged: list[int], what: str) -> float:
    return wait_until(
        lambda: stack.check.ledger_caught_up(acknowledged),
        timeout=CONVERGE_WITHIN,
        interval=0.1,
        what=lambda: f"{what}: every purchase in the ledger\n{stack.processes.logs()}",
    )


def test_work_horse_killed_after_insert_before_commit(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "work-horse SIGKILLed after its insert, before its commit",
        "the uncommitted entries vanish with it; RQ retries; one entry per purchase",
    )
    stack = ledger_stack(make_stack, engine, database_url, redis_url, "horse-precommit")
    purchases: list[int] = []
    for run in range(2):
        purchases += insert_purchases(engine, stack.world, 5)
        with engine.connect() as holder, engine.connect() as watcher:
            holder.execute(text("LOCK TABLE outbox_events IN SHARE MODE"))
            publish_pending(stack)
            worker = stack.processes.worker()
            # The drain: it has inserted its entries (uncommitted) and waits to mark the rows
            # done. (Other jobs may wait on the table too: the previous run's event.dispatch
            # jobs, which hold no lock on the ledger.)
            eventually(
                lambda: waiting_drain(watcher),
                timeout=30,
                what=lambda: f"the drain to wait for outbox_events\n{stack.processes.logs()}",
            )
            assert committed_entries(watcher) == len(purchases) - 5
            os.kill(horse_of(stack, worker), signal.SIGKILL)  # the blocked job's horse
            killed = time.monotonic()
            holder.rollback()
        wait_recorded(stack, purchases, f"run {run}")
        report.converged(time.monotonic() - killed)
        # Idle before it stops: a job it left queued (an event of this run) would run first
        # in the next run and wait on the locked table ahead of the drain.
        with engine.connect() as watcher:
            eventually(
                lambda: outbox_idle(watcher),
                timeout=30,
                what=lambda: f"every outbox row done\n{stack.processes.logs()}",
            )
        stack.processes.terminate(worker)
    assert stack.processes.logged("Work-horse terminated unexpectedly"), stack.processes.logs()
    stack.check.ledger_invariants(purchases)
    report.invariants |= stack.check.checked


def test_work_horse_killed_after_commit(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "work-horse SIGKILLed after its commit (job not finished in RQ)",
        "RQ retries a job whose effect is committed: the retry finds the rows done",
    )
    stack = ledger_stack(make_stack, engine, database_url, redis_url, "horse-committed")
    purchases = insert_purchases(engine, stack.world, BATCH_SIZE + 1)
    with engine.connect() as holder, engine.connect() as watcher:
        # The last outbox row (the 501st: the second batch) is locked by the test.
        holder.execute(
            text(
                "SELECT id FROM outbox_events WHERE id = (SELECT max(id) FROM outbox_events) "
                "FOR UPDATE"
            )
        )
        publish_pending(stack)
        worker = stack.processes.worker()
        eventually(
            lambda: waiting_backend(watcher) and committed_entries(watcher) == BATCH_SIZE,
            timeout=30,
            what=lambda: f"the first batch committed, the second waiting\n{stack.processes.logs()}",
        )
        os.kill(horse_of(stack, worker), signal.SIGKILL)
        killed = time.monotonic()
        holder.rollback()
    wait_recorded(stack, purchases, "after the kill")
    report.converged(time.monotonic() - killed)
    assert stack.processes.logged("Work-horse terminated unexpectedly"), stack.processes.logs()
    stack.check.ledger_invariants(purchases)
    report.invariants |= stack.check.checked


def test_worker_parent_killed(fresh_db, engine, database_url, redis_url, make_stack, scenario):
    reports = {
        False: scenario(
            "worker parent SIGKILLed mid-job (its horse orphaned)",
            "the orphaned horse finishes alone; a new worker takes over; nothing doubled",
        ),
        True: scenario(
            "worker SIGKILLed mid-job with its horse",
            "the job is lost with them; the sweeper re-enqueues it for a new worker",
        ),
    }
    stack = ledger_stack(make_stack, engine, database_url, redis_url, "worker-parent")
    stack.processes.scheduler(every=1)
    purchases: list[int] = []
    worker = None
    for run, with_horse in enumerate((False, True, False, True)):
        with engine.connect() as holder, engine.connect() as watcher:
            # The lock first: a drain still queued from the last run must wait for it too.
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LEDGER_LOCK_KEY})
            holder.commit()
            purchases += insert_purchases(engine, stack.world, 5)
            publish_pending(stack)
            if worker is None:
                worker = stack.processes.worker()
            eventually(
                lambda: waiting_backend(watcher, "advisory"),
                timeout=30,
                what=lambda: f"the drain to wait for the ledger lock\n{stack.processes.logs()}",
            )
            horse = horse_of(stack, worker)  # one job at a time: the blocked drain's
            if with_horse:  # the whole worker is gone (its container, its node)
                os.killpg(worker.pid, signal.SIGKILL)  # with RQ's scheduler child
                os.kill(horse, signal.SIGKILL)
                worker.wait(timeout=scaled(10))
            else:  # only the parent: its horse lives on as an orphan
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=scaled(10))
                assert alive(horse)
                stack.processes.orphans.append(horse)
            worker = stack.processes.worker()  # what a supervisor does
            killed = time.monotonic()
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
            holder.commit()
        wait_recorded(stack, purchases, f"run {run}")
        reports[with_horse].converged(time.monotonic() - killed)
    stack.check.ledger_invariants(purchases)
    for report in reports.values():
        report.invariants |= stack.check.checked
