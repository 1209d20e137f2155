"""An independent oracle of the v2 subsidy rule (DESIGN.md, "Near-shore ledger and subsidy
spec (v2)"), written from the spec's words in plain Python, for the ledger tests.

Deliberately shares no code with ``market.ledger``: its own haversine, its own rounding, its own
reading of the baseline rule. Given the *set* of counted purchases (confirmed, not cancelled,
not held by an invoice review), the declared baselines and the OEMs' verification dates, it
computes for every (OEM o, year Y):

- T(o, Y): the total of the near-shore purchases of o in Y. Near-shore: the site's frozen city
  code starts with ``44``, its frozen coordinates lie inside Guangdong, and its haversine
  distance (6371.0088 km, unrounded) to the frozen plant is at most 200 km;
- B(o, Y): the declared baseline of (o, Y−1) if there is one; else T(o, Y−1) if the platform
  covered all of Y−1 for o (o verified, as an Asia/Shanghai date, on or before 1 January of
  Y−1); else missing;
- I*(o, Y) = max(0, T − B), S*(o, Y) = min(cap, round_half_up(I* × 1 %, 0.01)); with B
  missing both are 0 and the year is held (what would be due is computed against T(o, Y−1)).

Province: the oracle knows only a coarse hand-drawn box of Guangdong, so tests feed it points
far from any border (Guangzhou, Shenzhen, Foshan, Zhaoqing, Shantou in; Wuzhou, Changsha out).
The figures are a function of the set alone, so the oracle has no notion of order at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from market.models import (
    DeclaredBaseline,
    EntryKind,
    InvoiceReview,
    LedgerEntry,
    Organization,
    OrgKind,
    Purchase,
    PurchaseStatus,
)

PROVINCE_PREFIX = "44"
MAX_DISTANCE_KM = 200.0
RATE = Decimal("0.01")
ANNUAL_CAP = Decimal("2000000.00")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
EARTH_RADIUS_KM = 6371.0088
# A coarse box around Guangdong (lat, lon); only for points well inside or well outside.
GUANGDONG_BOX = ((20.2, 109.7), (25.5, 117.3))


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def inside_guangdong(point: tuple[float, float]) -> bool:
    (south, west), (north, east) = GUANGDONG_BOX
    return south <= point[0] <= north and west <= point[1] <= east


def cents(value: Decimal) -> Decimal:
    """Half-up to the cent, and 0.00 rather than -0.00."""
    rounded = value.quantize(CENT, ROUND_HALF_UP)
    return rounded if rounded else ZERO


@dataclass(frozen=True)
class PurchaseInfo:
    """What the rule needs of a purchase: its frozen facts."""

    id: int
    oem_id: int
    supplier_id: int
    site_city_code: str
    site: tuple[float, float]
    plant: tuple[float, float]
    amount: Decimal
    purchased_on: date

    @property
    def year(self) -> int:
        return self.purchased_on.year

    def verdict(self) -> tuple[bool, str]:
        """(near-shore, reason) from the frozen facts alone."""
        if not self.site_city_code.startswith(PROVINCE_PREFIX) or not inside_guangdong(self.site):
            return False, "OUT_OF_PROVINCE"
        if haversine_km(self.site, self.plant) > MAX_DISTANCE_KM:
            return False, "TOO_FAR"
        return True, "NEAR_SHORE"

    @property
    def near_shore(self) -> bool:
        return self.verdict()[0]


@dataclass(frozen=True)
class Figures:
    """T, B, I*, S* and held of one (OEM, year)."""

    near_shore_total: Decimal
    baseline: Decimal | None  # None: missing
    baseline_source: str  # declared | platform | missing
    increment: Decimal
    subsidy: Decimal
    held: bool
    increment_if_declared: Decimal
    subsidy_if_declared: Decimal

    @property
    def core(self) -> tuple[Decimal, Decimal | None, Decimal, Decimal, bool]:
        """(T, B, I*, S*, held): what must not depend on the order of recording."""
        return (self.near_shore_total, self.baseline, self.increment, self.subsidy, self.held)


def subsidy_of(increment: Decimal) -> Decimal:
    return min(ANNUAL_CAP, cents(increment * RATE))


def figures(
    counted: Iterable[PurchaseInfo],
    declared: Mapping[tuple[int, int], Decimal],
    verified_on: Mapping[int, date | None],
    oem_id: int,
    year: int,
) -> Figures:
    """The figures of (oem_id, year) computed from scratch."""
    purchases = list(counted)

    def total(y: int) -> Decimal:
        return cents(
            sum(
                (
                    p.amount
                    for p in purchases
                    if p.oem_id == oem_id and p.year == y and p.near_shore
                ),
                ZERO,
            )
        )

    t, t_prior = total(year), total(year - 1)
    verified = verified_on.get(oem_id)
    if (oem_id, year - 1) in declared:
        baseline: Decimal | None = cents(declared[(oem_id, year - 1)])
        source = "declared"
    elif verified is not None and verified <= date(year - 1, 1, 1):
        baseline, source = t_prior, "platform"
    else:
        baseline, source = None, "missing"
    if baseline is None:
        would = cents(max(ZERO, t - t_prior))
        return Figures(t, None, source, ZERO, ZERO, True, would, subsidy_of(would))
    increment = cents(max(ZERO, t - baseline))
    subsidy = subsidy_of(increment)
    return Figures(t, baseline, source, increment, subsidy, False, increment, subsidy)


@dataclass
class LedgerModel:
    """The facts the rule depends on, as the stateful test drives them (order-free)."""

    purchases: dict[int, PurchaseInfo] = field(default_factory=dict)
    counted: set[int] = field(default_factory=set)  # confirmed, not cancelled, not held
    declared: dict[tuple[int, int], Decimal] = field(default_factory=dict)
    verified_on: dict[int, date | None] = field(default_factory=dict)

    def add(self, purchase: PurchaseInfo, *, counted: bool) -> None:
        self.purchases[purchase.id] = purchase
        if counted:
            self.counted.add(purchase.id)

    def count(self, purchase_id: int) -> None:
        self.counted.add(purchase_id)

    def uncount(self, purchase_id: int) -> None:
        self.counted.discard(purchase_id)

    def figures(self, oem_id: int, year: int) -> Figures:
        return figures(
            (self.purchases[i] for i in self.counted),
            self.declared,
            self.verified_on,
            oem_id,
            year,
        )

    def years_of(self, oem_id: int) -> set[int]:
        """The years of every purchase of the OEM ever counted or not (and the years after)."""
        years = {p.year for p in self.purchases.values() if p.oem_id == oem_id}
        return years | {y + 1 for y in years}


# --- the database against the oracle ------------------------------------------------------------
# Reads rows with plain queries (the models only, nothing of ``market.ledger``).

SHANGHAI = ZoneInfo("Asia/Shanghai")


def counted_purchase(purchase: Purchase) -> bool:
    """Confirmed, not cancelled, and not held or rejected by an invoice review."""
    return purchase.status is PurchaseStatus.CONFIRMED and purchase.review in (
        None,
        InvoiceReview.RELEASED,
    )


def info_of(purchase: Purchase) -> PurchaseInfo:
    """A purchase's frozen facts (never its sites' current rows)."""
    return PurchaseInfo(
        id=purchase.id,
        oem_id=purchase.oem_org_id,
        supplier_id=purchase.supplier_org_id,
        site_city_code=purchase.site_city_code,
        site=(purchase.site_lat, purchase.site_lon),
        plant=(purchase.plant_lat, purchase.plant_lon),
        amount=Decimal(purchase.amount),
        purchased_on=purchase.purchased_on,
    )


def model_from_database(session: Any) -> LedgerModel:
    """The oracle's inputs as the rows state them now."""
    model = LedgerModel()
    for purchase in session.scalars(select(Purchase)):
        model.add(info_of(purchase), counted=counted_purchase(purchase))
    for row in session.scalars(select(DeclaredBaseline)):
        model.declared[(row.oem_org_id, row.year)] = Decimal(row.amount)
    for org in session.scalars(select(Organization).where(Organization.kind == OrgKind.OEM)):
        verified = org.verified_at
        model.verified_on[org.id] = (
            verified.astimezone(SHANGHAI).date() if verified is not None else None
        )
    return model


