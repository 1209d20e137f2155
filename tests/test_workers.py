"""The outbox, the ledger's drain and the sweeper; then real RQ workers on the real Redis.

The first half runs jobs in-process (inline transport, rolled-back transaction). The second
half (``@pytest.mark.redis``) commits for real and starts ``flask --app wsgi worker`` processes
on the run's database and Redis prefix: duplicate deliveries across two workers, a work-horse
killed with SIGKILL inside its transaction, Redis losing every queued job; each time exactly one
entry per purchase and a chain that verifies. Every wait polls against a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from market import ledger
from market.extensions import db
from market.ledger.append import LEDGER_LOCK_KEY
from market.models import (
    CertStatus,
    EntryKind,
    InboxNotification,
    LedgerEntry,
    NoticeKey,
    Organization,
    OrgKind,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseStatus,
    Role,
)
from tests import factories
from tests.conftest import RUN_ID, _empty_all_tables, make_test_app, owner_engine_for
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN
from tests.faults.harness import work_horse_of
from tests.insider import append_only_guards_off
from tests.timing import scaled
from workers import outbox
from workers.queue import DEFAULT_QUEUE, DRAIN_QUEUE, QUEUES, enqueue, jobs
from workers.scheduler import warn_expiring_certifications

REPO = Path(__file__).resolve().parent.parent
D = Decimal


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str] = str
) -> Any:
    """``condition()`` once truthy, polled until ``timeout`` (scaled: ``tests.timing``)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit:g} s waiting for {what}\n{logs()}")


def make_purchases(count: int, *, far_every: int = 4) -> list[Purchase]:
    """Purchases of two OEMs (one in ``far_every`` too far away) with their outbox rows."""
    oems = [factories.make_org(OrgKind.OEM) for _ in range(2)]
    plants = [factories.make_site(oem, at=GUANGZHOU) for oem in oems]
    near = factories.make_org(city_code="440300")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    purchases = []
    for i in range(count):
        supplier, site = (far, far_site) if i % far_every == far_every - 1 else (near, near_site)
        purchase = factories.make_purchase(
            oems[i % 2],
            plants[i % 2],
            supplier,
            site,
            amount=f"{1000 + i}.{i % 100:02d}",
            purchased_on=date(2026, 1, 1) + timedelta(days=i % 300),
        )
        db.session.add(OutboxEvent(topic=OutboxTopic.LEDGER_RECORD, aggregate_id=purchase.id))
        purchases.append(purchase)
    db.session.commit()  # committed (a savepoint in the rolled-back tests), as the API would
    return purchases


def ledger_rows() -> list[tuple[int, EntryKind]]:
    rows = db.session.execute(
        select(LedgerEntry.purchase_id, LedgerEntry.kind).order_by(LedgerEntry.seq)
    )
    return [(row.purchase_id, row.kind) for row in rows]


def pending_rows() -> str:
    db.session.rollback()
    rows = db.session.execute(
        select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.attempts, OutboxEvent.last_error)
        .where(OutboxEvent.status == OutboxStatus.PENDING)
        .limit(20)
    )
    return "\n".join(map(str, rows))


def pending_count() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.status == OutboxStatus.PENDING)
    )


# --- in-process: the drain, failures, dead rows, the sweeper -----------------------------------


@pytest.fixture
def fresh(db_session):
    ledger.ensure_default_policy()  # a committed_db test before may have emptied the table
    db.session.commit()


def test_publish_in_inline_mode_drains_at_once(fresh):
    purchases = make_purchases(5)
    ids = list(db.session.scalars(select(OutboxEvent.id)))
    outbox.publish(ids)
    assert [p for p, _ in ledger_rows()] == [p.id for p in purchases]
    assert pending_count() == 0
    assert ledger.verify_chain().ok


def test_the_drain_takes_batches_in_outbox_order(fresh, monkeypatch):
    spec = outbox._BATCH_HANDLERS["ledger"]
    monkeypatch.setitem(outbox._BATCH_HANDLERS, "ledger", replace(spec, batch_size=3))
    purchases = make_purchases(8)
    assert outbox.drain("ledger") == 8
    assert [p for p, _ in ledger_rows()] == [p.id for p in purchases]
    done = db.session.scalars(select(OutboxEvent)).all()
    assert {e.status for e in done} == {OutboxStatus.DONE} and {e.attempts for e in done} == {1}
    assert outbox.drain("ledger") == 0


