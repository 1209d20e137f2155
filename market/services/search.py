"""Use cases of search: a demand's ranked suppliers, and the supplier search box.

When Elasticsearch cannot answer (down, too slow, index missing), the answer comes from the
database backend — the same ranking spec, checked equal by the differential tests — marked
``"degraded": true``; with ``SEARCH_FALLBACK = False`` the request is answered 503 instead.
Writes never involve Elasticsearch: they only commit outbox rows. The index may therefore lag
behind the database (a sync waits for Elasticsearch to come back), so the index's hits are
checked against the database: a supplier suspended or hidden since is never shown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from datetime import date
from functools import cache
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import joinedload

from market import refdata
from market.clock import business_today
from market.errors import NotFound, ServiceUnavailable, ValidationFailed
from market.extensions import db
from market.http import MAX_ID
from market.models import Demand, Organization, OrgKind, OrgStatus, Role, User
from market.permissions import auditor_city_prefixes, city_in_jurisdiction
from market.services.pagination import Page
from search import documents, spec, text
from search.backends import (
    MAX_RESULT_WINDOW,
    MatchHit,
    SearchBackend,
    SearchHit,
    SearchUnavailable,
    SupplierQuery,
)
from search.current import search_backend
from search.database import DatabaseSearchBackend

log = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_TIER_WEIGHT = 1000.0
_database = DatabaseSearchBackend()


def demand_matches(user: User, demand_id: int, page: int, per_page: int) -> dict[str, Any]:
    """The suppliers eligible for a demand, ranked and explained (the demand's buyers,
    auditors and admins; anyone else is told it does not exist)."""
    demand = _readable_demand(user, demand_id)
    _check_window(page, per_page)
    fact = _demand_fact(demand)
    on = business_today()
    result, degraded = _answer(lambda backend: backend.match(fact, on, page, per_page))
    hits = _still_visible(result.hits)
    total = result.total - (len(result.hits) - len(hits))
    offset = (page - 1) * per_page
    return {
        "items": [match_item(offset + i + 1, hit) for i, hit in enumerate(hits)],
        "meta": Page([], page, per_page, total).meta,
        "degraded": degraded,
    }


def supplier_search(user: User, args: dict[str, Any]) -> dict[str, Any]:
    """Visible suppliers matching text, place, category, certification, tier and city, with
    facets (any signed-in user)."""
    page, per_page = args["page"], args["per_page"]
    _check_window(page, per_page)
    query = SupplierQuery(
        text=args.get("q", ""),
        lat=args.get("lat"),
        lon=args.get("lon"),
        radius_km=args.get("radius_km", spec.DEFAULT_RADIUS_KM),
        category=args.get("category"),
        standards=tuple(dict.fromkeys(args.get("cert") or ())),
        tier=args.get("tier"),
        city_code=args.get("city"),
        specialized=args.get("specialized"),
        verified_only=args.get("verified_only", False),
    )
    on = business_today()
    result, degraded = _answer(lambda backend: backend.search(query, on, page, per_page))
    hits = _still_visible(result.hits)
    total = result.total - (len(result.hits) - len(hits))
    return {
        "items": [_search_item(hit, on, query) for hit in hits],
        "meta": Page([], page, per_page, total).meta,
        "facets": {
            name: [{"value": value, "count": count} for value, count in buckets]
            for name, buckets in result.facets.items()
        },
        "degraded": degraded,
    }


# --- helpers ------------------------------------------------------------------------------


@cache
def _with_plant() -> tuple[Any, ...]:
    """The demand's plant in the same query; the option built once (its cache key too)."""
    return (joinedload(Demand.plant),)


def _readable_demand(user: User, demand_id: int) -> Demand:
    demand = (
        db.session.get(Demand, demand_id, options=_with_plant())
        if 0 < demand_id <= MAX_ID
        else None
    )
    if demand is None:
        raise NotFound("Demand not found.")
    if user.role is Role.ADMIN:
        return demand
    if user.role is Role.AUDITOR and city_in_jurisdiction(
        demand.plant.city_code, auditor_city_prefixes(user)
    ):
        return demand  # a plant in the auditor's jurisdiction
    if user.role is Role.BUYER and user.organization_id == demand.organization_id:
        return demand
    raise NotFound("Demand not found.")


def _demand_fact(demand: Demand) -> spec.DemandFact:
    try:
        fact = documents.demand_fact(demand)
        weights = fact.tier_weights or {}
        valid = all(math.isfinite(w) and 0 <= w <= _MAX_TIER_WEIGHT for w in weights.values())
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValidationFailed(
            "The demand's tier weights cannot be used for ranking.",
            fields={
                "tier_weights": [f"Each weight must be a number from 0 to {_MAX_TIER_WEIGHT:g}."]
            },
        )
    return fact


