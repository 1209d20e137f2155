"""The database search backend: the embedded default, and the fallback when Elasticsearch is down.

Matching runs in two steps. SQL selects the candidates' active sites inside a bounding box
around the plant, already restricted to eligible suppliers (active and listed, a capability in
the category's subtree, a valid, verified certification of every required standard); Python
then computes the exact haversine distance to each supplier's nearest site, drops those beyond
the radius, scores with :mod:`search.spec` and sorts. Only the requested page is loaded as
documents.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, literal, or_, select, text
from sqlalchemy.orm import aliased

from market.extensions import db
from market.models import (
    Capability,
    Certification,
    CertStatus,
    Organization,
    OrgKind,
    OrgStatus,
    Site,
)
from search import spec
from search.backends import (
    MatchHit,
    MatchPage,
    SearchBackend,
    SearchHit,
    SearchPage,
    SupplierQuery,
    WordMatch,
    sorted_buckets,
)
from search.documents import (
    VERIFIED,
    counted_verifications,
    explain,
    load_supplier_documents,
    nearest_site,
    performance,
)
from search.text import TextQuery

# Bounding boxes are widened by this much so that rounding never cuts off a site at the edge;
# the exact haversine check decides.
_BOX_MARGIN = 1.0001


class DatabaseSearchBackend(SearchBackend):
    """Ranking computed from the database (SQL prefilter, exact scoring in Python)."""

    name = "database"

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        db.session.execute(text("SELECT 1"))
        latency = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "ok", "kind": "database", "latency_ms": latency}

    def match(self, demand: spec.DemandFact, today: date, page: int, per_page: int) -> MatchPage:
        ranked = self.ranking(demand, today)
        window = ranked[(page - 1) * per_page : page * per_page]
        documents = load_supplier_documents([org_id for _, _, org_id in window])
        hits = []
        for _, _, org_id in window:
            document = documents[org_id]
            explained = explain(document, demand, today)
            if explained is not None:  # a site deactivated since the first query
                hits.append(MatchHit(document=document, match=explained))
        return MatchPage(hits=hits, total=len(ranked), page=page, per_page=per_page)

    def ranking(self, demand: spec.DemandFact, today: date) -> list[tuple[float, float, int]]:
        """Every eligible supplier's sort key ``(-score, distance_km, id)``, best first (what
        :meth:`match` pages through; the supplier feed finds a supplier's own rank in it)."""
        conditions = [
            *_visible_supplier(),
            _in_category(demand.category),
            *(
                _holds_certification(standard, today, demand.need_by)
                for standard in dict.fromkeys(demand.required_standards)
            ),
        ]
        weights = demand.tier_weights or spec.DEFAULT_TIER_WEIGHTS
        ranked: list[tuple[float, float, int]] = []
        nearest = _nearest_sites(demand.lat, demand.lon, demand.radius_km, conditions)
        scores = _performance(nearest) if demand.rank_by_performance else {}
        for org_id, (distance, tier) in nearest.items():
            f_p = spec.performance_factor(scores.get(org_id), demand.rank_by_performance)
            score = spec.score(spec.distance_factor(distance), spec.tier_factor(tier, weights), f_p)
            ranked.append((-score, distance, org_id))
        ranked.sort()
        return ranked

    def search(self, query: SupplierQuery, today: date, page: int, per_page: int) -> SearchPage:
        conditions = _search_conditions(query, today)
        if query.lat is not None and query.lon is not None:
            nearest = _nearest_sites(query.lat, query.lon, query.radius_km, conditions)
            ordered = sorted((distance, org_id) for org_id, (distance, _) in nearest.items())
            ids = [org_id for _, org_id in ordered]
            total = len(ids)
            page_ids = ids[(page - 1) * per_page : page * per_page]
            # The exact radius check happened in Python: facets count exactly those suppliers.
            facet_scope: list[ColumnElement[bool]] = [Organization.id.in_(ids)] if ids else []
        else:
            total = db.session.scalar(select(func.count(Organization.id)).where(*conditions)) or 0
            order: list[Any] = []
            words = query.word_matches()
            if words:
                # The number of words found in a name, like Elasticsearch's constant scores.
                in_names = sum(
                    (
                        case((has_token(Organization.search_names, w.tokens), 1), else_=0)
                        for w in words
                    ),
                    start=literal(0),
                )
                order.append(in_names.desc())
            order.append(Organization.id)
            page_ids = list(
                db.session.scalars(
                    select(Organization.id)
                    .where(*conditions)
                    .order_by(*order)
                    .limit(per_page)
                    .offset((page - 1) * per_page)
                )
            )
            facet_scope = conditions
        documents = load_supplier_documents(page_ids)
        hits = []
        for org_id in page_ids:
            document = documents[org_id]
            distance_km = site_id = None
            if query.lat is not None and query.lon is not None:
                found = nearest_site(document, query.lat, query.lon)
                if found is not None:
                    site_id, distance_km = found[0]["id"], found[1]
            hits.append(SearchHit(document, distance_km, site_id))
        facets = (
            _facets(facet_scope, today, counted_verifications(query.verified_only))
            if total
            else _facets_empty()
        )
        return SearchPage(hits=hits, total=total, page=page, per_page=per_page, facets=facets)

    def upsert_suppliers(self, organization_ids: Collection[int]) -> dict[int, str | None]:
        """Nothing to do: the database is the index."""
        return dict.fromkeys(organization_ids)


