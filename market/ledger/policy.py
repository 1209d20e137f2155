"""Subsidy policy versions as plain values, and which one governs a year.

A version starts on 1 January and applies to whole years (DESIGN.md v2): the version that
governs year Y is the highest one whose range covers all of Y. A year no version covers keeps
the near-shore rules of the nearest version (its purchases still form the next year's
baseline) but earns no subsidy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ScalarSelect, func, select, type_coerce
from sqlalchemy.types import String

from market.database import CENT
from market.extensions import db
from market.models import SubsidyPolicy

METRE = Decimal("0.001")


@dataclass(frozen=True)
class PolicyTerms:
    """The rules of one policy version as plain values (what the ledger computes with)."""

    version: int
    effective_from: date
    effective_until: date | None
    province_prefix: str
    max_distance_km: Decimal
    rate: Decimal
    annual_cap: Decimal

    def covers_year(self, year: int) -> bool:
        return self.effective_from <= date(year, 1, 1) and (
            self.effective_until is None or self.effective_until >= date(year, 12, 31)
        )

    @classmethod
    def of(cls, row: SubsidyPolicy) -> PolicyTerms:
        return cls(
            version=row.version,
            effective_from=row.effective_from,
            effective_until=row.effective_until,
            province_prefix=row.province_prefix,
            max_distance_km=Decimal(row.max_distance_km).quantize(METRE),
            rate=Decimal(row.rate),
            annual_cap=Decimal(row.annual_cap).quantize(CENT),
        )


# The programme's first published terms (DESIGN.md); migration 0005_ledger seeds them.
DEFAULT_POLICY = PolicyTerms(
    version=1,
    effective_from=date(2020, 1, 1),
    effective_until=None,
    province_prefix="44",
    max_distance_km=Decimal("200.000"),
    rate=Decimal("0.010000"),
    annual_cap=Decimal("2000000.00"),
)
DEFAULT_POLICY_NOTE = "Programme terms v1: Guangdong (44), 200 km, 1%, cap 2,000,000.00 CNY"


def policy_for_year(policies: Sequence[PolicyTerms], year: int) -> tuple[PolicyTerms, bool]:
    """The version governing ``year`` and True; if none covers all of it, the nearest version
    (the latest begun before, else the first) for its near-shore rules, and False."""
    if not policies:
        raise LookupError("no subsidy policy exists")
    covering = [p for p in policies if p.covers_year(year)]
    if covering:
        return max(covering, key=lambda p: p.version), True
    earlier = [p for p in policies if p.effective_from <= date(year, 12, 31)]
    if earlier:
        return max(earlier, key=lambda p: (p.effective_from, p.version)), False
    return min(policies, key=lambda p: (p.effective_from, p.version)), False


def ensure_default_policy() -> None:
    """Seed version 1 if no policy exists at all (in the caller's transaction; no commit)."""
    if db.session.scalar(select(func.count()).select_from(SubsidyPolicy)):
        return
    db.session.add(
        SubsidyPolicy(
            version=DEFAULT_POLICY.version,
            effective_from=DEFAULT_POLICY.effective_from,
            effective_until=DEFAULT_POLICY.effective_until,
            province_prefix=DEFAULT_POLICY.province_prefix,
            max_distance_km=DEFAULT_POLICY.max_distance_km,
            rate=DEFAULT_POLICY.rate,
            annual_cap=DEFAULT_POLICY.annual_cap,
            note=DEFAULT_POLICY_NOTE,
        )
    )
    db.session.flush()


def load_policy_terms(*, seed: bool = False) -> list[PolicyTerms]:
    """Every policy version. An empty table means the programme's defaults: seeded (under the
    ledger lock, ``seed=True``) or just assumed (read-only callers such as previews)."""
    rows = list(db.session.scalars(select(SubsidyPolicy).order_by(SubsidyPolicy.version)))
    if rows:
        return [PolicyTerms.of(row) for row in rows]
    if seed:
        ensure_default_policy()
        return load_policy_terms()
    return [DEFAULT_POLICY]


# (engine URL) -> (fingerprint, terms): the terms last read from each database.
_cache: dict[str, tuple[tuple[Any, ...], list[PolicyTerms]]] = {}
_cache_lock = threading.Lock()


def policy_fingerprint() -> ScalarSelect[Any]:
    """A scalar subquery naming the current set of policy versions, to read beside other
    facts: ``count:max id:latest created_at`` (versions are only ever added)."""
    return (
        select(
            func.count().cast(String)
            + type_coerce(":", String)
            + func.coalesce(func.max(SubsidyPolicy.id), 0).cast(String)
            + type_coerce(":", String)
            + func.coalesce(func.max(SubsidyPolicy.created_at).cast(String), "")
        )
        .select_from(SubsidyPolicy)
        .scalar_subquery()
    )


def cached_policy_terms(fingerprint: str | None) -> list[PolicyTerms]:
    """The terms ``load_policy_terms`` would read, from the cache when the table's
    ``fingerprint`` (read by the caller in the same transaction) is the one they were read at."""
    key = db.session.get_bind().engine.url.render_as_string(hide_password=True)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == (fingerprint,):
        return hit[1]
    terms = load_policy_terms()
    with _cache_lock:
        _cache[key] = ((fingerprint,), terms)
    return terms


def forget_policy_terms() -> None:
    """Drop the cached terms (a policy version was added in this process)."""
    with _cache_lock:
        _cache.clear()
