"""Order independence of the subsidy (DESIGN.md v2; RELIABILITY.md I8), as a property.

Random purchases (2–3 OEMs, years Y−1 and Y, near-shore, too far and out of the province, some
cancelled later), random declared baselines (some declared late, after purchases of the year
they serve) are recorded in three random orders, each on its own set of OEM organisations that
mirror each other (same verification dates, same plants, same declarations), with the worker's
batches of random sizes. Every order must end with the same per-(OEM, year) T, B, I*, S* and
held, equal to the independent oracle of ``tests.marketplace_model``; and after every batch the
whole ledger satisfies the invariant (the entries of each (OEM, year) sum to the oracle's I*
and S* at that prefix).

Each example runs in a transaction of its own, rolled back at its end (the same isolation as
``tests.test_stateful``), so examples never see each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from market import ledger
from market.extensions import db
from market.models import DeclaredBaseline, LedgerEntry, OrgKind, PurchaseStatus
from tests import factories
from tests import marketplace_model as oracle
from tests.isolation import begin_outer, bind_session, end_outer

Y = 2026
YEARS = (Y - 1, Y)
PLANT = (23.1291, 113.2644)  # Guangzhou
# (city code, lat, lon): near-shore (Shenzhen, Foshan), too far (Shantou), out (Wuzhou, Guangxi).
PLACES = {
    "shenzhen": ("440300", 22.5431, 114.0579),
    "foshan": ("440600", 23.0215, 113.1214),
    "shantou": ("440500", 23.3541, 116.6820),
    "wuzhou": ("450400", 23.4769, 111.2791),
}
AMOUNTS = tuple(
    Decimal(a) for a in ("0.01", "999.99", "1000.50", "125000.00", "90000000.00", "150000000.00")
)
VERIFIED = {
    "covered": datetime(2019, 6, 1, tzinfo=UTC),  # the platform covered Y−2 and Y−1
    "recent": datetime(Y - 1, 3, 1, tzinfo=UTC),  # B(Y−1), B(Y) missing unless declared
    "late": datetime(Y, 2, 1, tzinfo=UTC),
}


@dataclass(frozen=True)
class PurchaseSpec:
    oem: int  # index of the OEM in the scenario
    year: int
    day: int
    place: str
    amount: Decimal
    cancelled: bool


@dataclass(frozen=True)
class Scenario:
    verified: tuple[str, ...]  # per OEM
    purchases: tuple[PurchaseSpec, ...]
    declared: tuple[tuple[int, int, Decimal], ...]  # (OEM index, year, amount)
    # Three orders of the events ("record", i), ("cancel", i), ("declare", j), and batch sizes.
    orders: tuple[tuple[tuple[str, int], ...], ...]
    batches: tuple[int, ...]


def _cancel_after_record(order: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """A purchase is cancelled after it was recorded: swap a cancel found first."""
    for i, (kind, index) in enumerate(order):
        if kind == "cancel":
            record = order.index(("record", index))
            if record > i:
                order[i], order[record] = order[record], order[i]
    return tuple(order)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    oems = draw(st.integers(2, 3), label="oems")
    verified = tuple(
        draw(st.sampled_from(("covered", "covered", "recent", "late"))) for _ in range(oems)
    )
    purchases = tuple(
        draw(
            st.lists(
                st.builds(
                    PurchaseSpec,
                    oem=st.integers(0, oems - 1),
                    year=st.sampled_from(YEARS),
                    day=st.integers(1, 365),
                    place=st.sampled_from(sorted(PLACES)),
                    amount=st.sampled_from(AMOUNTS),
                    cancelled=st.sampled_from((False, False, True)),
                ),
                min_size=1,
                max_size=9,
            ),
            label="purchases",
        )
    )
    declared = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, oems - 1),
                    st.sampled_from((Y - 2, Y - 1)),
                    st.sampled_from((Decimal("0.00"), Decimal("1000.00"), Decimal("2e8"))),
                ),
                max_size=3,
                unique_by=lambda d: (d[0], d[1]),
            ),
            label="declared",
        )
    )
    events = [("record", i) for i in range(len(purchases))]
    events += [("cancel", i) for i, p in enumerate(purchases) if p.cancelled]
    events += [("declare", j) for j in range(len(declared))]
    orders = tuple(
        _cancel_after_record(list(draw(st.permutations(events), label=f"order {n}")))
        for n in range(3)
    )
    batches = tuple(draw(st.integers(1, 4), label=f"batch {n}") for n in range(3))
    return Scenario(verified, purchases, declared, orders, batches)


@contextmanager
def fresh_transaction(app: Flask) -> Iterator[None]:
    """An app context whose session works in one transaction, rolled back at the end."""
    original = db.session
    with app.app_context():
        connection = db.engine.connect()
        outer = begin_outer(connection)
        bind_session(connection)
        try:
            yield
        finally:
            db.session.remove()
            db.session = original
            end_outer(connection, outer)


def _day(year: int, day: int) -> date:
    return date.fromordinal(date(year, 1, 1).toordinal() + min(day, 365) - 1)


class World:
    """One order's OEM organisations (mirrors of the scenario's), sharing the suppliers."""

    def __init__(self, scenario: Scenario, sites: dict[str, Any]) -> None:
        self.scenario = scenario
        self.sites = sites
        self.oems = [
            factories.make_org(OrgKind.OEM, verified_at=VERIFIED[v]) for v in scenario.verified
        ]
        self.plants = [factories.make_site(oem, at=PLANT) for oem in self.oems]
        self.purchases: dict[int, Any] = {}

    def play(self, order: tuple[tuple[str, int], ...], batch: int, *, check_prefixes: bool) -> None:
        """Apply the events in order; the worker syncs pending purchases every ``batch``
        events and settles a declaration at once (as the outbox handler does).
        ``check_prefixes``: check the invariant after each batch (not only at the end)."""
        pending: list[int] = []

        def check() -> None:
            if check_prefixes:
                oracle.assert_ledger_matches_oracle(db.session)

        def flush() -> None:
            if pending:
                db.session.flush()
                ledger.acquire_ledger_lock()
                outcomes = ledger.sync_purchases(pending)
                assert all(o.ok for o in outcomes), outcomes
                pending.clear()
                check()

        for kind, index in order:
            if kind == "declare":
                flush()
                oem, year, amount = self.scenario.declared[index]
                db.session.add(
                    DeclaredBaseline(oem_org_id=self.oems[oem].id, year=year, amount=amount)
                )
                db.session.flush()
                ledger.acquire_ledger_lock()
                ledger.settle_year(self.oems[oem].id, year + 1)
                check()
                continue
            spec = self.scenario.purchases[index]
            if kind == "record":
                site, supplier = self.sites[spec.place]
                purchase = factories.make_purchase(
                    self.oems[spec.oem],
                    self.plants[spec.oem],
                    supplier,
                    site,
                    amount=spec.amount,
                    purchased_on=_day(spec.year, spec.day),
                )
                self.purchases[index] = purchase
            else:
                purchase = self.purchases[index]
                purchase.status = PurchaseStatus.CANCELLED
            pending.append(purchase.id)
            if len(pending) >= batch:
                flush()
        flush()

    def figures(self) -> dict[tuple[int, int], tuple[Any, ...]]:
        """Per (OEM index, year): the entries' sums of T, I*, S*, and the position (T, B, I*,
        S*, held) its last entry states (the ledger's own position where it has none)."""
        index = {oem.id: k for k, oem in enumerate(self.oems)}
        entries: dict[tuple[int, int], list[LedgerEntry]] = {}
        for entry in db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.oem_org_id.in_(index)).order_by(LedgerEntry.seq)
        ):
            entries.setdefault((index[entry.oem_org_id], entry.year), []).append(entry)
        result = {}
        for k, oem in enumerate(self.oems):
            for year in YEARS:
                mine = entries.get((k, year), [])
                sums = (
                    sum((e.amount for e in mine if e.near_shore), oracle.ZERO),
                    sum((e.increment for e in mine), oracle.ZERO),
                    sum((e.subsidy for e in mine), oracle.ZERO),
                )
                if mine:
                    last = mine[-1]
                    stated: tuple[Any, ...] = (
                        last.near_shore_total,
                        last.baseline,
                        last.increment_total,
                        last.subsidy_total,
                        last.held,
                    )
                else:
                    position = ledger.oem_position(oem.id, year)
                    stated = tuple(
                        position[name]
                        for name in ("near_shore_total", "baseline", "increment", "subsidy", "held")
                    )
                result[(k, year)] = (sums, stated)
        return result


