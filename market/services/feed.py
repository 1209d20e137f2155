"""The supplier's demand feed, and telling the best-ranked suppliers of a newly published demand.

Both answer from the ranking spec as the database search backend computes it (the source of
truth; the differential tests hold Elasticsearch to it), so a supplier's rank in its feed is its
position in ``GET /demands/{id}/matches`` and its explanation is the same object.

The feed is computed, not stored: one SQL query selects the candidate demands — open, in a
category that is the supplier's capability or an ancestor of one, with the plant inside the
bounding box of ``MAX_RADIUS_KM`` around one of the supplier's active sites, matching ``q`` —
then :func:`search.spec.match` decides eligibility exactly (the demand's own radius, the
certifications through need_by) from the supplier's search document. Only the requested page is
ranked: one ranking query per demand on it (the eligible suppliers' sites around that plant).

Publishing a demand tells the top ``DEMAND_NOTIFY_TOP_N`` eligible suppliers (``demand.published``
events in the publish transaction); a hidden target price is never in them.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import selectinload

from market.clock import business_today
from market.extensions import db
from market.models import Demand, DemandState, OrgKind, Quote, Role, Site, User
from market.models.marketplace import ACTIVE_QUOTE_STATUSES
from market.permissions import require_active_org
from market.services.events import EventKind, emit_event
from market.services.pagination import Page
from market.services.search import match_item
from search import documents, spec
from search.backends import MatchHit
from search.database import DatabaseSearchBackend, bounding_box, text_conditions
from search.text import parse_query

DEFAULT_NOTIFY_TOP_N = 20
_database = DatabaseSearchBackend()

# sort name → the key of an eligible (demand, match) pair; ties are broken by demand id.
_SORT_KEYS: Mapping[str, Any] = {
    "id": lambda demand, match: demand.id,
    # Rows made open without the publish use case (seed data) have no published_at.
    "published_at": lambda demand, match: demand.published_at or demand.created_at,
    "need_by": lambda demand, match: demand.need_by,
    "distance_km": lambda demand, match: match.distance_km,
}


def demand_feed(user: User, query: dict[str, Any]) -> dict[str, Any]:
    """The open demands the user's supplier is eligible for, each with its rank and explanation."""
    org = require_active_org(user, OrgKind.SUPPLIER, "see the demand feed")
    on = business_today()
    document = documents.load_supplier_documents([org.id]).get(org.id)
    page, per_page = query["page"], query["per_page"]
    if document is None:
        return Page([], page, per_page, 0).as_dict()
    supplier = documents.supplier_fact(document)
    eligible = [
        (demand, found)
        for demand in _candidates(supplier, on, query.get("q"))
        if (found := spec.match(supplier, documents.demand_fact(demand), on)) is not None
    ]
    sort = query["sort"]
    key = _SORT_KEYS[sort.removeprefix("-")]
    eligible.sort(key=lambda pair: (key(*pair), pair[0].id), reverse=sort.startswith("-"))
    window = eligible[(page - 1) * per_page : page * per_page]
    quoted = _active_quotes(org.id, [demand.id for demand, _ in window])
    items = []
    for demand, found in window:
        rank, total = _rank_of(org.id, found, documents.demand_fact(demand), on)
        items.append(
            {
                "demand": demand,
                "match": match_item(rank, MatchHit(document=document, match=found)),
                "eligible_suppliers": total,
                "quote_id": quoted.get(demand.id),
            }
        )
    return Page(items, page, per_page, len(eligible)).as_dict()


def notify_published(demand: Demand) -> int:
    """Announce a just-published demand to its top N eligible suppliers (in the caller's
    transaction); returns how many were told."""
    limit = int(current_app.config.get("DEMAND_NOTIFY_TOP_N", DEFAULT_NOTIFY_TOP_N))
    if limit <= 0:
        return 0
    fact = documents.demand_fact(demand)
    result = _database.match(fact, business_today(), 1, limit)
    for rank, hit in enumerate(result.hits, start=1):
        emit_event(
            EventKind.DEMAND_PUBLISHED,
            organization_id=hit.document["id"],
            subject_type="demand",
            subject_id=demand.id,
            data=published_data(demand, rank, hit.match.distance_km, result.total),
        )
    return len(result.hits)


def published_data(demand: Demand, rank: int, distance_km: float, total: int) -> dict[str, Any]:
    """What a supplier is told of a published demand (the target price only if not hidden)."""
    price = demand.target_price_for(Role.SUPPLIER)
    return {
        "demand_id": demand.id,
        "title": demand.title,
        "category": demand.category,
        "quantity": demand.quantity,
        "unit": demand.unit,
        "need_by": demand.need_by.isoformat(),
        "radius_km": demand.radius_km,
        "required_standards": list(demand.required_standards or ()),
        "target_unit_price": str(price) if price is not None else None,
        "rank": rank,
        "eligible_suppliers": total,
        "distance_km": round(distance_km, 3),
    }


# --- helpers ------------------------------------------------------------------------------


def _ancestors(category: str) -> set[str]:
    """``a.b.c`` → ``{a, a.b, a.b.c}``: the demand categories a capability in it serves."""
    parts = category.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts) + 1)}


def _candidates(supplier: spec.SupplierFact, on: date, words: str | None) -> list[Demand]:
    """Open demands the supplier may be eligible for (a superset; :func:`spec.match` decides)."""
    sites = [site for site in supplier.sites if site.active]
    categories = set().union(*(_ancestors(c) for c in supplier.categories))
    if not (supplier.active and supplier.listed and sites and categories):
        return []
    near_a_site = or_(
        *(and_(*bounding_box(site.lat, site.lon, spec.MAX_RADIUS_KM)) for site in sites)
    )
    stmt: Select[Any] = (
        select(Demand)
        .join(Site, Site.id == Demand.plant_id)
        .where(
            Demand.state == DemandState.OPEN,
            Demand.need_by >= on,
            Demand.category.in_(sorted(categories)),
            near_a_site,
        )
        .options(selectinload(Demand.plant), selectinload(Demand.organization))
    )
    if words:
        stmt = stmt.where(*text_conditions(parse_query(words), Demand.search_text))
    return list(db.session.scalars(stmt))


def _rank_of(org_id: int, found: spec.Match, demand: spec.DemandFact, on: date) -> tuple[int, int]:
    """The supplier's 1-based rank among the demand's eligible suppliers, and how many there are."""
    ranking = _database.ranking(demand, on)
    for position, (_, _, supplier_id) in enumerate(ranking, start=1):
        if supplier_id == org_id:
            return position, len(ranking)
    # Not in the ranking (its rows changed between the two queries): where it would stand.
    return bisect.bisect_left(ranking, found.sort_key) + 1, len(ranking) + 1


def _active_quotes(org_id: int, demand_ids: list[int]) -> dict[int, int]:
    if not demand_ids:
        return {}
    rows = db.session.execute(
        select(Quote.demand_id, Quote.id).where(
            Quote.organization_id == org_id,
            Quote.demand_id.in_(demand_ids),
            Quote.status.in_(ACTIVE_QUOTE_STATUSES),
        )
    )
    return {demand_id: quote_id for demand_id, quote_id in rows}
