"""The one document builder: a supplier as both search backends see it.

:func:`supplier_document` turns an organization (with its sites, capabilities, certifications
and tier) into the document Elasticsearch indexes. The database backend builds the very same
document for the suppliers it returns, and both backends explain a hit from the document with
:mod:`search.spec`, so the two can only differ in *which* suppliers they find and in what order
— which is what the differential tests compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, cast

from market import refdata
from market.models import CertStatus, Demand, Organization, OrgKind, OrgStatus
from search import spec

# Certifications without expiry are indexed with this date, so one range filter
# (valid_until ≥ need_by) is right for them too; ES dates go up to year 292278994.
NO_EXPIRY = date(9999, 12, 31)


def is_visible(org: Organization) -> bool:
    """Returned by searches: an active supplier that has not hidden its profile."""
    return org.kind is OrgKind.SUPPLIER and org.status is OrgStatus.ACTIVE and bool(org.listed)


def supplier_document(org: Organization) -> dict[str, Any]:
    """The indexed document of a supplier (load its sites, capabilities and certifications)."""
    active_sites = [site for site in org.sites if site.active]
    capabilities = sorted({cap.category for cap in org.capabilities})
    return {
        "id": org.id,
        "version": org.version,
        "status": org.status.value,
        "listed": bool(org.listed),
        "visible": is_visible(org),
        "legal_name": org.legal_name,
        "english_name": org.english_name,
        "description": org.description,
        "city_code": org.city_code,
        "tier": org.tier,
        "specialized": bool(org.specialized),
        "categories": sorted(
            {path for category in capabilities for path in refdata.category_ancestors(category)}
        ),
        "capabilities": capabilities,
        "sites": [{"lat": site.lat, "lon": site.lon} for site in active_sites],
        "site_info": [
            {
                "id": site.id,
                "name": site.name,
                "city_code": site.city_code,
                "lat": site.lat,
                "lon": site.lon,
            }
            for site in active_sites
        ],
        "certifications": [
            {
                "id": cert.id,
                "standard": cert.standard,
                "status": cert.status.value,
                "valid_from": cert.valid_from.isoformat(),
                "valid_until": (cert.valid_until or NO_EXPIRY).isoformat(),
            }
            for cert in org.certifications
        ],
    }


def supplier_fact(document: dict[str, Any]) -> spec.SupplierFact:
    """What the ranking spec needs to know of an indexed supplier."""
    return spec.SupplierFact(
        id=document["id"],
        active=document["status"] == OrgStatus.ACTIVE.value,
        listed=bool(document["listed"]),
        tier=document["tier"],
        categories=tuple(document["capabilities"]),
        sites=tuple(
            spec.SiteFact(id=s["id"], lat=s["lat"], lon=s["lon"], name=s["name"])
            for s in document["site_info"]
        ),
        certifications=tuple(
            spec.CertFact(
                id=c["id"],
                standard=c["standard"],
                active=c["status"] == CertStatus.ACTIVE.value,
                valid_from=date.fromisoformat(c["valid_from"]),
                valid_until=_expiry(c["valid_until"]),
            )
            for c in document["certifications"]
        ),
    )


def _expiry(value: str) -> date | None:
    until = date.fromisoformat(value)
    return None if until == NO_EXPIRY else until


def demand_fact(demand: Demand) -> spec.DemandFact:
    """What the ranking spec needs to know of a demand (its plant, category, constraints)."""
    return spec.DemandFact(
        lat=demand.plant.lat,
        lon=demand.plant.lon,
        category=demand.category,
        required_standards=tuple(dict.fromkeys(demand.required_standards or ())),
        need_by=demand.need_by,
        radius_km=float(demand.radius_km),
        tier_weights=spec.normalise_tier_weights(
            cast(Mapping[str | int, float] | None, demand.tier_weights)
        ),
    )


def explain(document: dict[str, Any], demand: spec.DemandFact, today: date) -> spec.Match | None:
    """The spec's explanation of a hit, computed from its document (identical for both backends)."""
    return spec.explain(supplier_fact(document), demand, today)


def nearest_site(
    document: dict[str, Any], lat: float, lon: float
) -> tuple[dict[str, Any], float] | None:
    """The active site nearest to a point, and its great-circle distance in km."""
    best: tuple[dict[str, Any], float] | None = None
    for site in document["site_info"]:
        distance = spec.haversine_km(lat, lon, site["lat"], site["lon"])
        if best is None or (distance, site["id"]) < (best[1], best[0]["id"]):
            best = (site, distance)
    return best


def site_info(document: dict[str, Any], site_id: int) -> dict[str, Any]:
    return next(site for site in document["site_info"] if site["id"] == site_id)


def valid_standards(document: dict[str, Any], today: date) -> list[str]:
    """The standards the supplier holds a currently valid certification of."""
    return sorted(
        {
            c["standard"]
            for c in document["certifications"]
            if c["status"] == CertStatus.ACTIVE.value
            and c["valid_from"] <= today.isoformat() <= c["valid_until"]
        }
    )
