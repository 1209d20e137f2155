"""The one document builder: a supplier as both search backends see it.

:func:`supplier_document` turns an organization (with its sites, capabilities, certifications
and tier) into the document Elasticsearch indexes. The database backend builds the very same
document for the suppliers it returns, and both backends explain a hit from the document with
:mod:`search.spec`, so the two can only differ in *which* suppliers they find and in what order
— which is what the differential tests compare.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute

from market import refdata
from market.extensions import db
from market.models import (
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    Demand,
    Organization,
    OrgKind,
    OrgStatus,
    Site,
)
from search import spec

# Certifications without expiry are indexed with this date, so one range filter
# (valid_until ≥ need_by) is right for them too; ES dates go up to year 292278994.
NO_EXPIRY = date(9999, 12, 31)

# Which certificates count, by their admin review: for matching only verified ones (the ranking
# spec); for the search box the declared ones (pending or verified; a rejected one is not a
# claim any more) unless the user asks for verified ones only (``verified_only``).
VERIFIED: tuple[str, ...] = (CertVerification.VERIFIED.value,)
DECLARED: tuple[str, ...] = (CertVerification.PENDING.value, CertVerification.VERIFIED.value)


def counted_verifications(verified_only: bool) -> tuple[str, ...]:
    """The review states of the certificates a supplier search counts."""
    return VERIFIED if verified_only else DECLARED


class SupplierSource(Protocol):
    """What a document is built from: an :class:`Organization` with its relations loaded, or
    the same columns read as plain rows (:func:`load_supplier_documents`, the bulk path)."""

    @property
    def id(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def kind(self) -> OrgKind: ...
    @property
    def status(self) -> OrgStatus: ...
    @property
    def listed(self) -> bool: ...
    @property
    def legal_name(self) -> str: ...
    @property
    def english_name(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def city_code(self) -> str: ...
    @property
    def tier(self) -> int | None: ...
    @property
    def specialized(self) -> bool: ...
    @property
    def search_names(self) -> str | None: ...
    @property
    def search_text(self) -> str | None: ...
    @property
    def performance_bp(self) -> int | None: ...
    # Site-, Capability- and Certification-like rows (ORM objects or SELECT rows), in id order.
    @property
    def sites(self) -> Sequence[Any]: ...
    @property
    def capabilities(self) -> Sequence[Any]: ...
    @property
    def certifications(self) -> Sequence[Any]: ...


def is_visible(org: SupplierSource) -> bool:
    """Returned by searches: an active supplier that has not hidden its profile."""
    return org.kind is OrgKind.SUPPLIER and org.status is OrgStatus.ACTIVE and bool(org.listed)


def supplier_document(org: SupplierSource) -> dict[str, Any]:
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
        # Delivery performance score f_p (0.5..1.0), null without deliveries: the opt-in
        # ranking factor reads it with field_value_factor (search.queries).
        "performance": performance(org.performance_bp),
        # Token sets computed when the text was written (search.text): segmentation costs far
        # more than building the rest of the document, so a rebuild does none.
        "name_tokens": org.search_names or " ",
        "text_tokens": org.search_text or " ",
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
                "verification": cert.verification.value,
                "valid_from": cert.valid_from.isoformat(),
                "valid_until": (cert.valid_until or NO_EXPIRY).isoformat(),
            }
            for cert in org.certifications
        ],
    }


def performance(basis_points: int | None) -> float | None:
    """The stored score (basis points, exact) as the factor both backends multiply by."""
    return None if basis_points is None else basis_points / 10_000


@dataclass
class SupplierRows:
    """An organization's columns and its related rows, read without ORM objects."""

    id: int
    version: int
    kind: OrgKind
    status: OrgStatus
    listed: bool
    legal_name: str
    english_name: str | None
    description: str | None
    city_code: str
    tier: int | None
    specialized: bool
    search_names: str | None
    search_text: str | None
    performance_bp: int | None
    sites: list[Any] = field(default_factory=list)
    capabilities: list[Any] = field(default_factory=list)
    certifications: list[Any] = field(default_factory=list)


_ORG_COLUMNS = (
    Organization.id,
    Organization.version,
    Organization.kind,
    Organization.status,
    Organization.listed,
    Organization.legal_name,
    Organization.english_name,
    Organization.description,
    Organization.city_code,
    Organization.tier,
    Organization.specialized,
    Organization.search_names,
    Organization.search_text,
    Organization.performance_bp,
)


def load_supplier_documents(organization_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The documents of those of these organizations that are suppliers, by id, from four
    plain SELECTs.

    The same builder as :func:`supplier_document` on ORM objects, without building ORM objects
    (which costs most of the time of a rebuild: ``flask search reindex`` reads every supplier).
    """
    ids = list(organization_ids)
    if not ids:
        return {}
    return _load_documents(lambda column: column.in_(ids))


def load_supplier_documents_between(first_id: int, last_id: int) -> dict[int, dict[str, Any]]:
    """The documents of the suppliers whose ids are in ``[first_id, last_id]``: a range is a
    short statement where a thousand ids in an IN list cost the driver more to parse than the
    database to answer (the rebuild reads every supplier this way)."""
    return _load_documents(lambda column: column.between(first_id, last_id))


def _load_documents(
    organization: Callable[[InstrumentedAttribute[int]], ColumnElement[bool]],
) -> dict[int, dict[str, Any]]:
    orgs = {
        # Positional: the columns are _ORG_COLUMNS in the dataclass's field order (cheaper than
        # keywords at a rebuild's scale; too many columns for the typed overloads of select).
        row.id: SupplierRows(*cast(tuple[Any, ...], row))
        for row in db.session.execute(
            select(*_ORG_COLUMNS)
            .where(organization(Organization.id), Organization.kind == OrgKind.SUPPLIER)
            .order_by(Organization.id)
        )
    }
    if not orgs:
        return {}
    site_columns = (Site.id, Site.name, Site.city_code, Site.lat, Site.lon, Site.active)
    cert_columns = (
        Certification.id,
        Certification.standard,
        Certification.status,
        Certification.verification,
        Certification.valid_from,
        Certification.valid_until,
    )
    related = (
        ("sites", Site, site_columns),
        ("capabilities", Capability, (Capability.category,)),
        ("certifications", Certification, cert_columns),
    )
    for name, model, columns in related:
        statement = (
            select(model.organization_id, *columns)
            .where(organization(model.organization_id))
            .order_by(model.id)
        )
        for row in db.session.execute(statement):
            if row.organization_id in orgs:  # not a supplier's (a range may hold OEMs)
                getattr(orgs[row.organization_id], name).append(row)
    return {org_id: supplier_document(org) for org_id, org in orgs.items()}


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
                verified=c["verification"] == CertVerification.VERIFIED.value,
            )
            for c in document["certifications"]
        ),
        performance=document.get("performance"),
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
        rank_by_performance=bool(demand.rank_by_performance),
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


def valid_standards(
    document: dict[str, Any], today: date, verifications: Collection[str] = DECLARED
) -> list[str]:
    """The standards the supplier holds a currently valid certification of (among those in
    these review states: declared ones by default)."""
    return sorted(
        {
            c["standard"]
            for c in document["certifications"]
            if c["status"] == CertStatus.ACTIVE.value
            and c["verification"] in verifications
            and c["valid_from"] <= today.isoformat() <= c["valid_until"]
        }
    )
