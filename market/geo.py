"""Geometry shared by search and the ledger (placeholder until the boundary module lands)."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km on the spec's mean Earth radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def in_province(province_prefix: str, lat: float, lon: float) -> bool:
    """Whether the point lies inside the province's boundary."""
    return province_prefix == "44" and 20.1 <= lat <= 25.6 and 109.6 <= lon <= 117.4
