"""Case 4: the ledger worker — a backlog drained, and purchases recorded end to end.

Backlog: ``N`` purchases are added in-process with the product's ``add_purchase`` (each with
its pending ``ledger.record`` outbox row, committed in batches), the job queues are emptied, one
drain job per worker is enqueued (``request_drain(force=True)``, as the sweeper does), and one or
two ``flask worker --burst`` processes are started. Measured: from their start until the last
purchase has its ledger entry (the entries' ``recorded_at``), and, without the start-up, from
the first entry to the last. Baseline: the same number of no-op RQ jobs (``time.time``) drained
by one and by two plain ``rq worker --burst`` processes on the same Redis.

End to end: ``POST /purchases`` at a steady 100/s (real HTTP, gunicorn) with ``flask worker``
processes running; latency = the entry's ``recorded_at`` minus the client's send time of that
purchase (both this machine's wall clock), and minus the purchase's ``created_at``. Baseline:
enqueue → finished of no-op RQ jobs enqueued at 100/s to one plain ``rq worker``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

from bench.load import ROOT, Gunicorn, LoadResult, open_loop
from bench.purchases import (
    GUNICORN_THREADS,
    GUNICORN_WORKERS,
    WORLD_SIZE,
    Buyer,
    amount_of,
    buyer,
    check_answers,
    purchase_day,
    purchase_requests,
    run_tag,
    statuses,
)
from bench.stats import Report, Row, percentile
from bench.world import REDIS, World, prepare

CASE_BACKLOG = "4 ledger backlog"
CASE_E2E = "4 ledger end to end"
NOOP = "time.time"  # a no-op job RQ imports at no cost (``time`` is always loaded)
BATCH = 500
GOAL_RATE = 1000.0
GOAL_P95_S = 2.0
E2E_RATE = 100.0
LOG_DIR = Path(tempfile.gettempdir()) / "bench-ledger"


# --- processes -------------------------------------------------------------------------------


class Processes:
    """Background processes in their own sessions, ended (group by group) on close."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        LOG_DIR.mkdir(exist_ok=True)
        log = (LOG_DIR / f"{name}-{len(self.procs)}.log").open("wb")
        self.procs.append(
            subprocess.Popen(  # noqa: S603
                list(command), cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log,
                start_new_session=True,
            )
        )  # fmt: skip
        log.close()  # the child keeps its own descriptor

    def wait(self, timeout: float) -> bool:
        """True if every process exited within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flask_worker(*, burst: bool) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", "worker"] + (
        ["--burst"] if burst else []
    )


def rq_worker(queue: str, *, burst: bool) -> list[str]:
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", REDIS, "--quiet", queue]
    return command + (["--burst"] if burst else [])


def wait_for_workers(redis: Redis, queue: Queue, count: int, procs: Processes) -> None:
    deadline = time.monotonic() + 60
    while Worker.count(connection=redis, queue=queue) < count:
        if any(p.poll() is not None for p in procs.procs):
            raise RuntimeError(f"a worker exited early (logs in {LOG_DIR})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not register within 60 s (logs in {LOG_DIR})")
        time.sleep(0.1)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the RQ baselines --------------------------------------------------------------------------


def noop_queue(world: World, redis: Redis) -> Queue:
    queue = Queue(f"{world.prefix}:noop", connection=redis)
    queue.empty()
    return queue


def noop_burst(world: World, redis: Redis, count: int, workers: int) -> tuple[float, float]:
    """``count`` no-op jobs drained by ``workers`` plain burst workers: (seconds from their
    start to the last job's end, seconds from the first job's start to the last's end)."""
    queue = noop_queue(world, redis)
    jobs = queue.enqueue_many([Queue.prepare_data(NOOP, result_ttl=600) for _ in range(count)])
    ids = [job.id for job in jobs]
    started = datetime.now(UTC)
    with Processes() as procs:
        for _ in range(workers):
            procs.start("rq-noop", rq_worker(queue.name, burst=True), {})
        if not procs.wait(timeout=600):
            raise RuntimeError("the no-op jobs were not drained within 600 s")
    done = [job for job in Job.fetch_many(ids, connection=redis) if job is not None]
    finished = [job for job in done if job.get_status(refresh=False) == JobStatus.FINISHED]
    if len(finished) != count:
        raise RuntimeError(f"only {len(finished)} of {count} no-op jobs finished")
    last = max(_utc(job.ended_at) for job in finished if job.ended_at)
    first = min(_utc(job.started_at) for job in finished if job.started_at)
    return (last - started).total_seconds(), (last - first).total_seconds()


def noop_steady(
    world: World, redis: Redis, per_second: float, seconds: float, workers: int
) -> list[float]:
    """Enqueue → finished of no-op jobs enqueued at a steady rate to ``workers`` plain workers."""
    queue = noop_queue(world, redis)
    ids: list[str] = []
    finished: list[Job] = []
    with Processes() as procs:
        for _ in range(workers):
            procs.start("rq-noop-steady", rq_worker(queue.name, burst=False), {})
        wait_for_workers(redis, queue, workers, procs)
        begin = time.perf_counter()
        for index in range(int(per_second * seconds)):
            delay = begin + index / per_second - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ids.append(queue.enqueue_call(NOOP, result_ttl=600).id)
        deadline = time.monotonic() + 120
        while len(finished) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
            jobs = [job for job in Job.fetch_many(ids, connection=redis) if job is not None]
            finished = [j for j in jobs if j.get_status(refresh=False) == JobStatus.FINISHED]
    if len(finished) < len(ids):
        raise RuntimeError(f"only {len(finished)} of {len(ids)} no-op jobs finished in 120 s")
    return [
        (_utc(job.ended_at) - _utc(job.enqueued_at)).total_seconds()
        for job in finished
        if job.ended_at and job.enqueued_at
    ]


# --- the product -------------------------------------------------------------------------------


def pending_ledger_rows(world: World) -> int:
    with world.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
            " AND topic IN ('ledger.record', 'ledger.reverse')"
        ).fetchone()
    return int(row[0]) if row else 0