def test_a_bad_row_fails_alone_and_dies_at_the_attempt_limit(fresh, app):
    purchases = make_purchases(3)
    ghost = OutboxEvent(topic=OutboxTopic.LEDGER_RECORD, aggregate_id=purchases[-1].id + 1000)
    db.session.add(ghost)
    db.session.flush()
    assert outbox.drain("ledger") == 4
    assert len(ledger_rows()) == 3
    assert (ghost.status, ghost.attempts) == (OutboxStatus.PENDING, 1)
    assert "does not exist" in ghost.last_error
    for _ in range(app.config["OUTBOX_MAX_ATTEMPTS"] - 1):
        outbox.drain("ledger")
    assert (ghost.status, ghost.attempts) == (OutboxStatus.DEAD, app.config["OUTBOX_MAX_ATTEMPTS"])
    assert ledger.ledger_status(ghost.aggregate_id)["status"] == "failed"
    assert outbox.drain("ledger") == 0  # dead rows are not taken again...
    assert outbox.retry_dead([ghost.id]) == [ghost.id]  # ...unless an admin says so
    assert (ghost.status, ghost.attempts) == (OutboxStatus.PENDING, 1)


def test_an_exception_in_a_batch_is_isolated_to_its_row(fresh, monkeypatch):
    purchases = make_purchases(4)
    poison = purchases[2].id
    real = ledger.sync_purchases

    def explode_on_poison(purchase_ids):
        if poison in purchase_ids:
            raise ValueError("cannot compute this one")
        return real(purchase_ids)

    monkeypatch.setattr("workers.ledger.sync_purchases", explode_on_poison)
    assert outbox.drain("ledger") == 4
    assert sorted(p for p, _ in ledger_rows()) == sorted(p.id for p in purchases if p.id != poison)
    failed = db.session.scalar(select(OutboxEvent).where(OutboxEvent.aggregate_id == poison))
    assert (failed.status, failed.attempts) == (OutboxStatus.PENDING, 1)
    assert failed.last_error == "ValueError: cannot compute this one"
    assert ledger.verify_chain().ok


def test_cancellation_appends_a_reversal_once(fresh):
    (purchase,) = make_purchases(1)
    outbox.drain("ledger")
    purchase.status = PurchaseStatus.CANCELLED
    for _ in range(2):  # a duplicate reverse event changes nothing
        db.session.add(OutboxEvent(topic=OutboxTopic.LEDGER_REVERSE, aggregate_id=purchase.id))
    db.session.flush()
    outbox.drain("ledger")
    assert ledger_rows() == [(purchase.id, EntryKind.RECORD), (purchase.id, EntryKind.REVERSAL)]
    assert pending_count() == 0
    assert ledger.ledger_status(purchase.id)["status"] == "reversed"


def test_process_outbox_event_still_works_for_one_ledger_row(fresh):
    purchases = make_purchases(2)
    first = db.session.scalar(select(OutboxEvent.id).order_by(OutboxEvent.id))
    outbox.process_outbox_event(first)
    assert len(ledger_rows()) == 2  # it drained both
    outbox.process_outbox_event(first)  # a second delivery: nothing to do
    assert [p for p, _ in ledger_rows()] == [p.id for p in purchases]


def test_the_sweeper_runs_stale_rows_and_buries_exhausted_ones(fresh, app):
    make_purchases(2)
    old = datetime.now(UTC) - timedelta(seconds=app.config["OUTBOX_STALE_SECONDS"] + 5)
    events = list(db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))
    events[0].created_at = old
    events[1].created_at = datetime.now(UTC)  # fresh: its own job is presumably on the way
    exhausted = OutboxEvent(
        topic=OutboxTopic.SEARCH_SYNC,
        aggregate_id=1,
        created_at=old,
        attempts=app.config["OUTBOX_MAX_ATTEMPTS"],
    )
    db.session.add(exhausted)
    db.session.flush()
    report = outbox.sweep_outbox()
    assert report == {"stale": 2, "dead": 1, "drains": 1, "enqueued": 0}
    # Inline transport: the drain ran at once, and took the fresh row with the stale one.
    assert len(ledger_rows()) == 2 and exhausted.status is OutboxStatus.DEAD
    assert outbox.sweep_outbox() == {"stale": 0, "dead": 0, "drains": 0, "enqueued": 0}


