"""Chain-gap maps (补链, 精准招商): which parts categories have no, or only one, qualified supplier
near a plant or a city (DESIGN.md, "Chain intelligence (v2)").

A supplier *counts* for a centre (a plant, or a city's seat) and a category when it would be
eligible for a demand there under the ranking spec (``search.spec``), with no tier or score
involved: its organization is an active (verified), listed supplier; it has an active site within
r km of the centre (the spec's haversine distance to its nearest active site); one of its
capabilities lies in the category's subtree; and, when certificates are asked for, it holds an
active certificate of each standard valid on the business date (Asia/Shanghai).

Categories are the taxonomy cut at a chosen depth: every category at that depth, plus the leaves
of branches that end above it (``body.glass`` has no depth-3 children, so it stays a row at depth
3). A capability counts for the category of the cut it lies under, following the taxonomy's own
parent links (``ic.chips.mcu`` is under ``intelligent-connected`` at depth 1); a capability above
the cut (a supplier declaring only ``chassis``) counts for none of the cut's rows, as a demand for
``chassis.braking`` would not match it either. Open demands are counted the same way.

A city view measures from the city's seat (``guangdong_cities.json``, the point the city's name
stands for on a map), so a plant view and a city view answer the same question — "what can be
sourced within r km of here?" — and the province view is that question for each of Guangdong's
21 cities. Distances are computed with numpy in one pass over the candidate sites (the formula is
``market.geo.haversine_km``'s, vectorised); candidates come from one SQL query within a bounding
box, as in the database search backend.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import aliased

from market import refdata
from market.clock import business_today
from market.errors import NotFound, ValidationFailed
from market.extensions import db
from market.geo import EARTH_RADIUS_KM
from market.models import (
    Capability,
    Certification,
    CertStatus,
    Demand,
    DemandState,
    Organization,
    OrgKind,
    OrgStatus,
    Role,
    Site,
    User,
)
from market.permissions import (
    auditor_city_prefixes,
    city_in_jurisdiction,
    jurisdiction_condition,
    require_active_org,
)
from market.services import plants
from search.database import bounding_box

TIERS = (1, 2, 3)
MIN_RADIUS_KM = 1
MAX_RADIUS_KM = 500  # search.spec.MAX_RADIUS_KM: a demand cannot look further either
DEFAULT_RADIUS_KM = 100
DEFAULT_DEPTH = 2


@dataclass(frozen=True)
class GapOptions:
    radius_km: float
    depth: int
    certs: tuple[str, ...] = ()
    on: date = field(default_factory=business_today)


@dataclass(frozen=True)
class Center:
    """Where distances are measured from: a plant or a city's seat."""

    kind: str  # "plant" | "city"
    lat: float
    lon: float
    name: str
    city_code: str
    plant_id: int | None = None


@dataclass(frozen=True)
class SupplierPoint:
    """A supplier that counts for at least one category of the cut, at its nearest site."""

    id: int
    name: str
    tier: int | None
    lat: float
    lon: float
    distance_km: float
    categories: tuple[str, ...]


@dataclass
class GapRow:
    category: str
    suppliers: int = 0
    nearest_km: float | None = None
    tier_mix: dict[str, int] = field(default_factory=lambda: {str(t): 0 for t in TIERS})
    open_demands: int = 0

    def as_dict(self) -> dict[str, Any]:
        category = refdata.categories()[self.category]
        return {
            "category": self.category,
            "name_zh": category.zh,
            "name_en": category.en,
            "suppliers": self.suppliers,
            "nearest_km": None if self.nearest_km is None else round(self.nearest_km, 3),
            "tier_mix": dict(self.tier_mix),
            "open_demands": self.open_demands,
            "gap": self.suppliers == 0,
            "single_source": self.suppliers == 1,
        }


# --- the taxonomy cut ----------------------------------------------------------------------------


@cache
def max_depth() -> int:
    return max(category.depth for category in refdata.categories().values())


@cache
def cut(depth: int) -> tuple[str, ...]:
    """The categories at ``depth`` and the leaves above it, in taxonomy order."""
    return tuple(
        slug
        for slug, category in refdata.categories().items()
        if category.depth == depth or (category.depth < depth and not category.children)
    )