# --- SQL building blocks ------------------------------------------------------------------


def _visible_supplier() -> list[ColumnElement[bool]]:
    return [
        Organization.kind == OrgKind.SUPPLIER,
        Organization.status == OrgStatus.ACTIVE,
        Organization.listed.is_(True),
    ]


def _in_category(category: str) -> ColumnElement[bool]:
    """A capability in the category or below it (``a.b`` is under ``a``; ``ab`` is not)."""
    capability = aliased(Capability)
    return exists().where(
        capability.organization_id == Organization.id,
        or_(
            capability.category == category,
            capability.category.startswith(category + ".", autoescape=True),
        ),
    )


def _holds_certification(
    standard: str,
    valid_on: date,
    valid_through: date,
    verifications: Collection[str] = VERIFIED,
) -> ColumnElement[bool]:
    """An active certification of the standard valid over the period, in one of these review
    states (verified only, as matching wants, unless told otherwise)."""
    # An alias: the facet query selects from certifications itself, and the EXISTS must not
    # correlate to that.
    cert = aliased(Certification)
    return exists().where(
        cert.organization_id == Organization.id,
        cert.standard == standard,
        cert.status == CertStatus.ACTIVE,
        cert.verification.in_(sorted(verifications)),
        cert.valid_from <= valid_on,
        or_(cert.valid_until.is_(None), cert.valid_until >= valid_through),
    )


def text_conditions(query: TextQuery, *columns: Any) -> list[ColumnElement[bool]]:
    """Every word of the query (or a synonym) as a token of one of these token columns: the
    text search of demands and organizations (database-backed; no index of their own)."""
    return [or_(*(has_token(column, group) for column in columns)) for group in query.groups]


def has_token(column: Any, tokens: Iterable[str]) -> ColumnElement[bool]:
    """The stored token set (``" tok1 tok2 "``) holds one of the tokens.

    Whole tokens are compared: each is looked for with its delimiting spaces, so ``制动`` does
    not match the token ``制动器`` (which the index holds with its sub-word ``制动`` anyway).
    """
    return or_(*(column.contains(f" {token} ", autoescape=True) for token in tokens))


def _in_any_category(categories: Iterable[str]) -> ColumnElement[bool]:
    capability = aliased(Capability)
    return exists().where(
        capability.organization_id == Organization.id,
        or_(
            *(
                or_(
                    capability.category == category,
                    capability.category.startswith(category + ".", autoescape=True),
                )
                for category in categories
            )
        ),
    )


def word_condition(word: WordMatch) -> ColumnElement[bool]:
    """One query word, as :func:`search.queries.word_filter` states it for Elasticsearch."""
    alternatives = [
        has_token(Organization.search_names, word.tokens),
        has_token(Organization.search_text, word.tokens),
    ]
    if word.categories:
        alternatives.append(_in_any_category(word.categories))
    return or_(*alternatives)


def _search_conditions(query: SupplierQuery, today: date) -> list[ColumnElement[bool]]:
    conditions = _visible_supplier()
    conditions.extend(word_condition(word) for word in query.word_matches())
    if query.specialized is not None:
        conditions.append(Organization.specialized.is_(query.specialized))
    if query.category:
        conditions.append(_in_category(query.category))
    counted = counted_verifications(query.verified_only)
    conditions.extend(
        _holds_certification(standard, today, today, counted)
        for standard in dict.fromkeys(query.standards)
    )
    if query.tier is not None:
        conditions.append(Organization.tier == query.tier)
    if query.city_code:
        conditions.append(Organization.city_code == query.city_code)
    return conditions