def settle(world: World) -> int:
    """Record whatever earlier runs left pending (e.g. case 5's purchases), in-process with the
    product's drain, so that each measurement starts from an empty outbox. Returns the count."""
    from workers.outbox import drain

    left = pending_ledger_rows(world)
    if left:
        with world.app():
            while pending_ledger_rows(world):
                drain("ledger")
    return left


def reset_queues(world: World) -> None:
    """Empty this world's job queues (drain jobs enqueued by earlier commits)."""
    from workers.queue import QUEUES, jobs

    with world.app():
        transport = jobs()
        connection = transport.connection()
        for name in QUEUES:
            transport.queue(name, connection).empty()


def add_backlog(world: World, who: Buyer, count: int, tag: str) -> list[int]:
    """``count`` purchases with pending outbox rows, added with the product's ``add_purchase``
    and committed ``BATCH`` at a time; the job queues are emptied afterwards."""
    from market.extensions import db
    from market.models import Confirmation, PurchaseParty, PurchaseSource, Site, User
    from market.services.purchases import add_purchase, confirm_purchase
    from market.services.unit_of_work import commit

    ids: list[int] = []
    day = purchase_day()
    with world.app():
        user = db.session.get(User, who.user_id)
        assert user is not None
        for index in range(count):
            supplier, site = who.sites[index % len(who.sites)]
            supplier_site = db.session.get(Site, site)
            plant = db.session.get(Site, who.plants[index % len(who.plants)])
            assert supplier_site is not None and plant is not None
            purchase = add_purchase(
                oem_org_id=who.org_id,
                supplier_org_id=supplier,
                supplier_site=supplier_site,
                plant=plant,
                category=who.categories[index % len(who.categories)],
                amount=Decimal(amount_of(index)),
                purchased_on=day,
                invoice_number=f"{tag}-{index:07d}",
                po_number=None,
                source=PurchaseSource.DIRECT,
                created_by=user,
                created_by_party=PurchaseParty.OEM,
            )
            # The supplier's confirmation, as if it had confirmed at once (the ledger counts
            # confirmed purchases only).
            confirm_purchase(purchase, by=None, confirmation=Confirmation.COUNTERPARTY)
            ids.append(purchase.id)
            if len(ids) % BATCH == 0 or index == count - 1:
                commit()
                db.session.expunge_all()
                user = db.session.get(User, who.user_id)
                assert user is not None
    reset_queues(world)
    return ids


