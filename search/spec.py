"""The ranking spec in plain Python: the reference both search backends must agree with.

DESIGN.md, "Ranking spec": a supplier is eligible for a demand at plant P (category c, required
standards R, need_by T, radius r) when it is active and visible, has a capability in c's subtree,
holds an active, **verified** certification of every standard in R valid from today through T,
and has an active site within r km of P. A certification counts once an admin has verified it:
one pending review (new, or changed since its review) or rejected never makes a supplier
eligible, nor appears among a match's certifications (DESIGN.md, "Notifications and
integrations (v2)"). Score = f_d × f_t with Elasticsearch's ``gauss`` decay on the
distance to the nearest active site and the tier weight. Order: score desc, distance asc, id asc.

A demand may opt in to rank by delivery performance (``rank_by_performance``): the score is then
f_d × f_t × f_p, where f_p is the supplier's precomputed performance score (stored on the
supplier and indexed, so Elasticsearch reads it with ``field_value_factor``: no scripts) and
:data:`NEUTRAL_PERFORMANCE` for a supplier without delivery records. Off, f_p is 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

# One implementation of the spec's distance (6371.0088 km sphere), shared with the ledger.
from market.geo import EARTH_RADIUS_KM as EARTH_RADIUS_KM
from market.geo import haversine_km as haversine_km

DECAY_OFFSET_KM = 10.0
DECAY_SCALE_KM = 50.0
DECAY = 0.5
DEFAULT_TIER_WEIGHTS: Mapping[int, float] = {1: 1.0, 2: 0.8, 3: 0.6}
DEFAULT_RADIUS_KM = 200
# f_p of a supplier with no delivery record: between the worst (0.5) and the best (1.0) score,
# so a newcomer is neither favoured over a good record nor buried under a bad one.
NEUTRAL_PERFORMANCE = 0.75
MAX_RADIUS_KM = 500


def distance_factor(
    distance_km: float,
    offset_km: float = DECAY_OFFSET_KM,
    scale_km: float = DECAY_SCALE_KM,
    decay: float = DECAY,
) -> float:
    """Elasticsearch's ``gauss`` decay.

    f_d = exp(−max(0, d − offset)² / (2σ²)) with σ² = −scale² / (2 ln decay).
    """
    sigma_squared = -(scale_km**2) / (2 * math.log(decay))
    excess = max(0.0, distance_km - offset_km)
    return math.exp(-(excess**2) / (2 * sigma_squared))


def tier_factor(tier: int | None, weights: Mapping[int, float] | None = None) -> float:
    """The demand's weight for the supplier's tier (a tier with no weight counts 0)."""
    table = weights or DEFAULT_TIER_WEIGHTS
    return float(table.get(tier, 0.0)) if tier is not None else 0.0


def performance_factor(performance: float | None, enabled: bool) -> float:
    """f_p: the supplier's performance score when the demand opts in (neutral without one),
    else 1. The score is 0.5 + 0.25 × on-time rate + 0.25 × quality rate, computed and
    rounded to 4 decimals when a delivery is recorded (market.services.deliveries)."""
    if not enabled:
        return 1.0
    return NEUTRAL_PERFORMANCE if performance is None else float(performance)


def normalise_tier_weights(raw: Mapping[str | int, float] | None) -> dict[int, float]:
    """Demand overrides are stored with string keys (JSON); missing tiers keep their default."""
    weights = dict(DEFAULT_TIER_WEIGHTS)
    for key, value in (raw or {}).items():
        weights[int(key)] = float(value)
    return weights


def category_matches(capability_category: str, wanted: str) -> bool:
    """A capability in ``wanted`` or below it (``a.b`` matches ``a`` but not ``ab`` or ``a.c``)."""
    return capability_category == wanted or capability_category.startswith(wanted + ".")


@dataclass(frozen=True)
class SiteFact:
    id: int
    lat: float
    lon: float
    active: bool = True
    name: str = ""


@dataclass(frozen=True)
class CertFact:
    id: int
    standard: str
    active: bool  # status == active
    valid_from: date
    valid_until: date | None  # None: no expiry
    verified: bool  # verification == verified (an admin reviewed it); only these count


@dataclass(frozen=True)
class SupplierFact:
    """What the spec needs to know of a supplier."""

    id: int
    active: bool  # organization status == active
    listed: bool  # not hidden by the supplier
    tier: int | None
    categories: tuple[str, ...]
    sites: tuple[SiteFact, ...]
    certifications: tuple[CertFact, ...] = ()
    # The precomputed delivery performance score (0.5..1.0); None: no deliveries.
    performance: float | None = None


@dataclass(frozen=True)
class DemandFact:
    lat: float
    lon: float
    category: str
    required_standards: tuple[str, ...] = ()
    need_by: date = field(default_factory=date.today)
    radius_km: float = DEFAULT_RADIUS_KM
    tier_weights: Mapping[int, float] | None = None
    rank_by_performance: bool = False


@dataclass(frozen=True)
class Match:
    supplier_id: int
    distance_km: float
    nearest_site_id: int
    distance_factor: float
    tier_factor: float
    score: float
    matched_certifications: tuple[int, ...]
    # f_p (1.0 unless the demand ranks by performance).
    performance_factor: float = 1.0

    @property
    def sort_key(self) -> tuple[float, float, int]:
        return (-self.score, self.distance_km, self.supplier_id)


def certification_valid(cert: CertFact, today: date, need_by: date) -> bool:
    return (
        cert.active
        and cert.verified
        and cert.valid_from <= today
        and (cert.valid_until is None or cert.valid_until >= need_by)
    )


def match(supplier: SupplierFact, demand: DemandFact, today: date) -> Match | None:
    """The supplier's explained match for the demand, or None if it is not eligible."""
    if not (supplier.active and supplier.listed):
        return None
    if not any(category_matches(c, demand.category) for c in supplier.categories):
        return None
    for standard in demand.required_standards:
        if not any(
            c.standard == standard and certification_valid(c, today, demand.need_by)
            for c in supplier.certifications
        ):
            return None
    explained = explain(supplier, demand, today)
    if explained is None or explained.distance_km > demand.radius_km:
        return None
    return explained


