"""The one document builder: a supplier as both search backends see it.

:func:`supplier_document` turns an organization (with its sites, capabilities, certifications
and tier) into the document Elasticsearch indexes. The database backend builds the very same
document for the suppliers it returns, and both backends explain a hit from the document with
:mod:`search.spec`, so the two can only differ in *which* suppliers they find and in what order
— which is what the differential tests compare.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol, cast

import orjson
from sqlalchemy import ColumnElement, Connection, String, literal_column, select, type_coerce
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
    """What :func:`supplier_document` builds from: an :class:`Organization` with its relations
    loaded (:func:`load_supplier_documents` reads the same columns as plain rows)."""

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
    return _visible(org.kind, org.status, org.listed)


def _visible(kind: str, status: str, listed: bool) -> bool:
    # Enum members or their stored values: both compare equal to the value (StrEnum).
    return kind == OrgKind.SUPPLIER and status == OrgStatus.ACTIVE and bool(listed)


# An organization's own columns, in this order, as :func:`_document` reads them (the enums as
# their stored values).
_ORG_COLUMNS = (
    Organization.id,
    Organization.version,
    type_coerce(Organization.kind, String),
    type_coerce(Organization.status, String),
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
# An active site: (id, name, city_code, lat, lon).
_SITE_COLUMNS = (Site.id, Site.name, Site.city_code, Site.lat, Site.lon)
# A certification: (id, standard, status, verification, valid_from, valid_until).
_CERT_COLUMNS = (
    Certification.id,
    Certification.standard,
    type_coerce(Certification.status, String),
    type_coerce(Certification.verification, String),
    Certification.valid_from,
    Certification.valid_until,
)


def supplier_document(org: SupplierSource) -> dict[str, Any]:
    """The indexed document of a supplier (load its sites, capabilities and certifications)."""
    return _document(
        (
            org.id,
            org.version,
            org.kind.value,
            org.status.value,
            org.listed,
            org.legal_name,
            org.english_name,
            org.description,
            org.city_code,
            org.tier,
            org.specialized,
            org.search_names,
            org.search_text,
            org.performance_bp,
        ),
        [(s.id, s.name, s.city_code, s.lat, s.lon) for s in org.sites if s.active],
        [cap.category for cap in org.capabilities],
        [
            (
                c.id,
                c.standard,
                c.status.value,
                c.verification.value,
                c.valid_from,
                c.valid_until,
            )
            for c in org.certifications
        ],
    )


def _document(
    org: Sequence[Any],
    active_sites: Sequence[Sequence[Any]],
    categories: Collection[str],
    certifications: Sequence[Sequence[Any]],
) -> dict[str, Any]:
    """The document from plain values: ``org`` as :data:`_ORG_COLUMNS`, the active sites as
    :data:`_SITE_COLUMNS` and the certifications as :data:`_CERT_COLUMNS`, each in id order,
    and the categories of the capabilities. The one definition both readers share: the ORM
    objects (:func:`supplier_document`) and the bulk SELECTs (:func:`load_supplier_documents`)."""
    return _assembled(
        org,
        categories,
        sites=[{"lat": lat, "lon": lon} for _, _, _, lat, lon in active_sites],
        site_info=[
            {"id": site_id, "name": name, "city_code": city, "lat": lat, "lon": lon}
            for site_id, name, city, lat, lon in active_sites
        ],
        certifications=[_certification(*values) for values in certifications],
    )


def _assembled(
    org: Sequence[Any],
    categories: Collection[str],
    *,
    sites: Any,
    site_info: Any,
    certifications: Any,
) -> dict[str, Any]:
    """The document around its three lists, built (lists of dicts) or already serialised
    (:class:`orjson.Fragment`, :func:`serialised_documents_after`)."""
    (
        org_id,
        version,
        kind,
        status,
        listed,
        legal_name,
        english_name,
        description,
        city_code,
        tier,
        specialized,
        search_names,
        search_text,
        performance_bp,
    ) = org
    capabilities = sorted(set(categories))
    return {
        "id": org_id,
        "version": version,
        "status": status,
        "listed": bool(listed),
        "visible": _visible(kind, status, listed),
        "legal_name": legal_name,
        "english_name": english_name,
        "description": description,
        "city_code": city_code,
        "tier": tier,
        "specialized": bool(specialized),
        # Delivery performance score f_p (0.5..1.0), null without deliveries: the opt-in
        # ranking factor reads it with field_value_factor (search.queries).
        "performance": performance(performance_bp),
        # Token sets computed when the text was written (search.text): segmentation costs far
        # more than building the rest of the document, so a rebuild does none.
        "name_tokens": search_names or " ",
        "text_tokens": search_text or " ",
        "categories": list(_category_paths(tuple(capabilities))),
        "capabilities": capabilities,
        "sites": sites,
        "site_info": site_info,
        "certifications": certifications,
    }


def _certification(
    cert_id: int,
    standard: str,
    status: str,
    verification: str,
    valid_from: date,
    valid_until: date | None,
) -> dict[str, Any]:
    """A certification of the document, from :data:`_CERT_COLUMNS`' values."""
    return {
        "id": cert_id,
        "standard": standard,
        "status": status,
        "verification": verification,
        "valid_from": valid_from.isoformat(),
        "valid_until": (valid_until or NO_EXPIRY).isoformat(),
    }