def bounding_box(lat: float, lon: float, radius_km: float) -> list[ColumnElement[bool]]:
    """Conditions on Site.lat/lon that keep every point within ``radius_km`` of (lat, lon).

    The latitude band is exact on the sphere; the longitude band is the widest at the box's
    latitude (Matuschek's method). Near a pole or across the antimeridian only the band is used.
    """
    angular = radius_km / spec.EARTH_RADIUS_KM * _BOX_MARGIN
    dlat = math.degrees(angular)
    conditions: list[ColumnElement[bool]] = [
        Site.lat >= lat - dlat,
        Site.lat <= lat + dlat,
    ]
    if abs(lat) + dlat >= 90 or angular >= math.pi / 2:
        return conditions
    dlon = math.degrees(math.asin(min(1.0, math.sin(angular) / math.cos(math.radians(lat)))))
    if lon - dlon < -180 or lon + dlon > 180:
        return conditions
    return [*conditions, Site.lon >= lon - dlon, Site.lon <= lon + dlon]


def _nearest_sites(
    lat: float, lon: float, radius_km: float, conditions: Iterable[ColumnElement[bool]]
) -> dict[int, tuple[float, int | None]]:
    """Supplier id → (distance to its nearest active site, tier), for those within the radius."""
    rows = db.session.execute(
        select(Site.organization_id, Site.lat, Site.lon, Organization.tier)
        .join(Organization, Organization.id == Site.organization_id)
        .where(Site.active.is_(True), *bounding_box(lat, lon, radius_km), *conditions)
    )
    nearest: dict[int, tuple[float, int | None]] = {}
    for org_id, site_lat, site_lon, tier in rows:
        distance = spec.haversine_km(lat, lon, site_lat, site_lon)
        if distance <= radius_km and (org_id not in nearest or distance < nearest[org_id][0]):
            nearest[org_id] = (distance, tier)
    return nearest


def _performance(org_ids: Collection[int]) -> dict[int, float | None]:
    """The candidates' stored performance scores, as the documents carry them."""
    ids = list(org_ids)
    scores: dict[int, float | None] = {}
    for start in range(0, len(ids), 5000):  # bounded IN lists
        rows = db.session.execute(
            select(Organization.id, Organization.performance_bp).where(
                Organization.id.in_(ids[start : start + 5000])
            )
        )
        scores.update({org_id: performance(bp) for org_id, bp in rows})
    return scores


def _facets(
    scope: list[ColumnElement[bool]], today: date, verifications: Collection[str]
) -> dict[str, list[tuple[Any, int]]]:
    """City, tier and valid-certification counts (certificates in these review states) over
    the whole result (GROUP BY)."""
    cities = db.session.execute(
        select(Organization.city_code, func.count(Organization.id))
        .where(*scope)
        .group_by(Organization.city_code)
    )
    tiers = db.session.execute(
        select(Organization.tier, func.count(Organization.id))
        .where(*scope, Organization.tier.is_not(None))
        .group_by(Organization.tier)
    )
    standards = db.session.execute(
        select(Certification.standard, func.count(func.distinct(Certification.organization_id)))
        .join(Organization, Organization.id == Certification.organization_id)
        .where(
            *scope,
            Certification.status == CertStatus.ACTIVE,
            Certification.verification.in_(sorted(verifications)),
            Certification.valid_from <= today,
            or_(Certification.valid_until.is_(None), Certification.valid_until >= today),
        )
        .group_by(Certification.standard)
    )
    specialized = db.session.execute(
        select(Organization.specialized, func.count(Organization.id))
        .where(*scope)
        .group_by(Organization.specialized)
    )
    return {
        "city": sorted_buckets({code: n for code, n in cities}),
        "tier": sorted_buckets({tier: n for tier, n in tiers}),
        "certification": sorted_buckets({standard: n for standard, n in standards}),
        "specialized": sorted_buckets({bool(flag): n for flag, n in specialized}),
    }


def _facets_empty() -> dict[str, list[tuple[Any, int]]]:
    return {"city": [], "tier": [], "certification": [], "specialized": []}
