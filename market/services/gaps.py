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
box, as in the database search backend, and the capabilities from one more, grouped by category.
On PostgreSQL both travel as packed binary columns (:func:`columns`): at 100k suppliers moving
~170k site rows and ~200k capability rows through the driver one Python object at a time cost
over a second, the counting itself ~15 ms.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    LargeBinary,
    Select,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import aliased

from market import geo, refdata
from market.clock import business_today
from market.errors import NotFound, ValidationFailed
from market.extensions import db
from market.geo import EARTH_RADIUS_KM
from market.models import (
    Capability,
    Certification,
    CertStatus,
    CertVerification,
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
# The nearest suppliers listed (and drawn on the map); the counts cover all of them.
MAX_LISTED_SUPPLIERS = 2000


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
        cert.verification == CertVerification.VERIFIED,  # as for matching: verified only
        cert.valid_from <= on,
        or_(cert.valid_until.is_(None), cert.valid_until >= on),
    )


def _candidate_sites(box: list[ColumnElement[bool]], options: GapOptions) -> Any:
    """Active sites in the box of visible suppliers holding every asked certificate."""
    return (
        select(Site.organization_id, Site.lat, Site.lon, func.coalesce(Organization.tier, 0))
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
    """Candidate sites and capabilities as arrays (vectorised counting at 100k suppliers).

    ``orgs`` are the suppliers (sorted ids) that count for at least one category of the cut;
    each site row points into it (``site_org``, sorted: a supplier's sites are contiguous, from
    ``site_start``), and so does each (supplier, category) pair (``pair_org``,
    ``pair_category``: an index into the cut)."""

    depth: int
    orgs: np.ndarray
    tiers: np.ndarray  # per supplier; 0: none declared
    site_org: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    pair_org: np.ndarray
    pair_category: np.ndarray

    @property
    def site_start(self) -> np.ndarray:
        """Where each supplier's run of sites begins (every supplier has one: ``orgs`` holds
        only suppliers with a candidate site)."""
        return np.searchsorted(self.site_org, np.arange(len(self.orgs)))


_SEND = {"i4": (Integer, func.int4send), "f8": (Float, func.float8send)}


def columns(
    statement: Select[Any], dtypes: Sequence[str], *, packed: bool | None = None
) -> list[np.ndarray]:
    """The columns of ``statement``'s rows as numpy arrays, one ``dtypes`` entry ("i4" or
    "f8") per column, in the same row order.

    On PostgreSQL (``packed``) each column arrives as one binary string — its values in the
    server's binary send format, concatenated by ``string_agg`` in one pass over the rows, so
    every column sees the rows in the same order — and becomes an array without a Python
    object per value: that, not the query, is what 200k rows cost through the driver (~180 ms
    against ~600 ms as rows at 100k suppliers). Elsewhere (SQLite, the embedded default) the
    rows are transposed."""
    if not (packed if packed is not None else _is_postgres()):
        found = db.session.execute(statement).all()
        return [
            np.array([row[i] for row in found], dtype=dtype).reshape(-1)
            for i, dtype in enumerate(dtypes)
        ]
    rows = statement.subquery()
    blobs = db.session.execute(
        select(
            *(
                func.string_agg(
                    _SEND[dtype][1](cast(column, _SEND[dtype][0])), literal(b"", LargeBinary)
                )
                for column, dtype in zip(rows.c, dtypes, strict=True)
            )
        )
    ).one()
    return [
        np.frombuffer(blob or b"", dtype=">" + dtype).astype(dtype)
        for blob, dtype in zip(blobs, dtypes, strict=True)
    ]


def _is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _capabilities(options: GapOptions, *, packed: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """(supplier id, index into the cut) of every capability of a visible supplier under a
    category of the cut, each pair once. Packed (:func:`columns`): one row per category with
    its suppliers' ids as one binary string (87 rows, not 200k)."""
    visible = (
        Organization.kind == OrgKind.SUPPLIER,
        Organization.status == OrgStatus.ACTIVE,
        Organization.listed.is_(True),
    )
    per_category: list[tuple[str, np.ndarray]] = []
    if packed if packed is not None else _is_postgres():
        for category, blob in db.session.execute(
            select(
                Capability.category,
                func.string_agg(
                    func.int4send(Capability.organization_id), literal(b"", LargeBinary)
                ),
            )
            .join(Organization, Organization.id == Capability.organization_id)
            .where(*visible)
            .group_by(Capability.category)
        ):
            per_category.append((category, np.frombuffer(blob, dtype=">i4").astype(np.int64)))
    else:
        ids: dict[str, list[int]] = {}
        for org_id, category in db.session.execute(
            select(Capability.organization_id, Capability.category)
            .join(Organization, Organization.id == Capability.organization_id)
            .where(*visible)
        ):
            ids.setdefault(category, []).append(org_id)
        per_category = [
            (category, np.array(org_ids, dtype=np.int64)) for category, org_ids in ids.items()
        ]
    position = {slug: i for i, slug in enumerate(cut(options.depth))}
    keys = [
        org_ids * len(position) + position[slug]
        for category, org_ids in per_category
        if (slug := cut_of(category, options.depth)) is not None
    ]
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    unique = np.unique(np.concatenate(keys))  # a supplier counts once per category of the cut
    return unique // len(position), unique % len(position)


def load_candidates(
    box: list[ColumnElement[bool]], options: GapOptions, *, packed: bool | None = None
) -> Candidates:
    """The sites within the box of suppliers that count for at least one category of the cut.

    ``packed``: how rows travel (:func:`columns`); None: the database's best way."""
    site_ids, lat, lon, site_tier = columns(
        _candidate_sites(box, options), ("i4", "f8", "f8", "i4"), packed=packed
    )
    pair_ids, pair_category = _capabilities(options, packed=packed)
    # Suppliers with a candidate site and a category of the cut, in id order.
    orgs = np.intersect1d(site_ids, pair_ids).astype(np.int64)
    keep = np.isin(site_ids, orgs)
    order = np.argsort(site_ids[keep], kind="stable")
    site_org = np.searchsorted(orgs, site_ids[keep][order])
    tiers = np.zeros(len(orgs), dtype=np.int64)
    tiers[site_org] = site_tier[keep][order]
    paired = np.isin(pair_ids, orgs)
    return Candidates(
        depth=options.depth,
        orgs=orgs,
        tiers=tiers,
        site_org=site_org,
        lat=lat[keep][order],
        lon=lon[keep][order],
        pair_org=np.searchsorted(orgs, pair_ids[paired]),
        pair_category=pair_category[paired],
    )


@dataclass
class Reach:
    """What a centre reaches: each supplier's nearest site and distance (inf: none inside)."""

    candidates: Candidates
    distance: np.ndarray  # per supplier
    nearest_site: np.ndarray  # per supplier, an index into the site rows (-1: none)

    @property
    def inside(self) -> np.ndarray:
        return np.asarray(np.isfinite(self.distance))


def reach(candidates: Candidates, center: Center, radius_km: float) -> Reach:
    """Each supplier's distance to its nearest active site, if within ``radius_km``."""
    count = len(candidates.orgs)
    distance = np.full(count, np.inf)
    nearest = np.full(count, -1, dtype=np.int64)
    if len(candidates.site_org):
        to_site = geo.haversine_km_many(center.lat, center.lon, candidates.lat, candidates.lon)
        to_site[to_site > radius_km] = np.inf
        # A supplier's sites are contiguous: its nearest is the minimum over its run.
        distance = np.minimum.reduceat(to_site, candidates.site_start)
        # The first of its sites at that distance (the lowest index, as a stable sort gives).
        nearest_at = np.flatnonzero(
            np.isfinite(to_site) & (to_site == distance[candidates.site_org])
        )
        owners, first = np.unique(candidates.site_org[nearest_at], return_index=True)
        nearest[owners] = nearest_at[first]
    return Reach(candidates, distance, nearest)


def tally(found: Reach, demands: dict[str, int] | None = None) -> list[GapRow]:
    """One row per category of the cut: suppliers, nearest distance, tier mix, open demands."""
    candidates = found.candidates
    slugs = cut(candidates.depth)
    counted = found.inside[candidates.pair_org]
    categories = candidates.pair_category[counted]
    orgs = candidates.pair_org[counted]
    suppliers = np.bincount(categories, minlength=len(slugs))
    nearest = np.full(len(slugs), np.inf)
    np.minimum.at(nearest, categories, found.distance[orgs])
    tiers = np.bincount(
        categories * 4 + np.clip(candidates.tiers[orgs], 0, 3), minlength=len(slugs) * 4
    ).reshape(-1, 4)
    return [
        GapRow(
            slug,
            suppliers=int(suppliers[i]),
            nearest_km=float(nearest[i]) if suppliers[i] else None,
            tier_mix={str(t): int(tiers[i, t]) for t in TIERS},
            open_demands=(demands or {}).get(slug, 0),
        )
        for i, slug in enumerate(slugs)
    ]


def listed_suppliers(found: Reach, limit: int = MAX_LISTED_SUPPLIERS) -> list[dict[str, Any]]:
    """The ``limit`` nearest suppliers counted, at their nearest site (by distance, then id)."""
    candidates = found.candidates
    inside = np.flatnonzero(found.inside)
    chosen = inside[np.lexsort((candidates.orgs[inside], found.distance[inside]))][:limit]
    if not len(chosen):
        return []
    ids = [int(i) for i in candidates.orgs[chosen]]
    names = dict(
        db.session.execute(
            select(Organization.id, Organization.legal_name).where(Organization.id.in_(ids))
        ).all()
    )
    slugs = cut(candidates.depth)
    categories: dict[int, list[str]] = {index: [] for index in chosen.tolist()}
    wanted = np.isin(candidates.pair_org, chosen)
    for index, category in zip(
        candidates.pair_org[wanted].tolist(), candidates.pair_category[wanted].tolist(), strict=True
    ):
        categories[index].append(slugs[category])
    return [
        {
            "id": org_id,
            "legal_name": names.get(org_id, ""),
            "tier": int(candidates.tiers[index]) or None,
            "lat": float(candidates.lat[found.nearest_site[index]]),
            "lon": float(candidates.lon[found.nearest_site[index]]),
            "distance_km": round(float(found.distance[index]), 3),
            "categories": sorted(categories[index]),
        }
        for index, org_id in zip(chosen.tolist(), ids, strict=True)
    ]


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
    found = reach(candidates, center, options.radius_km)
    if center.plant_id is not None:
        scope = [Demand.plant_id == center.plant_id]
    else:
        scope = [*_demand_scope(user), Site.city_code.startswith(center.city_code[:4])]
    rows = tally(found, _merged(open_demands(options.depth, scope)))
    return {
        "center": _center_dict(center),
        **_options_dict(options),
        "summary": _summary(rows, int(found.inside.sum())),
        "categories": [row.as_dict() for row in rows],
        "suppliers": listed_suppliers(found),
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
        found = reach(candidates, center, options.radius_km)
        rows = tally(found, demands.get(center.city_code, {}))
        out.append(
            {
                "center": _center_dict(center),
                "summary": _summary(rows, int(found.inside.sum())),
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
