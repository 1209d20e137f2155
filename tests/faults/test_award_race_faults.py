"""20 concurrent awards on one demand, over real HTTP: exactly one purchase, one ledger entry.

``tests/test_quotes.py::test_twenty_concurrent_awards_make_exactly_one_purchase`` checks the
states the race leaves (quotes, demand) through the test client; this runs the race through the
threaded server, with a worker recording the ledger, and ends with the invariants. Time to
converge: from the burst to the one purchase being in the ledger.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from market.clock import business_today
from market.extensions import db
from market.models import Demand, Organization, Purchase, Quote, Site
from tests import factories
from tests.conftest import USE_POSTGRES
from tests.faults.harness import Reply, build_world
from tests.faults.toolkit import wait_until
from tests.timing import scaled

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="racing transactions need PostgreSQL"),
]

RACERS = 20


def test_twenty_concurrent_awards_over_http(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "20 concurrent awards on one demand, real HTTP",
        "one 201, nineteen 409; one purchase; one ledger entry",
    )
    world = build_world(4)
    stack = make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=world,
        engine=engine,
        name="award-race",
    )
    stack.processes.worker(ready=True)
    acknowledged: list[int] = []
    for run in range(2):
        oem = db.session.get(Organization, world.oem_id)
        plant = db.session.get(Site, world.plant_id)
        assert oem is not None and plant is not None
        demand = factories.make_demand(oem, plant, category="chassis.braking")
        quotes = [
            Quote(
                demand=demand,
                organization_id=supplier.id,
                site_id=supplier.site_id,
                unit_price=Decimal("12.35"),
                quantity=100 + run,
                lead_time_days=21,
                valid_until=business_today() + timedelta(days=30),
            )
            for supplier in world.suppliers
        ]
        db.session.add_all(quotes)
        db.session.commit()
        quote_ids = [quote.id for quote in quotes]
        barrier = threading.Barrier(RACERS)

        def award(
            i: int, barrier: threading.Barrier = barrier, ids: list[int] = quote_ids, run: int = run
        ) -> Reply:
            barrier.wait(timeout=scaled(30))
            return stack.api.post(
                f"/api/v1/quotes/{ids[i % len(ids)]}/award",
                {"invoice_number": f"RACE-{run}-{i}"},
                world.buyer,
            )

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=RACERS) as pool:
            replies = list(pool.map(award, range(RACERS)))
        statuses = sorted(reply.status or 0 for reply in replies)
        assert statuses == [201] + [409] * (RACERS - 1), [str(r) for r in replies]
        winner = next(reply.json() for reply in replies if reply.status == 201)
        with engine.connect() as conn:
            made = conn.scalar(
                select(func.count()).select_from(Purchase).where(Purchase.quote_id.in_(quote_ids))
            )
            state = conn.scalar(select(Demand.state).where(Demand.id == demand.id))
        assert made == 1 and state.value == "awarded"
        acknowledged.append(winner["id"])
        wait_until(
            lambda: stack.check.ledger_caught_up(acknowledged),
            timeout=30,
            what=lambda run=run: f"run {run}: the award in the ledger\n{stack.processes.logs()}",
        )
        report.converged(time.monotonic() - started)
    stack.check.ledger_invariants(acknowledged)
    report.invariants |= stack.check.checked