def _check_window(page: int, per_page: int) -> None:
    if page * per_page > MAX_RESULT_WINDOW:
        raise ValidationFailed(
            fields={"page": [f"Only the first {MAX_RESULT_WINDOW} results can be paged through."]}
        )


HitT = TypeVar("HitT", MatchHit, SearchHit)


def _still_visible(hits: list[HitT]) -> list[HitT]:
    """The hits whose supplier the database still shows (one indexed query per page).

    The index lags behind the database while a sync waits (Elasticsearch down or refusing); a
    supplier suspended or hidden meanwhile must not be returned from its stale document.
    """
    if not hits:
        return hits
    visible = _visible_suppliers({hit.document["id"] for hit in hits})
    return [hit for hit in hits if hit.document["id"] in visible]


def _visible_suppliers(ids: Collection[int]) -> set[int]:
    return set(db.session.scalars(_visible_statement(), {"ids": list(ids)}))


@cache
def _visible_statement() -> Select[int]:
    """Which of ``ids`` (a parameter) are visible suppliers; built once (every search runs it)."""
    return select(Organization.id).where(
        Organization.id.in_(bindparam("ids", expanding=True)),
        Organization.kind == OrgKind.SUPPLIER,
        Organization.status == OrgStatus.ACTIVE,
        Organization.listed.is_(True),
    )


def _answer(run: Callable[[SearchBackend], T]) -> tuple[T, bool]:
    """Ask the configured backend; if Elasticsearch is unavailable, the database (degraded)."""
    backend = search_backend()
    try:
        return run(backend), False
    except SearchUnavailable as exc:
        if not current_app.config.get("SEARCH_FALLBACK", True):
            raise ServiceUnavailable(
                "Search is temporarily unavailable; please try again in a minute."
            ) from exc
        log.warning("search answered by the database", extra={"reason": str(exc)[:200]})
        return run(_database), True


def _supplier_summary(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": document["id"],
        "legal_name": document["legal_name"],
        "english_name": document["english_name"],
        "city_code": document["city_code"],
        "tier": document["tier"],
        "capabilities": document["capabilities"],
    }


def _site_ref(document: dict[str, Any], site_id: int) -> dict[str, Any]:
    site = documents.site_info(document, site_id)
    return {"id": site["id"], "name": site["name"], "city_code": site["city_code"]}


def match_item(rank: int, hit: MatchHit) -> dict[str, Any]:
    match, document = hit.match, hit.document
    certifications = {c["id"]: c for c in document["certifications"]}
    return {
        "rank": rank,
        "supplier": _supplier_summary(document),
        "distance_km": match.distance_km,
        "nearest_site": _site_ref(document, match.nearest_site_id),
        "distance_factor": match.distance_factor,
        "tier_factor": match.tier_factor,
        "performance_factor": match.performance_factor,
        "score": match.score,
        "matched_certifications": [
            {
                "id": cert_id,
                "standard": certifications[cert_id]["standard"],
                "valid_until": (
                    None
                    if certifications[cert_id]["valid_until"] == documents.NO_EXPIRY.isoformat()
                    else certifications[cert_id]["valid_until"]
                ),
            }
            for cert_id in match.matched_certifications
        ],
    }


def highlights(document: dict[str, Any], query: SupplierQuery) -> list[dict[str, Any]]:
    """Where the query's tokens occur: in the names, the description (an excerpt) and the
    names ("中文 English") of the supplier's categories. Computed from the document, so both
    backends answer the same."""
    tokens = query.text_query.tokens
    if not tokens:
        return []
    found = []
    for field in ("legal_name", "english_name", "description"):
        marked = text.highlight(document[field], tokens)
        if marked is not None:
            found.append({"field": field, **marked})
    for slug in document["capabilities"]:
        category = refdata.categories().get(slug)
        name = f"{category.zh} {category.en}" if category else None
        marked = text.highlight(name, tokens)
        if marked is not None:
            found.append({"field": "category", **marked})
    return found


def _search_item(hit: SearchHit, on: date, query: SupplierQuery) -> dict[str, Any]:
    return {
        "supplier": _supplier_summary(hit.document),
        "highlights": highlights(hit.document, query),
        "certifications": documents.valid_standards(
            hit.document, on, documents.counted_verifications(query.verified_only)
        ),
        "verified_certifications": documents.valid_standards(hit.document, on, documents.VERIFIED),
        "distance_km": hit.distance_km,
        "nearest_site": (
            _site_ref(hit.document, hit.nearest_site_id)
            if hit.nearest_site_id is not None
            else None
        ),
    }