def assert_ledger_matches_oracle(session: Any) -> dict[tuple[int, int], Figures]:
    """Invariants I8/I9 over the whole database, after the worker has caught up:

    - each purchase is counted by the ledger (records minus reversals) once iff it is countable,
      and a record's verdict is the oracle's verdict of its frozen facts;
    - for each (OEM, year) with entries: the entries sum to T, I*, S* of the oracle, and its
      last entry states the position it leaves (T, B, I*, S*, held, baseline source).

    Returns the oracle's figures of every (OEM, year) with entries.
    """
    model = model_from_database(session)
    confirmed = {p.id for p in session.scalars(select(Purchase)) if p.confirmation is not None}
    entries = list(session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
    net: dict[int, int] = {}
    for entry in entries:
        if entry.kind is EntryKind.ADJUSTMENT:
            assert entry.purchase_id is None and Decimal(entry.amount) == ZERO, entry.seq
            continue
        assert entry.purchase_id is not None
        net[entry.purchase_id] = net.get(entry.purchase_id, 0) + (
            1 if entry.kind is EntryKind.RECORD else -1
        )
        if entry.kind is EntryKind.RECORD:
            # I9: no record without the counterparty's confirmation (or an award).
            assert entry.purchase_id in confirmed, f"entry {entry.seq}: never confirmed"
            near, reason = model.purchases[entry.purchase_id].verdict()
            assert (entry.near_shore, entry.reason_code) == (near, reason), entry.seq
    for purchase_id in model.purchases:
        expected = 1 if purchase_id in model.counted else 0
        assert net.get(purchase_id, 0) == expected, (
            f"purchase {purchase_id}: counted {net.get(purchase_id, 0)} times, want {expected}"
        )
    by_key: dict[tuple[int, int], list[LedgerEntry]] = {}
    for entry in entries:
        by_key.setdefault((entry.oem_org_id, entry.year), []).append(entry)
    result = {}
    for (oem_id, year), mine in sorted(by_key.items()):
        want = model.figures(oem_id, year)
        near_total = sum((Decimal(e.amount) for e in mine if e.near_shore), ZERO)
        increment = sum((Decimal(e.increment) for e in mine), ZERO)
        subsidy = sum((Decimal(e.subsidy) for e in mine), ZERO)
        got = (near_total, increment, subsidy)
        assert got == (want.near_shore_total, want.increment, want.subsidy), (
            f"OEM {oem_id}, {year}: entries sum to (T, I*, S*) {got}, oracle {want}"
        )
        last = mine[-1]
        stated = (
            Decimal(last.near_shore_total),
            None if last.baseline is None else Decimal(last.baseline),
            Decimal(last.increment_total),
            Decimal(last.subsidy_total),
            bool(last.held),
        )
        assert stated == want.core, (
            f"OEM {oem_id}, {year}: last entry {last.seq} states {stated}, oracle {want}"
        )
        assert last.baseline_source == want.baseline_source, (last.seq, want)
        result[(oem_id, year)] = want
    return result