def test_outbox_cli(fresh, app):
    make_purchases(1)
    db.session.add(
        OutboxEvent(
            topic=OutboxTopic.LEDGER_RECORD,
            aggregate_id=10**6,
            status=OutboxStatus.DEAD,
            attempts=8,
            last_error="LookupError: purchase 1000000 does not exist",
        )
    )
    db.session.flush()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["outbox", "list"])
    assert listed.exit_code == 0, listed.output
    assert "pending=1  done=0  dead=1" in listed.output
    assert "does not exist" in listed.output and "ledger.record" in listed.output
    swept = runner.invoke(args=["outbox", "sweep"])
    assert swept.exit_code == 0 and "stale=" in swept.output
    retried = runner.invoke(args=["outbox", "retry-dead"])
    assert retried.exit_code == 0 and "Retried 1 row(s)." in retried.output


def test_policy_and_baseline_cli(fresh, app):
    runner = app.test_cli_runner()
    add = ["policy", "add", "--from", "2031-01-01", "--max-km", "150", "--rate", "0.02"]
    added = runner.invoke(args=[*add, "--cap", "1000000.00", "--note", "v2"])
    assert added.exit_code == 0, added.output
    assert "Added policy v2 from 2031-01-01." in added.output
    listed = runner.invoke(args=["policy", "list"])
    assert "v1\t2020-01-01..open\tprefix=44" in listed.output and "v2\t2031-01-01" in listed.output
    bad = runner.invoke(args=[*add[:6], "--rate", "2", "--cap", "1"])
    assert bad.exit_code != 0 and "rate" in bad.output
    # The API's money rule: at most 2 decimals, no exponent.
    bad_cap = runner.invoke(args=[*add, "--cap", "1000.001"])
    assert bad_cap.exit_code != 0 and "annual_cap: At most 2 decimal places" in bad_cap.output
    assert "plain digits" in runner.invoke(args=[*add, "--cap", "1e6"]).output
    oem = factories.make_org(OrgKind.OEM)
    declared = runner.invoke(
        args=["baselines", "declare", "--oem", str(oem.id), "--year", "2024", "--amount", "12.5"]
    )
    assert declared.exit_code == 0, declared.output
    assert "Declared 12.50" in declared.output
    assert "2024\t12.50" in runner.invoke(args=["baselines", "list"]).output


def test_certification_expiry_notices_and_search_resync(fresh):
    today = date(2026, 6, 1)
    supplier = factories.make_org()
    member = factories.make_user(supplier)
    version = supplier.version
    in_90 = factories.make_certification(supplier, valid_until=today + timedelta(days=90))
    in_45 = factories.make_certification(supplier, valid_until=today + timedelta(days=45))
    in_0 = factories.make_certification(supplier, valid_until=today)
    later = factories.make_certification(supplier, valid_until=today + timedelta(days=91))
    expired = factories.make_certification(supplier, valid_until=today - timedelta(days=1))
    revoked = factories.make_certification(
        supplier, valid_until=today + timedelta(days=10), status=CertStatus.REVOKED
    )
    assert warn_expiring_certifications(today) == {"warned": 3, "expired": 1}
    # The events reached the supplier's member's inbox (jobs run inline after the commit).
    notes = {
        n.subject_id: n
        for n in db.session.scalars(
            select(InboxNotification).where(InboxNotification.user_id == member.id)
        )
    }
    assert set(notes) == {in_90.id, in_45.id, in_0.id, expired.id}
    assert later.id not in notes and revoked.id not in notes
    keys = set(db.session.scalars(select(NoticeKey.key)))
    assert f"certification-expiring:{in_90.id}:{in_90.valid_until}:90" in keys
    assert f"certification-expiring:{in_45.id}:{in_45.valid_until}:60" in keys
    assert f"certification-expiring:{in_0.id}:{in_0.valid_until}:30" in keys
    assert notes[in_0.id].data["days_left"] == 0
    assert notes[in_0.id].kind == "certification.expiring"
    assert notes[expired.id].kind == "certification.expired"
    sync = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == OutboxTopic.SEARCH_SYNC)
    ).all()
    assert [e.aggregate_id for e in sync] == [supplier.id]
    assert db.session.get(Organization, supplier.id).version == version + 1
    # Idempotent: a second run (or a second scheduler) notifies nobody again.
    assert warn_expiring_certifications(today) == {"warned": 0, "expired": 0}
    assert len(notes) == db.session.scalar(
        select(func.count(InboxNotification.id)).where(InboxNotification.user_id == member.id)
    )
    # Thirty days later: 60, 15 and 61 days left (the 60, 30 and 90-day notices); one expired.
    assert warn_expiring_certifications(today + timedelta(days=30)) == {"warned": 3, "expired": 1}


# --- real Redis, real worker processes ---------------------------------------------------------


