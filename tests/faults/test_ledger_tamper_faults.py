"""Someone edits or deletes a ledger row behind the application's back: the checks notice.

The API's side is covered elsewhere (``tests/test_workers.py`` edits a row and reads
``/ledger/verify``; ``tests/test_ledger_api.py`` deletes one; ``tests/test_ledger_rules.py``
shows the trigger refusing both). Here the same tampering is run against this suite's own
invariant checks, to prove they are not vacuous: an edited amount breaks I2 and I6, a deleted
entry breaks I1 and I6. The time recorded is how long ``/ledger/verify`` took to report it.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import USE_POSTGRES
from tests.faults.harness import build_world, insert_purchases
from tests.faults.invariants import InvariantBroken
from tests.faults.toolkit import wait_until
from workers import outbox

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="switches the ledger's PostgreSQL trigger off"),
]


def test_a_ledger_row_edited_or_deleted_breaks_the_invariants(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "a ledger row edited, then one deleted, directly in the database",
        "the trigger refuses the app's role; the owner's edits are caught by I1, I2 and I6",
    )
    stack = make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=build_world(2),
        engine=engine,
        name="tamper",
    )
    purchases = insert_purchases(engine, stack.world, 6)
    stack.processes.worker()
    with stack.app.app_context():
        outbox.publish([event.id for event in outbox.pending_events()])
    wait_until(lambda: stack.check.ledger_caught_up(purchases), timeout=30, what="the ledger")
    check = stack.check
    check.ledger_invariants(purchases)

    with engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE ledger_entries SET amount = amount + 1 WHERE seq = 3"))

    def tamper(statement: str) -> None:
        with engine.begin() as conn:  # the table's owner can switch the trigger off
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
            conn.execute(text(statement))
            conn.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))

    tamper("UPDATE ledger_entries SET amount = amount + 1 WHERE seq = 3")
    started = time.monotonic()
    with pytest.raises(InvariantBroken, match="I6"):
        check.i6_chain_verifies()
    report.converged(time.monotonic() - started)
    with pytest.raises(InvariantBroken, match="I2"):
        check.i2_no_phantom()
    verify = stack.api.get("/api/v1/ledger/verify", stack.world.auditor).json()
    assert (verify["ok"], verify["broken_at"]) == (False, 3)

    tamper("DELETE FROM ledger_entries WHERE seq = 5")
    started = time.monotonic()
    with pytest.raises(InvariantBroken, match="I6"):
        check.i6_chain_verifies()
    report.converged(time.monotonic() - started)
    with pytest.raises(InvariantBroken, match="I1"):
        check.i1_nothing_lost(purchases)
    check.i5_clean_failures()
    report.invariants |= {"I1", "I2", "I6", "I5"}
