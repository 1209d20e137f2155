"""A tiny reimplementation of the near-shore ledger spec (DESIGN.md), for the stateful test.

Deliberately independent of ``market.services.ledger``: plain dataclasses and the spec's words.

- near-shore: the supplier site's city code starts with ``44`` (else ``OUT_OF_PROVINCE``) and
  its haversine distance to the OEM plant is at most 200 km (else ``TOO_FAR``);
- baseline B(o, Y): an admin-declared total of (o, Y−1), else o's near-shore total of Y−1
  recorded so far;
- increment(p) = max(0, C + amount − max(B, C)), C = o's near-shore total of Y before p;
- subsidy(p) = increment × 1 %, half-up to 0.01, never past the annual cap of 2,000,000.00;
- a cancelled purchase gets a reversal entry that negates amount, increment and subsidy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

PROVINCE_PREFIX = "44"
MAX_DISTANCE_KM = 200.0
RATE = Decimal("0.01")
ANNUAL_CAP = Decimal("2000000.00")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class PurchaseInfo:
    """What the spec needs of a purchase (taken from the requests that made it)."""

    id: int
    oem_id: int
    supplier_id: int
    site_city_code: str
    site: tuple[float, float]
    plant: tuple[float, float]
    amount: Decimal
    purchased_on: date


@dataclass(frozen=True)
class Entry:
    purchase_id: int
    kind: str  # "record" | "reversal"
    oem_id: int
    year: int
    amount: Decimal
    near_shore: bool
    reason_code: str
    distance_km: float
    baseline: Decimal
    near_shore_total_before: Decimal
    increment: Decimal
    subsidy: Decimal


@dataclass
class LedgerModel:
    """Entries in the order the purchases and cancellations happened."""

    entries: list[Entry] = field(default_factory=list)
    declared: dict[tuple[int, int], Decimal] = field(default_factory=dict)
    near_shore_totals: dict[tuple[int, int], Decimal] = field(default_factory=dict)
    subsidies: dict[tuple[int, int], Decimal] = field(default_factory=dict)

    def baseline(self, oem_id: int, year: int) -> Decimal:
        declared = self.declared.get((oem_id, year - 1))
        if declared is not None:
            return declared
        return self.near_shore_totals.get((oem_id, year - 1), ZERO)

    def record(self, p: PurchaseInfo) -> Entry:
        distance = haversine_km(p.site, p.plant)
        if not p.site_city_code.startswith(PROVINCE_PREFIX):
            near, reason = False, "OUT_OF_PROVINCE"
        elif distance > MAX_DISTANCE_KM:
            near, reason = False, "TOO_FAR"
        else:
            near, reason = True, "NEAR_SHORE"
        key = (p.oem_id, p.purchased_on.year)
        baseline = self.baseline(*key)
        before = self.near_shore_totals.get(key, ZERO)
        increment = subsidy = ZERO
        if near:
            increment = max(ZERO, before + p.amount - max(baseline, before))
            room = max(ZERO, ANNUAL_CAP - self.subsidies.get(key, ZERO))
            subsidy = min((increment * RATE).quantize(CENT, ROUND_HALF_UP), room)
        entry = Entry(
            purchase_id=p.id,
            kind="record",
            oem_id=p.oem_id,
            year=p.purchased_on.year,
            amount=p.amount,
            near_shore=near,
            reason_code=reason,
            distance_km=distance,
            baseline=baseline,
            near_shore_total_before=before,
            increment=increment,
            subsidy=subsidy,
        )
        self._apply(entry)
        return entry

    def reverse(self, purchase_id: int) -> Entry:
        record = next(
            e for e in self.entries if e.purchase_id == purchase_id and e.kind == "record"
        )
        key = (record.oem_id, record.year)
        entry = replace(
            record,
            kind="reversal",
            amount=-record.amount,
            increment=-record.increment,
            subsidy=-record.subsidy,
            near_shore_total_before=self.near_shore_totals.get(key, ZERO),
        )
        self._apply(entry)
        return entry

    def _apply(self, entry: Entry) -> None:
        key = (entry.oem_id, entry.year)
        if entry.near_shore:
            self.near_shore_totals[key] = self.near_shore_totals.get(key, ZERO) + entry.amount
        self.subsidies[key] = self.subsidies.get(key, ZERO) + entry.subsidy
        self.entries.append(entry)

    def baseline_used(self, oem_id: int, year: int) -> bool:
        """A declared baseline of ``year`` is used once ``year + 1`` has entries."""
        return any(e.oem_id == oem_id and e.year == year + 1 for e in self.entries)

    def entries_of(self, oem_id: int) -> list[Entry]:
        return [e for e in self.entries if e.oem_id == oem_id]

    def summary(self, oem_id: int, year: int) -> dict[str, Decimal]:
        """What ``GET /ledger/summary`` reports for one OEM and year."""
        mine = [e for e in self.entries if e.oem_id == oem_id and e.year == year]
        return {
            "total_amount": sum((e.amount for e in mine), ZERO),
            "near_shore_total": sum((e.amount for e in mine if e.near_shore), ZERO),
            "baseline": self.baseline(oem_id, year),
            "increment": sum((e.increment for e in mine), ZERO),
            "subsidy": sum((e.subsidy for e in mine), ZERO),
        }