class Processes:
    """Worker and scheduler subprocesses on the run's database and Redis prefix."""

    def __init__(self, database_url: str, redis_url: str, log_dir: Path) -> None:
        self.env = os.environ | {
            "MARKET_ENV": "production",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE_PREFIX": RUN_ID,
            "SECRET_KEY": "test-secret-key-not-for-production",
            "OUTBOX_STALE_SECONDS": "1",
            "LOG_LEVEL": "INFO",
            "MARKET_INSTANCE_DIR": str(log_dir),
        }
        self.log_dir = log_dir
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{args[0]}-{len(self.running)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=REPO,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.running.append((process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.running)

    def full_logs(self) -> str:
        """Everything logged (the events a drain emits are jobs too: the tail is not enough)."""
        return "\n".join(log.read_text() for _, log in self.running)

    def stop(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.running:
            try:
                process.wait(timeout=scaled(15))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=scaled(5))


@pytest.fixture
def live(committed_db, database_url, redis_url, tmp_path) -> Iterator[dict[str, Any]]:
    """Real commits, an rq-mode app to enqueue with, and a way to start worker processes."""
    _empty_all_tables()  # whatever earlier tests committed, start from nothing
    ledger.ensure_default_policy()
    db.session.commit()
    rq_app = make_test_app(database_url, REDIS_URL=redis_url, JOB_MODE="rq")
    processes = Processes(database_url, redis_url, tmp_path)
    try:
        yield {"rq_app": rq_app, "processes": processes, "redis": Redis.from_url(redis_url)}
    finally:
        processes.stop()
        with rq_app.app_context():
            db.engine.dispose()


def assert_exactly_once(purchases: list[Purchase]) -> None:
    db.session.expire_all()
    rows = ledger_rows()
    assert sorted(p for p, _ in rows) == sorted(p.id for p in purchases)
    assert {k for _, k in rows} == {EntryKind.RECORD}
    seqs = list(db.session.scalars(select(LedgerEntry.seq).order_by(LedgerEntry.seq)))
    assert seqs == list(range(1, len(purchases) + 1))
    assert ledger.verify_chain().ok


def queue_is_idle(rq_app: Any) -> bool:
    """No job waits, none is taken and none runs. A worker moves the job it takes into the
    queue's intermediate list and only then registers it as started: between the two the job is
    in neither the queue nor the started registry (a check that looked at those two alone passed
    while the last job's row was still pending)."""
    with rq_app.app_context():
        transport = jobs()
        connection = transport.connection()
        for name in QUEUES:
            queue = transport.queue(name, connection)
            taken = connection.llen(queue.intermediate_queue_key)
            if queue.count or taken or queue.started_job_registry.count:
                return False
    return True


@pytest.mark.redis
def test_a_taken_job_not_yet_started_keeps_the_queue_busy(live):
    """The moment between a worker's BLMOVE and its start: the job counts as work to wait for."""
    with live["rq_app"].app_context():
        assert enqueue(outbox.process_outbox_event, 0, job_id="taken-not-started")
        queue = jobs().queue(DEFAULT_QUEUE, live["redis"])
        assert queue.count == 1
        assert not queue_is_idle(live["rq_app"])
        live["redis"].lmove(queue.key, queue.intermediate_queue_key)  # what a worker does first
        assert queue.count == 0 and queue.started_job_registry.count == 0
        assert not queue_is_idle(live["rq_app"])
        live["redis"].delete(queue.intermediate_queue_key)
    assert queue_is_idle(live["rq_app"])


def nothing_pending() -> bool:
    db.session.rollback()  # a new snapshot
    return pending_count() == 0


def all_recorded(count: int) -> Callable[[], bool]:
    def check() -> bool:
        db.session.rollback()  # a new snapshot
        return db.session.scalar(select(func.count()).select_from(LedgerEntry)) == count

    return check


@pytest.mark.redis
def test_ten_deliveries_to_two_workers_make_one_entry(live):
    purchases = make_purchases(6)
    db.session.commit()
    event_ids = list(db.session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)))
    with live["rq_app"].app_context():
        for delivery in range(10):
            for event_id in event_ids:
                assert enqueue(
                    outbox.process_outbox_event, event_id, job_id=f"dup-{event_id}-{delivery}"
                )
    for _ in range(2):
        live["processes"].start("worker", "--no-scheduler")
    wait_for(
        all_recorded(len(purchases)), 60, "the purchases to be recorded", live["processes"].logs
    )
    wait_for(
        lambda: queue_is_idle(live["rq_app"]) and nothing_pending(),
        60,
        "the 60 jobs and the events they emitted to be done",
        live["processes"].logs,
    )
    assert_exactly_once(purchases)
    # Every line a job logs names the job.
    drained = [
        json.loads(line)
        for _, log in live["processes"].running
        for line in log.read_text().splitlines()
        if '"drained outbox rows"' in line
    ]
    assert drained and all(entry["job_id"].startswith(f"{RUN_ID}-dup-") for entry in drained)