@cache
def cut_of(category: str, depth: int) -> str | None:
    """The category of the cut at ``depth`` that ``category`` lies under (None: above the cut,
    or not in the taxonomy)."""
    node = refdata.categories().get(category)
    while node is not None and node.depth > depth:
        node = refdata.categories().get(node.parent or "")
    if node is None or node.slug not in cut(depth):
        return None
    return node.slug


# --- candidates ----------------------------------------------------------------------------------


def _certified(standard: str, on: date) -> ColumnElement[bool]:
    cert = aliased(Certification)
    return exists().where(
        cert.organization_id == Organization.id,
        cert.standard == standard,
        cert.status == CertStatus.ACTIVE,
        cert.valid_from <= on,
        or_(cert.valid_until.is_(None), cert.valid_until >= on),
    )


def _candidate_sites(box: list[ColumnElement[bool]], options: GapOptions) -> Any:
    """Active sites in the box of visible suppliers holding every asked certificate."""
    return (
        select(Site.organization_id, Site.lat, Site.lon)
        .join(Organization, Organization.id == Site.organization_id)
        .where(
            Site.active.is_(True),
            Organization.kind == OrgKind.SUPPLIER,
            Organization.status == OrgStatus.ACTIVE,
            Organization.listed.is_(True),
            *box,
            *(_certified(standard, options.on) for standard in dict.fromkeys(options.certs)),
        )
    )


@dataclass
class Candidates:
    """Candidate sites as arrays (one row per site) and what is known of their suppliers."""

    org: np.ndarray  # int64, the supplier of each site
    lat: np.ndarray
    lon: np.ndarray
    categories: dict[int, tuple[str, ...]]  # supplier → categories of the cut it counts for
    suppliers: dict[int, tuple[str, int | None]]  # supplier → (legal name, tier)


def load_candidates(box: list[ColumnElement[bool]], options: GapOptions) -> Candidates:
    """The sites within the box of suppliers that count for at least one category of the cut."""
    sites = _candidate_sites(box, options)
    org_ids = sites.with_only_columns(Site.organization_id).distinct()
    categories: dict[int, set[str]] = {}
    for org_id, category in db.session.execute(
        select(Capability.organization_id, Capability.category).where(
            Capability.organization_id.in_(org_ids)
        )
    ):
        slug = cut_of(category, options.depth)
        if slug is not None:
            categories.setdefault(org_id, set()).add(slug)
    rows = [row for row in db.session.execute(sites) if row.organization_id in categories]
    suppliers = {
        row.id: (row.legal_name, row.tier)
        for row in db.session.execute(
            select(Organization.id, Organization.legal_name, Organization.tier).where(
                Organization.id.in_(org_ids)
            )
        )
        if row.id in categories
    }
    return Candidates(
        org=np.array([row.organization_id for row in rows], dtype=np.int64),
        lat=np.array([row.lat for row in rows], dtype=np.float64),
        lon=np.array([row.lon for row in rows], dtype=np.float64),
        categories={org_id: tuple(sorted(found)) for org_id, found in categories.items()},
        suppliers=suppliers,
    )


def _haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """``market.geo.haversine_km`` from one point to many (the same formula, vectorised)."""
    phi1, phi2 = math.radians(lat), np.radians(lats)
    dphi = phi2 - phi1
    dlmb = np.radians(lons - lon)
    a = np.sin(dphi / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a))))


def nearby(candidates: Candidates, center: Center, radius_km: float) -> list[SupplierPoint]:
    """Each supplier with a site within ``radius_km`` of the centre, at its nearest site, by
    distance then id."""
    if not len(candidates.org):
        return []
    distances = _haversine_km(center.lat, center.lon, candidates.lat, candidates.lon)
    inside = np.flatnonzero(distances <= radius_km)
    # Nearest site first (ties: the lower id, as the spec's explain()), then one per supplier.
    order = inside[np.lexsort((candidates.org[inside], distances[inside]))]
    seen: set[int] = set()
    points = []
    for i in order:
        org_id = int(candidates.org[i])
        if org_id in seen:
            continue
        seen.add(org_id)
        name, tier = candidates.suppliers[org_id]
        points.append(
            SupplierPoint(
                id=org_id,
                name=name,
                tier=tier,
                lat=float(candidates.lat[i]),
                lon=float(candidates.lon[i]),
                distance_km=float(distances[i]),
                categories=candidates.categories[org_id],
            )
        )
    return points


