"""The same ``Idempotency-Key`` sent 10 times at once, and once with another body, over real HTTP.

Eleven client threads released together by a barrier post to the threaded server on 127.0.0.1
(eleven requests, eleven database connections racing). Whichever body commits first wins: its
senders all get the same 201 answer, the others a 422 naming the header; there is exactly one
purchase, one idempotency record and one ledger entry. Time to converge: from the burst to the
winning purchase being in the ledger.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from market.models import IdempotencyRecord, Purchase
from tests.faults.harness import Reply, build_world, confirm_purchase, purchase_body
from tests.faults.toolkit import wait_until
from tests.timing import scaled

pytestmark = [pytest.mark.faults, pytest.mark.redis]

CONVERGE_WITHIN = 30.0


def test_the_same_idempotency_key_ten_times_at_once(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "the same Idempotency-Key 10× at once (+1 different body), real HTTP",
        "one purchase; identical 201 replays; the other body 422; one ledger entry",
    )
    stack = make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=build_world(2),
        engine=engine,
        name="idempotency",
    )
    stack.processes.worker(ready=True)
    world, api = stack.world, stack.api
    acknowledged: list[int] = []
    for run in range(3):
        key = f"fault-{run}-{uuid.uuid4()}"
        same = purchase_body(world, run)
        other = purchase_body(world, run + 50)
        bodies = [same] * 10 + [other]
        barrier = threading.Barrier(len(bodies))
        headers = world.buyer | {"Idempotency-Key": key}

        def send(
            body: dict[str, Any],
            barrier: threading.Barrier = barrier,
            headers: dict[str, str] = headers,
        ) -> Reply:
            barrier.wait(timeout=scaled(30))
            return api.post("/api/v1/purchases", body, headers)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            replies = list(pool.map(send, bodies))
        assert all(r.status in (201, 422) for r in replies), [str(r) for r in replies]
        won = [b for b, r in zip(bodies, replies, strict=True) if r.status == 201]
        assert won and all(b is won[0] for b in won), [str(r) for r in replies]
        winner = same if won[0] is same else other
        winning = [r.json() for r in replies if r.status == 201]
        assert all(body == winning[0] for body in winning)  # replays are the first answer
        assert len(winning) == (10 if winner is same else 1)
        for reply in replies:
            if reply.status == 422:
                assert "Idempotency-Key" in reply.json()["error"]["fields"], reply
        with engine.connect() as conn:
            purchases = conn.scalars(
                select(Purchase.id).where(
                    Purchase.invoice_number.in_([same["invoice_number"], other["invoice_number"]])
                )
            ).all()
            records = conn.scalar(
                select(func.count())
                .select_from(IdempotencyRecord)
                .where(IdempotencyRecord.key == key)
            )
        assert purchases == [winning[0]["id"]] and records == 1
        confirmed = confirm_purchase(api, world, winning[0])
        assert confirmed.status == 200, confirmed
        acknowledged.append(winning[0]["id"])
        wait_until(
            lambda: stack.check.ledger_caught_up(acknowledged),
            timeout=CONVERGE_WITHIN,
            what=lambda run=run: f"run {run}: the purchase in the ledger\n{stack.processes.logs()}",
        )
        report.converged(time.monotonic() - started)
    stack.check.ledger_invariants(acknowledged)
    report.invariants |= stack.check.checked