def sessions(connection: Any) -> str:
    """What this database's sessions are doing (for a failure message)."""
    rows = connection.execute(
        text(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 100) FROM pg_stat_activity"
            " WHERE datname = current_database()"
        )
    ).all()
    connection.rollback()
    return "\n".join(map(str, rows))


def blocked_on(connection: Any, wait_event: str) -> bool:
    """Some session of this database waits for a lock of this kind (``advisory``: the ledger
    lock; ``transactionid``: a row another transaction holds). The reported query text can lag
    behind the statement that waits, so it is not used. Each poll ends its transaction: the
    activity view is a snapshot taken once per transaction."""
    waiting = connection.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = :event"
        ),
        {"event": wait_event},
    ).scalar()
    connection.rollback()
    return bool(waiting)


@pytest.mark.redis
@pytest.mark.parametrize("moment", ["waiting for the ledger lock", "inside its insert"])
def test_a_work_horse_killed_mid_job_still_gives_one_entry(live, database_url, moment):
    postgres = database_url.startswith("postgresql")
    if moment == "inside its insert" and not postgres:
        pytest.skip("needs PostgreSQL row locks to stop the job inside its transaction")
    purchases = make_purchases(3)
    db.session.commit()
    spy = create_engine(database_url)
    raw_sqlite = None
    try:
        with spy.connect() as holder:
            # Stop the job where we want it: hold the lock it needs next.
            if moment == "waiting for the ledger lock" and postgres:
                holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LEDGER_LOCK_KEY})
            elif postgres:  # the entry's foreign key must share-lock the purchase
                holder.execute(
                    text("SELECT id FROM purchases WHERE id = :id FOR UPDATE"),
                    {"id": purchases[1].id},
                )
            else:
                raw_sqlite = sqlite3.connect(make_url(database_url).database, isolation_level=None)
                raw_sqlite.execute("BEGIN IMMEDIATE")
            with live["rq_app"].app_context():
                outbox.publish(list(db.session.scalars(select(OutboxEvent.id))))
            worker = live["processes"].start("worker")
            horse = wait_for(
                lambda: work_horse_of(worker.pid), 30, "the work-horse", live["processes"].logs
            )
            if postgres:
                event = "advisory" if "lock" in moment else "transactionid"
                with spy.connect() as watcher:
                    wait_for(
                        lambda: blocked_on(watcher, event),
                        30,
                        f"the job {moment}",
                        lambda: f"{sessions(watcher)}\n{live['processes'].logs()}",
                    )
            else:
                time.sleep(scaled(1.0))  # the horse is waiting for the SQLite write lock
            os.kill(horse, signal.SIGKILL)
            time.sleep(scaled(0.3))
            if raw_sqlite is not None:
                raw_sqlite.execute("ROLLBACK")
            holder.rollback()
            if moment == "waiting for the ledger lock" and postgres:
                holder.execute(text("SELECT pg_advisory_unlock_all()"))
        # RQ sees the horse die, retries the job a second later: one entry per purchase.
        wait_for(
            all_recorded(len(purchases)),
            60,
            "the retried job to record the purchases",
            live["processes"].logs,
        )
        wait_for(
            lambda: queue_is_idle(live["rq_app"]),
            30,
            "the queue to be idle",
            live["processes"].logs,
        )
    finally:
        if raw_sqlite is not None:
            raw_sqlite.close()
        spy.dispose()
    assert "Work-horse terminated unexpectedly" in live["processes"].full_logs()
    assert pending_count() == 0
    assert_exactly_once(purchases)