def explain(supplier: SupplierFact, demand: DemandFact, today: date) -> Match | None:
    """The explanation of a supplier for a demand, eligibility aside (None: no active site).

    Both search backends explain their hits with this, from the indexed document, so an
    explanation never depends on which engine found the hit.
    """
    sites = [s for s in supplier.sites if s.active]
    if not sites:
        return None
    nearest = min(sites, key=lambda s: (haversine_km(demand.lat, demand.lon, s.lat, s.lon), s.id))
    distance = haversine_km(demand.lat, demand.lon, nearest.lat, nearest.lon)
    matched = [
        c.id
        for standard in demand.required_standards
        for c in supplier.certifications
        if c.standard == standard and certification_valid(c, today, demand.need_by)
    ]
    f_d = distance_factor(distance)
    f_t = tier_factor(supplier.tier, demand.tier_weights)
    f_p = performance_factor(supplier.performance, demand.rank_by_performance)
    return Match(
        supplier_id=supplier.id,
        distance_km=distance,
        nearest_site_id=nearest.id,
        distance_factor=f_d,
        tier_factor=f_t,
        score=score(f_d, f_t, f_p),
        matched_certifications=tuple(sorted(matched)),
        performance_factor=f_p,
    )


def score(f_d: float, f_t: float, f_p: float = 1.0) -> float:
    """The one product both backends sort by (factor off, f_p = 1: exactly f_d × f_t)."""
    return f_d * f_t * f_p


def rank(suppliers: Iterable[SupplierFact], demand: DemandFact, today: date) -> list[Match]:
    """Every eligible supplier, best first."""
    matches = [m for s in suppliers if (m := match(s, demand, today)) is not None]
    return sorted(matches, key=lambda m: m.sort_key)
