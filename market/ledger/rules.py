"""The subsidy rule of DESIGN.md v2, as pure functions of plain values (no database).

For OEM o and year Y, over the confirmed, countable purchases in the ledger:

- T(o, Y): their near-shore total;
- B(o, Y): the declared baseline of (o, Y−1) if an admin declared one; else T(o, Y−1) if the
  platform covered all of Y−1 for o (o was verified on or before 1 January of Y−1); else B is
  missing and the year's subsidy is *held*;
- I*(o, Y) = max(0, T − B); S*(o, Y) = min(cap, round_half_up(I* × rate, 0.01)); both 0 while
  B is missing or no policy covers Y.

Every ledger entry carries the change it causes to I* and S*, so at every prefix of the ledger
the entries of (o, Y) sum to I* and S* computed from scratch: the figures depend only on the set
of purchases, never on the order they arrived in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from market.database import CENT
from market.geo import haversine_km, in_province
from market.ledger.policy import PolicyTerms

ZERO = Decimal("0.00")
METRE = Decimal("0.001")


class Reason(enum.StrEnum):
    NEAR_SHORE = "NEAR_SHORE"
    OUT_OF_PROVINCE = "OUT_OF_PROVINCE"
    TOO_FAR = "TOO_FAR"
    OUTSIDE_POLICY_PERIOD = "OUTSIDE_POLICY_PERIOD"
    # Adjustments (amount 0): why the position of (o, Y) moved without a purchase of Y.
    BASELINE_CHANGED = "BASELINE_CHANGED"
    SETTLED = "SETTLED"  # a position written under the v1 rule brought to the v2 figures


class BaselineSource(enum.StrEnum):
    DECLARED = "declared"  # an admin declared (o, Y−1)
    PLATFORM = "platform"  # T(o, Y−1): the platform covered all of Y−1
    MISSING = "missing"  # neither: the subsidy of Y is held


def money(value: Decimal) -> Decimal:
    """Two decimals, and never a negative zero (``-0.00`` would change the canonical JSON)."""
    quantized = Decimal(value).quantize(CENT)
    return quantized if quantized else ZERO


@dataclass(frozen=True)
class Verdict:
    near_shore: bool
    reason_code: Reason
    distance_km: Decimal  # rounded half-up to the metre: what the entry keeps


def decide_near_shore(
    terms: PolicyTerms,
    site_city_code: str,
    site: tuple[float, float],
    plant: tuple[float, float],
    *,
    covered: bool = True,
) -> Verdict:
    """Near-shore or not, with the reason, from the purchase's frozen facts alone.

    The site must be inside the province: its declared city code carries the province prefix
    *and* its coordinates lie inside the province's real boundary (a site in Hong Kong declared
    as 440100 is out). The distance is compared unrounded. ``covered`` False (no policy covers
    the purchase's year) turns a near-shore verdict into ``OUTSIDE_POLICY_PERIOD``: it still
    counts in T (the next year's baseline) but earns nothing.
    """
    raw = haversine_km(site[0], site[1], plant[0], plant[1])
    distance = Decimal(repr(raw)).quantize(METRE, ROUND_HALF_UP)
    if not site_city_code.startswith(terms.province_prefix) or not in_province(
        terms.province_prefix, site[0], site[1]
    ):
        return Verdict(False, Reason.OUT_OF_PROVINCE, distance)
    if Decimal(repr(raw)) > terms.max_distance_km:
        return Verdict(False, Reason.TOO_FAR, distance)
    if not covered:
        return Verdict(True, Reason.OUTSIDE_POLICY_PERIOD, distance)
    return Verdict(True, Reason.NEAR_SHORE, distance)


@dataclass(frozen=True)
class Baseline:
    amount: Decimal | None  # None: missing
    source: BaselineSource


def baseline_of(
    year: int,
    *,
    declared_prior: Decimal | None,
    platform_prior: Decimal,
    verified_on: date | None,
) -> Baseline:
    """B(o, Y) from the declared baseline of (o, Y−1), else T(o, Y−1) if the platform covered
    all of Y−1 for o (verified on or before 1 January of Y−1), else missing."""
    if declared_prior is not None:
        return Baseline(money(declared_prior), BaselineSource.DECLARED)
    if verified_on is not None and verified_on <= date(year - 1, 1, 1):
        return Baseline(money(platform_prior), BaselineSource.PLATFORM)
    return Baseline(None, BaselineSource.MISSING)


@dataclass(frozen=True)
class Position:
    """Where (o, Y) stands: T, B, I*, S*, whether held, and what would be due."""

    near_shore_total: Decimal
    baseline: Baseline
    increment: Decimal  # I*
    subsidy: Decimal  # S*
    held: bool
    # With B missing: the increment and subsidy against the platform's own (partial) record
    # of Y−1 (the most that can become due once B is declared at least that high); else I*, S*.
    increment_if_declared: Decimal
    subsidy_if_declared: Decimal
    annual_cap: Decimal
    policy_version: int


def subsidy_for(increment: Decimal, terms: PolicyTerms) -> Decimal:
    """min(cap, round_half_up(increment × rate, 0.01))."""
    return min(terms.annual_cap, (increment * terms.rate).quantize(CENT, ROUND_HALF_UP))


def position_of(
    near_shore_total: Decimal,
    baseline: Baseline,
    terms: PolicyTerms,
    *,
    covered: bool,
    provisional_baseline: Decimal = ZERO,
) -> Position:
    """I* and S* of (o, Y) from T and B under the year's policy (nothing without a policy)."""
    total = money(near_shore_total)
    held = covered and baseline.amount is None
    increment = subsidy = ZERO
    if covered and baseline.amount is not None:
        increment = money(max(ZERO, total - baseline.amount))
        subsidy = money(subsidy_for(increment, terms))
    if held:
        would = money(max(ZERO, total - provisional_baseline))
        would_pay = money(subsidy_for(would, terms))
    else:
        would, would_pay = increment, subsidy
    return Position(
        near_shore_total=total,
        baseline=baseline,
        increment=increment,
        subsidy=subsidy,
        held=held,
        increment_if_declared=would,
        subsidy_if_declared=would_pay,
        annual_cap=terms.annual_cap,
        policy_version=terms.version,
    )