def tally(
    points: Iterable[SupplierPoint], depth: int, demands: dict[str, int] | None = None
) -> list[GapRow]:
    """One row per category of the cut: suppliers, nearest distance, tier mix, open demands."""
    rows = {slug: GapRow(slug, open_demands=(demands or {}).get(slug, 0)) for slug in cut(depth)}
    for point in points:
        for slug in point.categories:
            row = rows[slug]
            row.suppliers += 1
            if row.nearest_km is None or point.distance_km < row.nearest_km:
                row.nearest_km = point.distance_km
            if point.tier in TIERS:
                row.tier_mix[str(point.tier)] += 1
    return list(rows.values())


# --- open demands --------------------------------------------------------------------------------


def open_demands(
    depth: int, conditions: Sequence[ColumnElement[bool]]
) -> dict[str, dict[str, int]]:
    """Open demands per plant city (4-digit prefix + "00") and category of the cut."""
    counts: dict[str, dict[str, int]] = {}
    rows = db.session.execute(
        select(Site.city_code, Demand.category)
        .join(Site, Site.id == Demand.plant_id)
        .where(Demand.state == DemandState.OPEN, *conditions)
    )
    for city_code, category in rows:
        slug = cut_of(category, depth)
        if slug is not None:
            city = counts.setdefault(city_code[:4] + "00", {})
            city[slug] = city.get(slug, 0) + 1
    return counts


def _demand_scope(user: User) -> list[ColumnElement[bool]]:
    """Which demands the caller may count: a buyer its own organization's, an auditor those at
    plants in the jurisdiction, an admin all."""
    if user.role is Role.BUYER:
        return [Demand.organization_id == user.organization_id]
    condition = jurisdiction_condition(Site.city_code, auditor_city_prefixes(user))
    return [] if condition is None else [condition]


