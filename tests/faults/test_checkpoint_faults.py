"""The checkpoint signing key unavailable, as deployed: the ledger goes on, checkpoints stop
visibly, and resume (covering everything) when the key is back.

The stack: the app over HTTP, ``flask worker`` and ``flask scheduler`` processes (the scheduler
enqueues the checkpoint job every second here), the real PostgreSQL and Redis. The key file the
processes are configured with is moved away, then back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from market.ledger import merkle
from tests.conftest import USE_POSTGRES
from tests.faults.harness import build_world, insert_purchases, make_signing_key_file
from tests.faults.toolkit import wait_until
from workers import outbox

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="worker processes on PostgreSQL"),
]


def test_checkpoints_resume_when_the_signing_key_is_back(
    fresh_db, engine, database_url, redis_url, make_stack, scenario, tmp_path: Path
):
    report = scenario(
        "the checkpoint signing key unavailable, then back",
        "entries still recorded; issuance failures logged and listed; the next checkpoint "
        "covers every entry, consistent with the one before",
    )
    key = make_signing_key_file(tmp_path)
    away = key.with_suffix(".away")
    stack = make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=build_world(2),
        engine=engine,
        name="ckpt-key",
        app_settings={"LEDGER_SIGNING_KEY": str(key)},
        worker_env={"LEDGER_SIGNING_KEY": str(key), "CHECKPOINT_EVERY_SECONDS": "1"},
    )
    auditor = stack.world.auditor

    def status() -> dict:
        reply = stack.api.get("/api/v1/ledger/checkpoints/status", auditor)
        assert reply.status == 200, reply.body
        return reply.json()

    def checkpoint_sizes() -> list[int]:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT size FROM ledger_checkpoints ORDER BY size")))

    def publish() -> None:
        with stack.app.app_context():
            outbox.publish([event.id for event in outbox.pending_events()])

    # Before the outage: a checkpoint of the first purchases.
    first = insert_purchases(engine, stack.world, 4)
    stack.processes.worker()
    stack.processes.scheduler(every=1)
    publish()
    wait_until(lambda: stack.check.ledger_caught_up(first), timeout=60, what="the ledger")
    wait_until(lambda: status()["uncovered_entries"] == 0, timeout=60, what="a checkpoint")
    before = status()["latest"]
    assert before["size"] == 4

    key.rename(away)
    outage = time.monotonic()
    during = insert_purchases(engine, stack.world, 6)
    publish()
    wait_until(
        lambda: stack.check.ledger_caught_up(first + during),
        timeout=60,
        what=lambda: f"entries recorded without the key\n{stack.processes.logs()}",
    )
    failed = wait_until(lambda: status()["failures"], timeout=60, what="the failure to be listed")
    assert failed
    listed = status()
    assert listed["uncovered_entries"] == 6 and listed["latest"] == before
    assert {f["reason"] for f in listed["failures"]} == {
        "the signing key file cannot be read (FileNotFoundError)"
    }
    logged = "".join(log.read_text(errors="replace") for _, log in stack.processes.running)
    assert '"msg": "ledger checkpoint not issued"' in logged

    away.rename(key)
    recovered = time.monotonic()
    wait_until(
        lambda: status()["uncovered_entries"] == 0,
        timeout=60,
        what=lambda: f"checkpoints to resume\n{stack.processes.logs()}",
    )
    report.converged(time.monotonic() - recovered)
    after = status()
    assert after["latest"]["size"] == 10 and after["failures"] == []
    # (A checkpoint of the empty ledger may come first: the scheduler started before it grew.)
    assert [size for size in checkpoint_sizes() if size] == [4, 10]
    proof = stack.api.get(
        "/api/v1/ledger/proofs/consistency?old_size=4&new_size=10", auditor
    ).json()
    assert merkle.verify_consistency(
        4,
        10,
        bytes.fromhex(before["root"]),
        bytes.fromhex(after["latest"]["root"]),
        [bytes.fromhex(h) for h in proof["proof"]],
    )
    stack.check.ledger_invariants(first + during)
    report.invariants |= stack.check.checked | {"I10"}
    assert time.monotonic() - outage < 300