def expected(scenario: Scenario) -> dict[tuple[int, int], tuple[Any, ...]]:
    """The oracle's figures from the scenario alone (no database)."""
    counted = []
    for i, spec in enumerate(scenario.purchases):
        if spec.cancelled:
            continue
        code, lat, lon = PLACES[spec.place]
        counted.append(
            oracle.PurchaseInfo(
                id=i,
                oem_id=spec.oem,
                supplier_id=0,
                site_city_code=code,
                site=(lat, lon),
                plant=PLANT,
                amount=spec.amount,
                purchased_on=_day(spec.year, spec.day),
            )
        )
    declared = {(oem, year): amount for oem, year, amount in scenario.declared}
    verified = {
        k: VERIFIED[v].astimezone(oracle.SHANGHAI).date() for k, v in enumerate(scenario.verified)
    }
    result = {}
    for k in range(len(scenario.verified)):
        for year in YEARS:
            f = oracle.figures(counted, declared, verified, k, year)
            result[(k, year)] = ((f.near_shore_total, f.increment, f.subsidy), f.core)
    return result


ORDER_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
seen: dict[str, int] = {}


@ORDER_SETTINGS
@given(scenario=scenarios())
def _property(app: Flask, scenario: Scenario) -> None:
    with fresh_transaction(app):
        ledger.ensure_default_policy()
        sites = {}
        for place, (code, lat, lon) in PLACES.items():
            supplier = factories.make_org(city_code=code)
            sites[place] = (factories.make_site(supplier, at=(lat, lon), city_code=code), supplier)
        worlds = [World(scenario, sites) for _ in scenario.orders]
        for n, (world, order, batch) in enumerate(
            zip(worlds, scenario.orders, scenario.batches, strict=True)
        ):
            world.play(order, batch, check_prefixes=n == 0)
        oracle.assert_ledger_matches_oracle(db.session)  # all three worlds at their end
        figures = [world.figures() for world in worlds]
        want = expected(scenario)
        for n, got in enumerate(figures):
            assert got == want, f"order {n} {scenario.orders[n]}: {got} != oracle {want}"
        assert ledger.verify_chain().ok
        seen["examples"] = seen.get("examples", 0) + 1
        seen["adjustments"] = seen.get("adjustments", 0) + sum(
            1 for e in db.session.scalars(select(LedgerEntry)) if e.kind.value == "adjustment"
        )
        seen["held"] = seen.get("held", 0) + sum(1 for v in want.values() if v[1][4])
        seen["subsidy"] = seen.get("subsidy", 0) + sum(1 for v in want.values() if v[1][3])


def test_three_orders_give_the_same_figures_as_the_oracle(app: Flask) -> None:
    seen.clear()
    _property(app)
    # Derandomized: the same examples every run; the floors catch a generator gone dull.
    assert seen["examples"] == 30, seen
    # (Last measured: 56 adjustments; 48 held and 9 subsidised (OEM, year) positions.)
    assert seen["adjustments"] >= 30 and seen["held"] >= 20 and seen["subsidy"] >= 5, seen
