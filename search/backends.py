"""The search interface every backend implements, and the shapes of its answers.

Two implementations: :class:`search.database.DatabaseSearchBackend` (the embedded default) and
:class:`search.elastic.ElasticsearchBackend`. Both rank by :mod:`search.spec` and explain each hit
from the document :func:`search.documents.supplier_document` builds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from search import spec
from search.text import TextQuery, categories_matching, parse_query

# Elasticsearch's default index.max_result_window; both backends refuse pages beyond it so they
# behave alike (deep paging is not what a ranked list is for).
MAX_RESULT_WINDOW = 10_000


class SearchUnavailable(Exception):
    """The search engine could not answer (down, slow, or refusing)."""


@dataclass(frozen=True)
class MatchHit:
    """One ranked supplier: its document and the spec's explanation of it."""

    document: dict[str, Any]
    match: spec.Match
    # What the engine itself ranked by, when it is not the spec's own arithmetic
    # (Elasticsearch: the float32 _score and the _geo_distance sort value).
    engine_score: float | None = None
    engine_distance_km: float | None = None


@dataclass
class MatchPage:
    hits: list[MatchHit]
    total: int
    page: int
    per_page: int
    degraded: bool = False


@dataclass(frozen=True)
class SupplierQuery:
    """The filters of the supplier search box (already validated)."""

    # Every word (or one of its synonyms) must be a token of a name, of the description, or of
    # the name of a category the supplier has a capability in (search.text).
    text: str = ""
    lat: float | None = None
    lon: float | None = None
    radius_km: float = spec.DEFAULT_RADIUS_KM  # only with lat/lon
    category: str | None = None  # the category or one of its descendants
    standards: tuple[str, ...] = ()  # a certification valid today of each
    tier: int | None = None
    city_code: str | None = None
    specialized: bool | None = None  # 专精特新
    # True: ``standards`` and the certification facet count verified certificates only;
    # False: declared ones (pending or verified; rejected ones never count).
    verified_only: bool = False

    @property
    def near(self) -> bool:
        return self.lat is not None and self.lon is not None

    @cached_property
    def text_query(self) -> TextQuery:
        return parse_query(self.text)

    def word_matches(self) -> list[WordMatch]:
        """Per query word: the tokens that stand for it and the categories whose name has one."""
        return [
            WordMatch(group, tuple(categories_matching(group))) for group in self.text_query.groups
        ]


@dataclass(frozen=True)
class WordMatch:
    """What satisfies one query word: a token of the group in the names or description, or a
    capability under one of the categories."""

    tokens: tuple[str, ...]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class SearchHit:
    document: dict[str, Any]
    distance_km: float | None = None  # with a near point: to the nearest active site
    nearest_site_id: int | None = None


@dataclass
class SearchPage:
    hits: list[SearchHit]
    total: int
    page: int
    per_page: int
    # facet name ("city", "tier", "certification", "specialized") → [(value, number of
    # suppliers)], most first
    facets: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    degraded: bool = False


def sorted_buckets(counts: dict[Any, int]) -> list[tuple[Any, int]]:
    """Facet buckets in one order for both backends: count descending, then value."""
    return sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))


class SearchBackend(ABC):
    """What the API needs from a search engine."""

    name = "base"

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """Status and latency for /readyz."""

    @abstractmethod
    def match(self, demand: spec.DemandFact, today: date, page: int, per_page: int) -> MatchPage:
        """One page of the suppliers eligible for a demand, ranked by the spec."""

    @abstractmethod
    def search(self, query: SupplierQuery, today: date, page: int, per_page: int) -> SearchPage:
        """One page of visible suppliers matching the search box, with facets."""

    @abstractmethod
    def upsert_suppliers(self, organization_ids: Collection[int]) -> dict[int, str | None]:
        """Bring the index up to date for these organizations: id → error message or None."""