@pytest.mark.redis
def test_the_sweeper_recovers_everything_redis_lost(live, committed_db, app):
    purchases = make_purchases(30)
    db.session.commit()
    event_ids = list(db.session.scalars(select(OutboxEvent.id)))
    redis = live["redis"]
    with live["rq_app"].app_context():
        outbox.publish(event_ids)  # one drain job is queued...
        assert jobs().queue(DRAIN_QUEUE).count == 1
    lost = [key for key in redis.scan_iter(match=f"*{RUN_ID}*", count=1000)]
    assert lost
    redis.delete(*lost)  # ...and Redis loses it (restarted empty, flushed, evicted)
    with live["rq_app"].app_context():
        assert jobs().queue(DRAIN_QUEUE).count == 0
    live["processes"].start("worker")
    live["processes"].start("scheduler", "--sweep-every", "1")
    wait_for(
        all_recorded(len(purchases)),
        60,
        "the sweeper to recover every purchase",
        live["processes"].logs,
    )
    # The purchase.recorded events the drain emitted (two per purchase) are one job each.
    wait_for(lambda: pending_count() == 0, 180, "the events to be dispatched", pending_rows)
    assert_exactly_once(purchases)

    # After all of it the chain verifies over the API; a row changed behind the application's
    # back (the owner can switch the trigger off, the application never does) is reported.
    auditor = factories.make_user(role=Role.AUDITOR)
    headers = factories.auth(auditor)
    db.session.commit()
    client = app.test_client()
    report = client.get("/api/v1/ledger/verify", headers=headers).get_json()
    assert report["ok"] is True and report["entries"] == 30
    # The app's own role may not (PostgreSQL: no UPDATE right; SQLite: the trigger).
    with pytest.raises(Exception, match=r"append-only|permission denied for table ledger_entries"):
        db.session.execute(text("UPDATE ledger_entries SET subsidy = 0 WHERE seq = 7"))
        db.session.commit()
    db.session.rollback()
    delta = "1" if db.session.get_bind().dialect.name == "postgresql" else "100"  # SQLite: fen
    with owner_engine_for(db.engine.url).begin() as owner, append_only_guards_off(owner):
        owner.execute(text(f"UPDATE ledger_entries SET amount = amount + {delta} WHERE seq = 7"))
    report = client.get("/api/v1/ledger/verify", headers=headers).get_json()
    assert (report["ok"], report["broken_at"], report["entries"]) == (False, 7, 30)


SQLITE_TRIGGER = """
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: UPDATE refused on ledger_entries'); END
"""


def _children(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


@pytest.mark.redis
def test_an_idle_worker_stops_promptly_on_sigterm_with_its_scheduler(live):
    """A supervisor's SIGTERM ends an idle worker (and RQ's scheduler child) in seconds.

    RQ's command-channel thread used to sleep 60 s once unsubscribed, and RQ's teardown waits
    for it: the worker took a minute to stop (``workers.worker.AppWorker.subscribe``).
    """
    processes = live["processes"]
    worker = processes.start("worker")
    wait_for(
        lambda: "Listening on" in processes.logs() and "Scheduler for" in processes.logs(),
        30,
        "the worker and its scheduler to be up",
        processes.logs,
    )
    scheduler = wait_for(lambda: _children(worker.pid), 10, "the scheduler child")
    time.sleep(1.5)  # idle: blocked in its dequeue, the command thread waiting for messages
    stopping = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=scaled(30))
    took = time.monotonic() - stopping
    assert worker.returncode == 0, processes.logs()
    # RQ's scheduler checks its stop flag every second, the command thread wakes every second.
    assert took < scaled(5), f"stopped after {took:.1f} s\n{processes.logs()}"
    for pid in scheduler:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.redis
def test_the_command_channel_thread_ends_within_a_second_after_unsubscribing(redis_url):
    """The losing side of the race that made idle workers take 60 s to stop: redis-py's
    thread handles the unsubscribe reply and goes back to wait for a subscription before RQ's
    teardown tells it to stop; it must notice the stop at its next poll, a second later."""
    from rq import Queue

    from workers.worker import PUBSUB_POLL_SECONDS, AppWorker

    connection = Redis.from_url(redis_url)
    worker = AppWorker(
        [Queue(f"{RUN_ID}-commands", connection=connection)],
        connection=connection,
        name=f"{RUN_ID}-commands",
    )
    worker.subscribe()
    try:
        wait_for(lambda: worker.pubsub.subscribed, 5, "the subscription")
        worker.pubsub.unsubscribe()
        wait_for(lambda: not worker.pubsub.subscribed, 5, "the unsubscribe reply")
        time.sleep(0.3)  # the thread is back in get_message, waiting for a subscription
        stopping = time.monotonic()
        worker.pubsub_thread.stop()
        took = time.monotonic() - stopping
    finally:
        worker.pubsub.close()
    assert took < scaled(PUBSUB_POLL_SECONDS + 1), f"the thread stopped after {took:.1f} s"