def _merged(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for per_city in counts.values():
        for slug, count in per_city.items():
            merged[slug] = merged.get(slug, 0) + count
    return merged


# --- the use cases -------------------------------------------------------------------------------


def _caller_may_look(user: User) -> None:
    if user.role is Role.BUYER:
        require_active_org(user, OrgKind.OEM, "see chain gaps")


def plant_center(user: User, plant_id: int) -> Center:
    """The plant as a centre, if the caller may see it (404 otherwise)."""
    _caller_may_look(user)
    plant = plants.plant_get(user, plant_id)
    return Center("plant", plant.lat, plant.lon, plant.name, plant.city_code, plant.id)


def city_center(user: User, city: str) -> Center:
    """A Guangdong city (code or name) as a centre at its seat; auditors only in their
    jurisdiction (404 otherwise)."""
    _caller_may_look(user)
    code = refdata.city_code_for(city)
    if code is None:
        raise ValidationFailed(
            fields={"city": ["Unknown city; use a Guangdong city code or name (GET /cities)."]}
        )
    if user.role is Role.AUDITOR and not city_in_jurisdiction(code, auditor_city_prefixes(user)):
        raise NotFound("City not in your jurisdiction.")
    seat = refdata.cities()[code]
    return Center("city", seat.lat, seat.lon, seat.name_zh, code)


def center_gaps(user: User, center: Center, options: GapOptions) -> dict[str, Any]:
    """The gap table around a plant or a city, with the suppliers counted."""
    candidates = load_candidates(bounding_box(center.lat, center.lon, options.radius_km), options)
    points = nearby(candidates, center, options.radius_km)
    if center.plant_id is not None:
        scope = [Demand.plant_id == center.plant_id]
    else:
        scope = [*_demand_scope(user), Site.city_code.startswith(center.city_code[:4])]
    demands = _merged(open_demands(options.depth, scope))
    rows = tally(points, options.depth, demands)
    return {
        "center": _center_dict(center),
        **_options_dict(options),
        "summary": _summary(rows, len(points)),
        "categories": [row.as_dict() for row in rows],
        "suppliers": [_point_dict(point) for point in points],
    }


def province_gaps(user: User, options: GapOptions) -> dict[str, Any]:
    """Every Guangdong city the caller may see × every category of the cut, from each seat."""
    _caller_may_look(user)
    prefixes = auditor_city_prefixes(user) if user.role is Role.AUDITOR else None
    cities = [c for c in refdata.cities().values() if city_in_jurisdiction(c.code, prefixes)]
    centers = [Center("city", c.lat, c.lon, c.name_zh, c.code) for c in cities]
    candidates = load_candidates(_union_box(centers, options.radius_km), options)
    demands = open_demands(options.depth, _demand_scope(user))
    out = []
    for center in centers:
        points = nearby(candidates, center, options.radius_km)
        rows = tally(points, options.depth, demands.get(center.city_code, {}))
        out.append(
            {
                "center": _center_dict(center),
                "summary": _summary(rows, len(points)),
                "categories": [row.as_dict() for row in rows],
            }
        )
    return {**_options_dict(options), "cities": out}


def _union_box(centers: Sequence[Center], radius_km: float) -> list[ColumnElement[bool]]:
    """One box holding every centre's box (no box at all when there is no centre: nothing)."""
    if not centers:
        return [Site.id.is_(None)]
    boxes = [bounding_box(c.lat, c.lon, radius_km) for c in centers]
    if any(len(box) != 4 for box in boxes):
        return []
    lat_min = min(c.lat for c in centers)
    lat_max = max(c.lat for c in centers)
    lon_min = min(c.lon for c in centers)
    lon_max = max(c.lon for c in centers)
    grow_lat = math.degrees(radius_km / EARTH_RADIUS_KM) * 1.0001
    grow_lon = grow_lat / math.cos(math.radians(max(abs(lat_min), abs(lat_max)) + grow_lat))
    return [
        Site.lat >= lat_min - grow_lat,
        Site.lat <= lat_max + grow_lat,
        Site.lon >= lon_min - grow_lon,
        Site.lon <= lon_max + grow_lon,
    ]


def _center_dict(center: Center) -> dict[str, Any]:
    return {
        "kind": center.kind,
        "plant_id": center.plant_id,
        "name": center.name,
        "city_code": center.city_code,
        "lat": center.lat,
        "lon": center.lon,
    }


def _options_dict(options: GapOptions) -> dict[str, Any]:
    return {
        "radius_km": options.radius_km,
        "depth": options.depth,
        "certs": list(options.certs),
        "on": options.on,
    }


def _summary(rows: Sequence[GapRow], suppliers: int) -> dict[str, int]:
    return {
        "categories": len(rows),
        "gaps": sum(1 for row in rows if row.suppliers == 0),
        "single_source": sum(1 for row in rows if row.suppliers == 1),
        "suppliers": suppliers,
    }


def _point_dict(point: SupplierPoint) -> dict[str, Any]:
    return {
        "id": point.id,
        "legal_name": point.name,
        "tier": point.tier,
        "lat": point.lat,
        "lon": point.lon,
        "distance_km": round(point.distance_km, 3),
        "categories": list(point.categories),
    }


# --- CSV ----------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "category",
    "name_zh",
    "name_en",
    "suppliers",
    "nearest_km",
    "tier_1",
    "tier_2",
    "tier_3",
    "open_demands",
    "gap",
    "single_source",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # a spreadsheet must not run it as a formula (OWASP CSV injection)
    return value


def _csv_values(row: dict[str, Any]) -> list[Any]:
    flat = {**row, **{f"tier_{tier}": row["tier_mix"][str(tier)] for tier in TIERS}}
    return [_cell(flat[name]) for name in CSV_COLUMNS]


def gaps_csv(result: dict[str, Any]) -> str:
    """A centre's gap table as CSV: a UTF-8 BOM (for Excel), the header, one row per category."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in result["categories"]:
        writer.writerow(_csv_values(row))
    return buffer.getvalue()


def province_csv(result: dict[str, Any]) -> str:
    """The province view as CSV: one row per city × category, the city's code and name first."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(("city_code", "city_name", *CSV_COLUMNS))
    for city in result["cities"]:
        center = city["center"]
        for row in city["categories"]:
            writer.writerow((center["city_code"], _cell(center["name"]), *_csv_values(row)))
    return buffer.getvalue()