@lru_cache(maxsize=4096)  # suppliers share a few thousand sets of capabilities at most
def _category_paths(capabilities: tuple[str, ...]) -> tuple[str, ...]:
    """Every category of these capabilities with its ancestors, sorted."""
    return tuple(
        sorted({path for category in capabilities for path in refdata.category_ancestors(category)})
    )


def performance(basis_points: int | None) -> float | None:
    """The stored score (basis points, exact) as the factor both backends multiply by."""
    return None if basis_points is None else basis_points / 10_000


def load_supplier_documents(organization_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The documents of those of these organizations that are suppliers, by id, from four
    plain SELECTs.

    The same documents as :func:`supplier_document` on ORM objects, without building ORM
    objects (which would cost most of the time of a rebuild).
    """
    ids = list(organization_ids)
    if not ids:
        return {}
    return _load_documents(Organization.id.in_(ids), lambda column: column.in_(ids))


def load_supplier_documents_after(after_id: int, limit: int) -> dict[int, dict[str, Any]]:
    """The documents of the first ``limit`` suppliers whose ids exceed ``after_id``, in id
    order (a rebuild reads every supplier this way, keyset by keyset).

    Their sites, capabilities and certifications are read by the range of those ids: a range
    is a short statement where a thousand ids in an IN list cost the driver more to parse than
    the database to answer."""
    return _load_documents(Organization.id > after_id, None, limit)


def _load_documents(
    organizations: ColumnElement[bool],
    related: Callable[[InstrumentedAttribute[int]], ColumnElement[bool]] | None,
    limit: int | None = None,
) -> dict[int, dict[str, Any]]:
    # Core statements on the session's connection: plain tuples, no ORM row machinery, the
    # enums as their stored strings.
    connection = db.session.connection()
    orgs = connection.execute(
        select(*_ORG_COLUMNS)
        .where(organizations, Organization.kind == OrgKind.SUPPLIER)
        .order_by(Organization.id)
        .limit(limit)
    ).all()
    if not orgs:
        return {}
    if related is None:
        first, last = orgs[0][0], orgs[-1][0]

        def related(column: InstrumentedAttribute[int]) -> ColumnElement[bool]:
            return column.between(first, last)

    # Each organization's rows, in id order (a range may hold OEMs' rows too: never read).
    sites = _grouped(
        connection,
        Site.organization_id,
        _SITE_COLUMNS,
        related(Site.organization_id),
        Site.active.is_(True),
    )
    capabilities = _grouped(
        connection,
        Capability.organization_id,
        (Capability.category,),
        related(Capability.organization_id),
    )
    certifications = _grouped(
        connection,
        Certification.organization_id,
        _CERT_COLUMNS,
        related(Certification.organization_id),
    )
    return {
        org[0]: _document(
            org,
            sites.get(org[0], ()),
            [category for (category,) in capabilities.get(org[0], ())],
            certifications.get(org[0], ()),
        )
        for org in orgs
    }


def _grouped(
    connection: Connection,
    organization_id: InstrumentedAttribute[int],
    columns: Sequence[Any],
    *where: ColumnElement[bool],
) -> dict[int, list[tuple[Any, ...]]]:
    """Rows of ``columns`` by organization id, each organization's in id order."""
    model = organization_id.class_
    rows = connection.execute(
        select(organization_id, *columns).where(*where).order_by(organization_id, model.id)
    ).all()  # fetched at once: row by row costs the driver more than the rows
    return {
        org_id: [row[1:] for row in group] for org_id, group in groupby(rows, key=itemgetter(0))
    }


def serialised_documents_after(after_id: int, limit: int) -> list[tuple[int, int, bytes]]:
    """(id, version, the document as JSON) of the first ``limit`` suppliers whose ids exceed
    ``after_id``, in id order: what a rebuild sends.

    On PostgreSQL the database writes the JSON of the three lists (``sites``, ``site_info``,
    ``certifications``) in the statement that reads the organizations, so none of their rows
    becomes a Python object; ``tests/test_search_documents.py`` holds the bytes to
    :func:`supplier_document`'s. Elsewhere the documents are built and serialised here."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        return [
            (org_id, document["version"], orjson.dumps(document))
            for org_id, document in load_supplier_documents_after(after_id, limit).items()
        ]
    rows: Sequence[Any] = connection.execute(
        select(*_ORG_COLUMNS, *_SERIALISED_LISTS)
        .where(Organization.id > after_id, Organization.kind == OrgKind.SUPPLIER)
        .order_by(Organization.id)
        .limit(limit)
    ).all()
    return [
        (
            org[0],
            org[1],
            orjson.dumps(
                _assembled(
                    org,
                    categories,
                    sites=orjson.Fragment(sites),
                    site_info=orjson.Fragment(site_info),
                    certifications=orjson.Fragment(certifications),
                )
            ),
        )
        for *org, categories, sites, site_info, certifications in rows
    ]


def _json_float(column: str) -> str:
    """SQL writing a float as orjson does: PostgreSQL's shortest round-trip digits (its float8
    output since version 12), and ``.0`` after a whole number. (orjson switches to an exponent
    at 1e16; coordinates never come near it.)"""
    return (
        f"CASE WHEN {column} = trunc({column}) "
        f"THEN trunc({column})::numeric::text || '.0' ELSE {column}::text END"
    )


def _json_array(element: str, table: str, *where: str) -> str:
    """A correlated subquery: the JSON array of ``element`` (SQL yielding an object's text)
    over the supplier's rows of ``table``, in id order."""
    return (
        # Constant SQL of this module's own fragments: no value from outside goes in.
        f"(SELECT '[' || coalesce(string_agg({element}, ',' ORDER BY x.id), '') || ']' "  # noqa: S608
        f"FROM {table} x WHERE {' AND '.join(['x.organization_id = organizations.id', *where])})"
    )


# What serialised_documents_after reads beside _ORG_COLUMNS: the capabilities' categories, then
# the three lists as JSON text, key for key and byte for byte what _document's dicts serialise to.
# Strings go through to_json (which escapes as orjson does); dates are written ISO.
_LAT, _LON = _json_float("x.lat"), _json_float("x.lon")
_VALID_UNTIL = f"to_char(coalesce(x.valid_until, DATE '{NO_EXPIRY.isoformat()}'), 'YYYY-MM-DD')"
_SERIALISED_LISTS: tuple[ColumnElement[Any], ...] = (
    literal_column(
        "ARRAY(SELECT x.category FROM capabilities x WHERE x.organization_id = organizations.id)"
    ),
    literal_column(
        _json_array(
            f"""'{{"lat":' || {_LAT} || ',"lon":' || {_LON} || '}}'""",
            "sites",
            "x.active",
        )
    ),
    literal_column(
        _json_array(
            f"""'{{"id":' || x.id || ',"name":' || to_json(x.name)::text"""
            f"""   || ',"city_code":' || to_json(x.city_code)::text"""
            f"""   || ',"lat":' || {_LAT} || ',"lon":' || {_LON} || '}}'""",
            "sites",
            "x.active",
        )
    ),
    literal_column(
        _json_array(
            """'{"id":' || x.id || ',"standard":' || to_json(x.standard)::text"""
            """   || ',"status":' || to_json(x.status::text)::text"""
            """   || ',"verification":' || to_json(x.verification::text)::text"""
            """   || ',"valid_from":"' || to_char(x.valid_from, 'YYYY-MM-DD')"""
            """   || '","valid_until":"' """
            f"""   || {_VALID_UNTIL}"""
            """   || '"}'""",
            "certifications",
        )
    ),
)


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
