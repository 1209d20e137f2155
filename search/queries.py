"""Elasticsearch request bodies for matching and for the supplier search box.

Plain functions from validated inputs to dicts: no scripts (the server may have no painless) and
never a ``query_string`` — user text is analysed in Python (:mod:`search.text`) and only its
tokens reach Elasticsearch, as exact ``terms``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

from search import spec
from search.backends import SupplierQuery, WordMatch
from search.documents import VERIFIED, counted_verifications

SITES = "sites"
NAME_TOKENS = "name_tokens"
TEXT_TOKENS = "text_tokens"
PERFORMANCE = "performance"
_INT32 = 2**31


def visible() -> dict[str, Any]:
    return {"term": {"visible": True}}


def holds_certification(
    standard: str | None,
    valid_on: date,
    valid_through: date,
    verifications: Collection[str] = VERIFIED,
) -> dict[str, Any]:
    """A nested filter: an active certification (of ``standard``) valid over the whole period,
    in one of these review states (verified only, as matching wants, unless told otherwise)."""
    conditions: list[dict[str, Any]] = [
        {"term": {"certifications.status": "active"}},
        {"terms": {"certifications.verification": sorted(verifications)}},
        {"range": {"certifications.valid_from": {"lte": valid_on.isoformat()}}},
        {"range": {"certifications.valid_until": {"gte": valid_through.isoformat()}}},
    ]
    if standard is not None:
        conditions.insert(0, {"term": {"certifications.standard": standard}})
    return {
        "nested": {
            "path": "certifications",
            "query": {"bool": {"filter": conditions}},
            "score_mode": "none",
        }
    }


def within(lat: float, lon: float, radius_km: float) -> dict[str, Any]:
    """Some site within the radius (great-circle, so it agrees with the spec's haversine)."""
    return {
        "geo_distance": {
            "distance": f"{radius_km:.6f}km",
            "distance_type": "arc",
            SITES: {"lat": lat, "lon": lon},
        }
    }


def by_distance(lat: float, lon: float) -> dict[str, Any]:
    """Sort by the distance to the nearest site."""
    return {
        "_geo_distance": {
            SITES: {"lat": lat, "lon": lon},
            "order": "asc",
            "unit": "km",
            "mode": "min",
            "distance_type": "arc",
        }
    }


def match_query(demand: spec.DemandFact, today: date) -> dict[str, Any]:
    """The ranking spec as a ``function_score`` query.

    Every eligibility rule is a ``bool.filter`` inside the function_score, so the decay is only
    computed for candidates; the score is gauss(nearest site) × tier weight (boost_mode replace
    drops the constant query score).
    """
    filters: list[dict[str, Any]] = [
        visible(),
        {"term": {"categories": demand.category}},
        *(
            holds_certification(standard, today, demand.need_by)
            for standard in dict.fromkeys(demand.required_standards)
        ),
        within(demand.lat, demand.lon, demand.radius_km),
    ]
    weights = {
        tier: weight
        for tier, weight in (demand.tier_weights or spec.DEFAULT_TIER_WEIGHTS).items()
        if -_INT32 <= tier < _INT32
    }
    functions: list[dict[str, Any]] = [
        {
            "gauss": {
                SITES: {
                    "origin": {"lat": demand.lat, "lon": demand.lon},
                    "offset": f"{spec.DECAY_OFFSET_KM}km",
                    "scale": f"{spec.DECAY_SCALE_KM}km",
                    "decay": spec.DECAY,
                },
                "multi_value_mode": "min",
            }
        },
        *(
            {"filter": {"term": {"tier": tier}}, "weight": float(weight)}
            for tier, weight in sorted(weights.items())
        ),
        # A supplier without a tier, or of a tier the table does not name, counts 0 in the
        # spec; without this function Elasticsearch would multiply by nothing (i.e. by 1).
        {"filter": {"bool": {"must_not": [{"terms": {"tier": sorted(weights)}}]}}, "weight": 0.0},
    ]
    if demand.rank_by_performance:
        functions.append(performance_function())
    return {
        "function_score": {
            "query": {"bool": {"filter": filters}},
            "functions": functions,
            "score_mode": "multiply",
            "boost_mode": "replace",
        }
    }


def performance_function() -> dict[str, Any]:
    """f_p: the indexed performance score as it is (modifier none, factor 1), neutral when the
    supplier has none; multiplied into the score like the other functions (no scripts)."""
    return {
        "field_value_factor": {
            "field": PERFORMANCE,
            "factor": 1.0,
            "modifier": "none",
            "missing": spec.NEUTRAL_PERFORMANCE,
        }
    }


def match_sort(demand: spec.DemandFact) -> list[dict[str, Any]]:
    """Score descending, then distance to the nearest site, then organization id."""
    return [
        {"_score": {"order": "desc"}},
        by_distance(demand.lat, demand.lon),
        {"id": {"order": "asc"}},
    ]


def word_filter(word: WordMatch) -> dict[str, Any]:
    """One query word: a token of its group in the names or description, or a capability
    under a category whose name has one (token sets: exact terms, no analysis of user text)."""
    should: list[dict[str, Any]] = [
        {"terms": {NAME_TOKENS: list(word.tokens)}},
        {"terms": {TEXT_TOKENS: list(word.tokens)}},
    ]
    if word.categories:
        should.append({"terms": {"categories": list(word.categories)}})
    return {"bool": {"should": should, "minimum_should_match": 1}}


def search_query(query: SupplierQuery, today: date) -> dict[str, Any]:
    """The supplier search box: filters, and every query word as a token filter.

    The score is the number of words found in a name (a constant 1 each), so the order —
    score, then id — is exactly the database backend's.
    """
    filters: list[dict[str, Any]] = [visible()]
    if query.category:
        filters.append({"term": {"categories": query.category}})
    counted = counted_verifications(query.verified_only)
    filters.extend(
        holds_certification(s, today, today, counted) for s in dict.fromkeys(query.standards)
    )
    if query.tier is not None:
        filters.append({"term": {"tier": query.tier}})
    if query.city_code:
        filters.append({"term": {"city_code": query.city_code}})
    if query.specialized is not None:
        filters.append({"term": {"specialized": query.specialized}})
    if query.lat is not None and query.lon is not None:
        filters.append(within(query.lat, query.lon, query.radius_km))
    words = query.word_matches()
    filters.extend(word_filter(word) for word in words)
    in_names = [
        {"constant_score": {"filter": {"terms": {NAME_TOKENS: list(word.tokens)}}, "boost": 1.0}}
        for word in words
    ]
    return {"bool": {"filter": filters, "should": in_names}}


def search_sort(query: SupplierQuery) -> list[Any]:
    """Near a point: nearest first; with text: most words in a name first; always then by id."""
    if query.lat is not None and query.lon is not None:
        return [by_distance(query.lat, query.lon), {"id": {"order": "asc"}}]
    if query.text_query:
        return [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}]
    return [{"id": {"order": "asc"}}]


def facet_aggregations(today: date, verified_only: bool = False) -> dict[str, Any]:
    """City, tier and currently valid certification standards (declared ones, or verified ones
    only), counted in suppliers."""
    counted = counted_verifications(verified_only)
    valid_today = holds_certification(None, today, today, counted)["nested"]["query"]
    return {
        "city": {"terms": {"field": "city_code", "size": 100}},
        "specialized": {"terms": {"field": "specialized", "size": 2}},
        "tier": {"terms": {"field": "tier", "size": 10}},
        "certification": {
            "nested": {"path": "certifications"},
            "aggs": {
                "valid": {
                    "filter": valid_today,
                    "aggs": {
                        "standard": {
                            "terms": {"field": "certifications.standard", "size": 100},
                            "aggs": {"suppliers": {"reverse_nested": {}}},
                        }
                    },
                }
            },
        },
    }