def entries_of(world: World, ids: Sequence[int]) -> tuple[int, datetime | None, datetime | None]:
    """How many of these purchases have their record entry; the first and last recorded_at."""
    with world.connect() as conn:
        row = conn.execute(
            "SELECT count(*), min(recorded_at), max(recorded_at) FROM ledger_entries"
            " WHERE kind = 'record' AND purchase_id = ANY(%s)",
            (list(ids),),
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def first_drain_start(world: World, redis: Redis, since: datetime) -> datetime | None:
    """When the first drain job started after ``since`` (RQ's own record of it)."""
    queue = Queue(f"{world.prefix}:default", connection=redis)
    ids = [i for i in queue.finished_job_registry.get_job_ids() if "drain" in i]
    starts = [
        _utc(job.started_at)
        for job in Job.fetch_many(ids, connection=redis)
        if job is not None and job.started_at and _utc(job.started_at) >= since
    ]
    return min(starts, default=None)


def product_burst(
    world: World, redis: Redis, ids: Sequence[int], workers: int
) -> tuple[float, float]:
    """Drain the backlog with ``workers`` ``flask worker --burst`` processes: (seconds from
    their start to the last entry, seconds from the first drain job's start to the last entry).
    """
    from workers.outbox import request_drain

    with world.app():
        for _ in range(workers):
            request_drain("ledger", force=True)  # one drain job for each worker to take
    started = datetime.now(UTC)
    with Processes() as procs:
        for _ in range(workers):
            procs.start("flask-worker-burst", flask_worker(burst=True), world.env())
        deadline = time.monotonic() + 900
        while (recorded := entries_of(world, ids))[0] < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{recorded[0]} of {len(ids)} recorded after 900 s")
            if all(p.poll() is not None for p in procs.procs):
                recorded = entries_of(world, ids)
                if recorded[0] == len(ids):
                    break
                # Burst workers quit with rows left: not expected; say so rather than hang.
                raise RuntimeError(
                    f"workers quit with {len(ids) - recorded[0]} purchases unrecorded "
                    f"(logs in {LOG_DIR})"
                )
            time.sleep(0.05)
        procs.wait(timeout=30)
    last = recorded[2]
    assert last is not None
    busy_from = first_drain_start(world, redis, started) or started
    return (last - started).total_seconds(), (last - busy_from).total_seconds()


def product_steady(
    world: World, who: Buyer, tag: str, workers: int, seconds: float
) -> tuple[list[float], list[float], LoadResult]:
    """POST /purchases at ``E2E_RATE``/s with ``workers`` ``flask worker`` processes running:
    (send → entry latencies, created_at → entry latencies, the HTTP answers)."""
    from workers.outbox import request_drain

    sent: dict[str, float] = {}
    redis = Redis.from_url(REDIS)
    env = world.env()
    server = Gunicorn(env, workers=GUNICORN_WORKERS, threads=GUNICORN_THREADS)
    with server, Processes() as procs:
        for _ in range(workers):
            procs.start("flask-worker", flask_worker(burst=False), env)
        wait_for_workers(redis, Queue(f"{world.prefix}:default", connection=redis), workers, procs)
        with world.app():
            # Clears a drain flag an earlier stage may have left set without a job behind it.
            request_drain("ledger", force=True)
        result = open_loop(
            server.url, purchase_requests(who, tag, sent), per_second=E2E_RATE, seconds=seconds
        )
        check_answers(result, 201, "POST /purchases")
        expected = len(result.latencies)
        deadline = time.monotonic() + 120
        while True:
            rows = recorded_by_tag(world, tag)
            if len(rows) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    if len(rows) < expected:
        raise RuntimeError(f"only {len(rows)} of {expected} purchases recorded within 120 s")
    from_send = [recorded.timestamp() - sent[invoice] for invoice, _, recorded in rows]
    from_commit = [(recorded - created).total_seconds() for _, created, recorded in rows]
    return from_send, from_commit, result


def recorded_by_tag(world: World, tag: str) -> list[tuple[str, datetime, datetime]]:
    with world.connect() as conn:
        return [
            (str(invoice), created, recorded)
            for invoice, created, recorded in conn.execute(
                "SELECT p.invoice_number, p.created_at, l.recorded_at FROM purchases p"
                " JOIN ledger_entries l ON l.purchase_id = p.id AND l.kind = 'record'"
                " WHERE p.invoice_number LIKE %s",
                (f"{tag}-%",),
            )
        ]


# --- the case ----------------------------------------------------------------------------------


def run(report: Report, args: argparse.Namespace) -> None:
    """Backlog drain rate (1 and 2 workers) and end-to-end latency at 100/s, with baselines."""
    count = 500 if args.quick else 10_000
    seconds = 5.0 if args.quick else 30.0
    steady_workers = (1,) if args.quick else (1, 2)
    world = prepare(WORLD_SIZE)
    left = settle(world)
    who = buyer(world)
    redis = Redis.from_url(REDIS)
    report.fact(
        f"case 4: world {world.database}; backlog of {count:,} purchases (in-process "
        f"add_purchase, {BATCH} per commit; {left:,} rows left by earlier runs recorded first); "
        f"one drain job per worker; workers forked per job (RQ default) with the scheduler on"
    )

    rates: dict[int, float] = {}
    for workers in (1, 2):
        total, busy = noop_burst(world, redis, count, workers)
        report.add(
            Row(
                CASE_BACKLOG, f"rq no-op jobs, {workers} worker(s) (baseline)", count,
                rate=count / total, note=f"{total:.1f} s from start; {count / busy:.0f}/s busy",
            )
        )  # fmt: skip
        tag = run_tag()
        started = time.perf_counter()
        ids = add_backlog(world, who, count, tag)
        build = time.perf_counter() - started
        total, busy = product_burst(world, redis, ids, workers)
        rates[workers] = count / total
        report.add(
            Row(
                CASE_BACKLOG, f"flask worker --burst ×{workers}", count, rate=count / total,
                note=f"{total:.1f} s from start; {count / busy:.0f}/s from first drain start; "
                f"backlog built in {build:.1f} s",
            )
        )  # fmt: skip
    report.goal(
        f"ledger ≥ {GOAL_RATE:,.0f} purchases/s (backlog of {count:,}, from worker start)",
        ", ".join(f"{rate:,.0f}/s with {n} worker(s)" for n, rate in rates.items()),
        max(rates.values()) >= GOAL_RATE,
    )

    p95s: dict[int, float] = {}
    for workers in steady_workers:
        baseline = noop_steady(world, redis, E2E_RATE, seconds, workers)
        report.add(
            Row.of_latencies(
                CASE_E2E, f"rq no-op enqueue→finished, {workers} worker(s) (baseline)", baseline,
                rate=len(baseline) / seconds,
            )
        )  # fmt: skip
        tag = run_tag()
        from_send, from_commit, answers = product_steady(world, who, tag, workers, seconds)
        p95s[workers] = percentile(from_send, 95)
        report.add(
            Row.of_latencies(
                CASE_E2E, f"POST sent→ledger entry, {workers} worker(s)", from_send,
                rate=answers.rate,
                note=f"{statuses(answers)}; offered {E2E_RATE:.0f}/s for {seconds:.0f} s, "
                f"sent over {answers.seconds:.0f} s",
            )
        )  # fmt: skip
        report.add(
            Row.of_latencies(
                CASE_E2E, f"  of which POST answered, {workers} worker(s)", answers.latencies,
                rate=answers.rate, note="the HTTP answer alone",
            )
        )  # fmt: skip
        report.add(
            Row.of_latencies(
                CASE_E2E, f"  purchase created_at→entry, {workers} worker(s)", from_commit,
                note="database timestamps",
            )
        )  # fmt: skip
    report.goal(
        f"POST /purchases → ledger entry p95 ≤ {GOAL_P95_S:.0f} s at {E2E_RATE:.0f}/s",
        ", ".join(f"{p95:.2f} s with {n} worker(s)" for n, p95 in p95s.items()),
        min(p95s.values()) <= GOAL_P95_S,
    )
    report.fact(
        f"case 4 end to end: gunicorn gthread {GUNICORN_WORKERS}×{GUNICORN_THREADS}, open loop "
        f"{E2E_RATE:.0f}/s for {seconds:.0f} s; latency from the client's send time to the "
        "entry's recorded_at (same machine clock); RQ baselines: as many plain workers, "
        "no-op jobs enqueued at the same rate"
    )
