"""Differential tests: Elasticsearch, the database backend and the plain spec rank alike.

Random worlds (fixed seeds) of a few hundred suppliers with 1–4 sites, mixed tiers,
certifications valid, expired, not yet valid or revoked around the demand's need_by, verified,
pending review or rejected (only verified ones match; searches count declared ones, or verified
ones only with ``verified_only``), categories
at several depths, suspended, pending and hidden suppliers. For random demands (plant, radius,
required standards, tier-weight overrides) the three must return the same suppliers in the same
order with the same explanation. The reference facts are built straight from the rows, not via
the document builder, so the builder is under test too.

Elasticsearch scores are float32 and its geo points are quantised to about a centimetre, so a
demand whose ranking has a near tie (adjacent scores within 1e-5 relative, equal scores with
distances within 1 m) or a supplier within 1 m of the radius is redrawn: the data avoids the
ties precision could flip instead of loosening the comparison.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import selectinload

from market import geo, refdata
from market.clock import business_today
from market.extensions import db
from market.models import (
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    Organization,
    OrgKind,
    OrgStatus,
    Site,
)
from search import spec, text
from search.backends import MatchPage, SearchBackend, SearchPage, SupplierQuery
from search.database import DatabaseSearchBackend
from tests import factories
from tests.conftest import RUN_ID

TODAY = business_today()
STANDARDS = ("iatf-16949", "iso-9001", "iso-26262", "aec-q100")
# Words of names and descriptions, and of text queries: the queries also use synonyms and other
# word forms (刹车 = 制动 = brake, Calipers = caliper = 卡钳, 变速箱 = gearbox, …), and several of
# these words name taxonomy categories, so capabilities match too (search.text).
DESCRIPTION_WORDS = ("caliper", "stamping", "harness", "制动", "冲压", "线束", "电池", "gearbox")
QUERY_WORDS = (
    *DESCRIPTION_WORDS,
    "刹车",
    "Brakes",
    "卡钳",
    "CALIPERS",
    "变速箱",
    "wiring",
    "座椅",
    "动制",
    "制动盘",
    "Ｈａｒｎｅｓｓ",
)
CENTRES = ((23.13, 113.26), (22.54, 114.06), (23.02, 113.12), (22.27, 113.58), (23.35, 116.68))


def _categories_by_depth() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for slug, category in refdata.categories().items():
        out.setdefault(category.depth, []).append(slug)
    return out


CATEGORIES = _categories_by_depth()
ALL_CATEGORIES = sorted(refdata.categories())


# --- worlds -----------------------------------------------------------------------------------


def _point_near(rng: random.Random, lat: float, lon: float, max_km: float) -> tuple[float, float]:
    """A point at a uniformly random spot of the disc of radius ``max_km`` around (lat, lon)."""
    distance = max_km * math.sqrt(rng.random()) / spec.EARTH_RADIUS_KM
    bearing = rng.uniform(0, 2 * math.pi)
    phi1, lmb1 = math.radians(lat), math.radians(lon)
    phi2 = math.asin(
        math.sin(phi1) * math.cos(distance)
        + math.cos(phi1) * math.sin(distance) * math.cos(bearing)
    )
    lmb2 = lmb1 + math.atan2(
        math.sin(bearing) * math.sin(distance) * math.cos(phi1),
        math.cos(distance) - math.sin(phi1) * math.sin(phi2),
    )
    return math.degrees(phi2), math.degrees(lmb2)


def _certification(rng: random.Random, org_id: int, need_by_hint: date) -> dict[str, Any]:
    # Around the demands' need_by dates, so expiry decides eligibility often; some never expire.
    valid_until = (
        None if rng.random() < 0.15 else need_by_hint + timedelta(days=rng.randint(-60, 60))
    )
    number = rng.randint(1, 10**9)
    return {
        "organization_id": org_id,
        "standard": rng.choice(STANDARDS),
        "number": f"C-{number}",
        "valid_from": TODAY + timedelta(days=rng.choice([-700, -300, -30, -1, 0, 1, 20])),
        "valid_until": valid_until,
        "status": CertStatus.REVOKED if rng.random() < 0.12 else CertStatus.ACTIVE,
        # Not drawn from rng (the worlds stay as they were): 70% verified, 15% pending review,
        # 15% rejected.
        "verification": REVIEWS[number % len(REVIEWS)],
    }


REVIEWS = (
    *[CertVerification.VERIFIED] * 14,
    *[CertVerification.PENDING] * 3,
    *[CertVerification.REJECTED] * 3,
)


def _subtree(root: str) -> list[str]:
    return [slug for slug in ALL_CATEGORIES if spec.category_matches(slug, root)]


def _insert(model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Bulk INSERT … RETURNING id (in row order)."""
    result = db.session.execute(
        insert(model).returning(model.id, sort_by_parameter_order=True), rows
    )
    return list(result.scalars())


def build_world(rng: random.Random, suppliers: int) -> World:
    """Insert a world's suppliers with bulk INSERTs (the ORM per object is too slow here)."""
    centre = rng.choice(CENTRES)
    # Two top-level subtrees per world, so demands and capabilities overlap at every depth.
    roots = rng.sample(CATEGORIES[1], 2)
    pool = [slug for root in roots for slug in _subtree(root)]
    cities = list(refdata.cities())
    orgs = [
        {
            "kind": OrgKind.SUPPLIER,
            "uscc": factories.fictional_uscc(),
            "legal_name": f"{rng.choice(DESCRIPTION_WORDS)}零部件有限公司{rng.randint(1, 10**6)}",
            "english_name": f"{rng.choice(DESCRIPTION_WORDS).title()} Parts {rng.randint(1, 10**6)}",
            "city_code": rng.choice(cities),
            "status": rng.choices(
                [OrgStatus.ACTIVE, OrgStatus.SUSPENDED, OrgStatus.PENDING], [0.88, 0.06, 0.06]
            )[0],
            "tier": rng.choices([1, 2, 3, None], [0.3, 0.35, 0.3, 0.05])[0],
            "description": " ".join(rng.sample(DESCRIPTION_WORDS, 2)),
            "listed": rng.random() > 0.05,
            # Not drawn from rng: the worlds (and so the demands' coverage) stay as they were.
            "specialized": n % 3 == 0,
            "version": rng.randint(1, 5),
            # Delivery performance (the opt-in factor), not drawn from rng either: a quarter
            # without any (neutral), the others spread over 0.5..1.0 in basis points.
            "performance_bp": None if n % 4 == 0 else 5000 + (n * 379) % 5001,
        }
        for n in range(suppliers)
    ]
    sites: list[dict[str, Any]] = []
    capabilities: list[dict[str, Any]] = []
    certifications: list[dict[str, Any]] = []
    for org_id in _insert(Organization, orgs):
        for _ in range(rng.randint(1, 4)):
            # A fifth of the sites crowd the centre: plateau ties (f_d = 1 within the offset).
            max_km = 15 if rng.random() < 0.2 else 320
            lat, lon = _point_near(rng, *centre, max_km)
            while (city := geo.city_of(lat, lon)) is None:  # at sea or abroad: sites are on land
                lat, lon = _point_near(rng, *centre, max_km)
            sites.append(
                {
                    "organization_id": org_id,
                    "name": f"厂区 {rng.randint(1, 999)}",
                    "city_code": city.code,  # the city the point is in, as site validation wants
                    "lat": lat,
                    "lon": lon,
                    "active": rng.random() > 0.1,
                }
            )
        for category in rng.sample(pool, rng.randint(1, min(3, len(pool)))):
            capabilities.append({"organization_id": org_id, "category": category, "processes": []})
        for _ in range(rng.randint(1, 4)):
            certifications.append(_certification(rng, org_id, TODAY + timedelta(days=60)))
    _insert(Site, sites)
    _insert(Capability, capabilities)
    _insert(Certification, certifications)
    return World(centre, pool)


@dataclass(frozen=True)
class World:
    centre: tuple[float, float]
    categories: list[str]


def facts_from_rows() -> list[spec.SupplierFact]:
    """The spec's view of every supplier in the database, read straight from the rows."""
    orgs = db.session.scalars(
        select(Organization)
        .where(Organization.kind == OrgKind.SUPPLIER)
        .options(
            selectinload(Organization.sites),
            selectinload(Organization.capabilities),
            selectinload(Organization.certifications),
        )
    ).all()
    return [
        spec.SupplierFact(
            id=org.id,
            active=org.status is OrgStatus.ACTIVE,
            listed=org.listed,
            tier=org.tier,
            categories=tuple(c.category for c in org.capabilities),
            sites=tuple(spec.SiteFact(s.id, s.lat, s.lon, s.active, s.name) for s in org.sites),
            certifications=tuple(
                spec.CertFact(
                    c.id,
                    c.standard,
                    c.status is CertStatus.ACTIVE,
                    c.valid_from,
                    c.valid_until,
                    verified=c.verification is CertVerification.VERIFIED,
                )
                for c in org.certifications
            ),
            performance=None if org.performance_bp is None else org.performance_bp / 10_000,
        )
        for org in orgs
    ]


def random_demand(rng: random.Random, world: World) -> spec.DemandFact:
    lat, lon = _point_near(rng, *world.centre, 8)
    depth = rng.choice([1, 1, 2, 2, 3])
    candidates = [c for c in world.categories if refdata.categories()[c].depth == depth]
    weights: dict[int, float] | None = None
    if rng.random() < 0.6:
        raw = {
            str(tier): rng.choice([0.0, 0.35, 0.5, 0.8, 1.0, 1.25, round(rng.uniform(0.1, 2), 3)])
            for tier in rng.sample([1, 2, 3], rng.randint(1, 3))
        }
        weights = spec.normalise_tier_weights(raw)
    return spec.DemandFact(
        lat=lat,
        lon=lon,
        category=rng.choice(candidates or world.categories),
        required_standards=tuple(rng.sample(STANDARDS, rng.choice([0, 0, 1, 1, 2]))),
        need_by=TODAY + timedelta(days=rng.randint(20, 100)),
        radius_km=float(rng.choice([30, 80, 150, 200, 320, 500])),
        tier_weights=weights or spec.normalise_tier_weights(None),
    )


def precision_safe(
    facts: list[spec.SupplierFact], demand: spec.DemandFact, ranked: list[spec.Match]
) -> bool:
    """No tie that float32 scores or centimetre-quantised points could flip."""
    for a, b in itertools.pairwise(ranked):
        if a.score != b.score and a.score - b.score <= 1e-5 * a.score:
            return False
        if a.score == b.score and abs(a.distance_km - b.distance_km) < 1e-3:
            return False
    for fact in facts:
        distances = [
            spec.haversine_km(demand.lat, demand.lon, s.lat, s.lon) for s in fact.sites if s.active
        ]
        if distances and abs(min(distances) - demand.radius_km) < 1e-3:
            return False
    return True


def precision_safe_demands(
    rng: random.Random, world: World, facts: list[spec.SupplierFact], count: int
) -> Iterator[tuple[spec.DemandFact, list[spec.Match]]]:
    made = 0
    while made < count:
        demand = random_demand(rng, world)
        ranked = spec.rank(facts, demand, TODAY)
        if precision_safe(facts, demand, ranked):
            made += 1
            yield demand, ranked


# --- comparisons ------------------------------------------------------------------------------


def assert_same_ranking(
    backend: SearchBackend, demand: spec.DemandFact, expected: list[spec.Match]
) -> MatchPage:
    result = backend.match(demand, TODAY, 1, 10_000)
    got = [hit.match for hit in result.hits]
    assert [m.supplier_id for m in got] == [m.supplier_id for m in expected], backend.name
    assert result.total == len(expected)
    # The explanation is computed from the document with the spec: exactly equal.
    assert got == expected, backend.name
    for hit, want in zip(result.hits, expected, strict=True):
        if hit.engine_score is not None:  # Elasticsearch's own float32 arithmetic
            assert hit.engine_score == pytest.approx(want.score, rel=1e-5, abs=1e-30)
        if hit.engine_distance_km is not None:
            assert hit.engine_distance_km == pytest.approx(want.distance_km, abs=1e-4)
    return result


def assert_same_pages(backend: SearchBackend, demand: spec.DemandFact, expected: list[spec.Match]):
    per_page = 7
    for page in (1, 2, 3):
        result = backend.match(demand, TODAY, page, per_page)
        want = expected[(page - 1) * per_page : page * per_page]
        assert [h.match.supplier_id for h in result.hits] == [m.supplier_id for m in want]
        assert result.total == len(expected)


@dataclass(frozen=True)
class Expected:
    ids: list[int]
    facets: dict[str, list[tuple[Any, int]]]


def reference_search(
    facts: list[spec.SupplierFact], rows: dict[int, Organization], query: SupplierQuery
) -> Expected:
    """The supplier search box in plain Python (order only defined with a near point)."""
    found: list[tuple[float, int]] = []
    for fact in facts:
        org = rows[fact.id]
        if not (fact.active and fact.listed):
            continue
        if query.category and not any(
            spec.category_matches(c, query.category) for c in fact.categories
        ):
            continue
        valid = _standards_valid_today(org, query.verified_only)
        if any(s not in valid for s in query.standards):
            continue
        if query.tier is not None and fact.tier != query.tier:
            continue
        if query.city_code and org.city_code != query.city_code:
            continue
        if query.specialized is not None and org.specialized != query.specialized:
            continue
        # Tokens analysed afresh from the row's text (not the stored columns, which are under
        # test): a word matches a name, the description, or the name of a capability's category.
        names = _tokens(org.legal_name, org.english_name)
        description = _tokens(org.description)
        if not all(
            names & set(word.tokens)
            or description & set(word.tokens)
            or any(
                spec.category_matches(c, wanted)
                for c in fact.categories
                for wanted in word.categories
            )
            for word in query.word_matches()
        ):
            continue
        in_names = sum(1 for word in query.word_matches() if names & set(word.tokens))
        distance = 0.0
        if query.lat is not None and query.lon is not None:
            sites = [s for s in fact.sites if s.active]
            if not sites:
                continue
            distance = min(spec.haversine_km(query.lat, query.lon, s.lat, s.lon) for s in sites)
            if distance > query.radius_km:
                continue
        found.append((distance if query.near else -in_names, fact.id))
    found.sort()
    ids = [i for _, i in found]
    cities: dict[Any, int] = {}
    tiers: dict[Any, int] = {}
    standards: dict[Any, int] = {}
    specialized: dict[Any, int] = {}
    by_id = {f.id: f for f in facts}
    for i in ids:
        cities[rows[i].city_code] = cities.get(rows[i].city_code, 0) + 1
        specialized[rows[i].specialized] = specialized.get(rows[i].specialized, 0) + 1
        if by_id[i].tier is not None:
            tiers[by_id[i].tier] = tiers.get(by_id[i].tier, 0) + 1
        for s in _standards_valid_today(rows[i], query.verified_only):
            standards[s] = standards.get(s, 0) + 1
    from search.backends import sorted_buckets

    return Expected(
        ids,
        {
            "city": sorted_buckets(cities),
            "tier": sorted_buckets(tiers),
            "certification": sorted_buckets(standards),
            "specialized": sorted_buckets(specialized),
        },
    )


@functools.lru_cache(maxsize=4096)
def _tokens(*texts: str | None) -> frozenset[str]:
    """The tokens of texts, analysed afresh (memoised: every search reads every supplier)."""
    return frozenset(text.token_list(text.index_tokens(*texts)))


def _standards_valid_today(org: Organization, verified_only: bool) -> set[str]:
    """The standards a search counts for a supplier, straight from its rows: an active
    certificate valid today, verified (``verified_only``) or at least not rejected."""
    counted = (
        {CertVerification.VERIFIED}
        if verified_only
        else {CertVerification.VERIFIED, CertVerification.PENDING}
    )
    return {
        c.standard
        for c in org.certifications
        if c.status is CertStatus.ACTIVE
        and c.verification in counted
        and c.valid_from <= TODAY
        and (c.valid_until is None or c.valid_until >= TODAY)
    }


def random_search(rng: random.Random, world: World) -> SupplierQuery:
    near = rng.random() < 0.7
    lat, lon = _point_near(rng, *world.centre, 40)
    return SupplierQuery(
        text=" ".join(rng.sample(QUERY_WORDS, rng.choice([0, 0, 1, 1, 2]))),
        lat=lat if near else None,
        lon=lon if near else None,
        radius_km=rng.choice([25.0, 60.0, 150.0]),
        category=rng.choice([None, rng.choice(world.categories)]),
        standards=tuple(rng.sample(STANDARDS, rng.choice([0, 0, 1]))),
        tier=rng.choice([None, None, 1, 2, 3]),
        city_code=rng.choice([None, None, None, rng.choice(list(refdata.cities()))]),
        specialized=rng.choice([None, None, True, False]),
    )


def assert_same_search(
    backend: SearchBackend, query: SupplierQuery, expected: Expected
) -> SearchPage:
    result = backend.search(query, TODAY, 1, 10_000)
    ids = [hit.document["id"] for hit in result.hits]
    # Near a point: nearest first; else words found in a name first (a constant score per
    # word on Elasticsearch); then id. Fully defined either way.
    assert ids == expected.ids, (backend.name, query)
    assert result.total == len(expected.ids)
    assert result.facets == expected.facets, (backend.name, query)
    return result


def _all_verified(facts: list[spec.SupplierFact]) -> list[spec.SupplierFact]:
    """The facts as if every certificate were verified (what matching was before reviews)."""
    return [
        replace(f, certifications=tuple(replace(c, verified=True) for c in f.certifications))
        for f in facts
    ]


# --- the tests --------------------------------------------------------------------------------


@dataclass
class Coverage:
    """What the comparisons exercised, so a test cannot pass by comparing empty lists."""

    demands: int = 0
    hits: int = 0
    zero_scores: int = 0  # tier weight 0 or no tier: ranked by distance alone
    equal_scores: int = 0  # adjacent equal scores (the plateau within the offset): by distance
    searches: int = 0
    search_hits: int = 0
    text_searches: int = 0  # with words, and something found
    text_hits: int = 0
    performance_demands: int = 0  # the same demands, opted in to the performance factor
    performance_hits: int = 0
    reordered: int = 0  # opted-in rankings that differ from the default one
    # Searches whose answer (hits or facets) verified_only changes.
    review_sensitive: int = 0
    # Suppliers left out of a ranking only because a certificate is pending or rejected.
    unverified_excluded: int = 0


def _compare_with_performance(
    backends: list[SearchBackend],
    facts: list[spec.SupplierFact],
    demand: spec.DemandFact,
    coverage: Coverage,
) -> None:
    """The same demand opted in to the performance factor (when precision-safe too): both
    backends must still rank and explain exactly as the spec does."""
    opted = replace(demand, rank_by_performance=True)
    expected = spec.rank(facts, opted, TODAY)
    if not precision_safe(facts, opted, expected):
        return
    for backend in backends:
        assert_same_ranking(backend, opted, expected)
    coverage.performance_demands += 1
    coverage.performance_hits += len(expected)
    plain = [m.supplier_id for m in spec.rank(facts, demand, TODAY)]
    coverage.reordered += [m.supplier_id for m in expected] != plain


def _run_worlds(
    backends: list[SearchBackend],
    *,
    worlds: int,
    suppliers: tuple[int, int],
    demands: int,
    seed: int,
    refresh: Callable[[], None],
) -> Coverage:
    rng = random.Random(seed)
    search_rng = random.Random(seed + 1)  # searches do not change the worlds drawn after them
    coverage = Coverage()
    for _ in range(worlds):
        savepoint = db.session.begin_nested()
        try:
            world = build_world(rng, rng.randint(*suppliers))
            refresh()
            facts = facts_from_rows()
            rows = {o.id: o for o in db.session.scalars(select(Organization)).all()}
            for n, (demand, expected) in enumerate(
                precision_safe_demands(rng, world, facts, demands)
            ):
                for backend in backends:
                    assert_same_ranking(backend, demand, expected)
                    if n == 0:
                        assert_same_pages(backend, demand, expected)
                _compare_with_performance(backends, facts, demand, coverage)
                coverage.demands += 1
                coverage.hits += len(expected)
                coverage.unverified_excluded += len(
                    spec.rank(_all_verified(facts), demand, TODAY)
                ) - len(expected)
                coverage.zero_scores += sum(1 for m in expected if m.score == 0)
                coverage.equal_scores += sum(
                    1 for a, b in itertools.pairwise(expected) if a.score == b.score > 0
                )
            for n in range(5):
                query = random_search(search_rng, world)
                # Every other search counts verified certificates only (not drawn from the rng:
                # the searches stay as they were).
                query = replace(query, verified_only=n % 2 == 1)
                expected_search = reference_search(facts, rows, query)
                for backend in backends:
                    assert_same_search(backend, query, expected_search)
                flipped = replace(query, verified_only=not query.verified_only)
                coverage.review_sensitive += reference_search(facts, rows, flipped) != (
                    expected_search
                )
                coverage.searches += 1
                coverage.search_hits += len(expected_search.ids)
                if query.text_query and expected_search.ids:
                    coverage.text_searches += 1
                    coverage.text_hits += len(expected_search.ids)
        finally:
            savepoint.rollback()
            # SQLite reuses the rolled-back ids: forget the objects of this world.
            db.session.expunge_all()
    return coverage


def test_database_backend_agrees_with_the_spec(db_session):
    coverage = _run_worlds(
        [DatabaseSearchBackend()],
        worlds=4,
        suppliers=(150, 250),
        demands=6,
        seed=20261125,
        refresh=lambda: None,
    )
    # Measured with 30% of the certificates pending or rejected: 276 ranked hits, 22 suppliers
    # left out only by an unverified certificate, 8 of 20 searches changed by verified_only.
    assert coverage.demands == 24 and coverage.hits > 250, coverage
    assert coverage.unverified_excluded >= 15 and coverage.review_sensitive >= 5, coverage
    # Measured with sites placed inside their cities' real boundaries: 7 text searches with hits.
    assert coverage.text_searches >= 6 and coverage.text_hits > 60, coverage
    assert coverage.performance_demands >= 18 and coverage.reordered >= 10, coverage


@pytest.mark.elasticsearch
def test_elasticsearch_and_database_agree_with_the_spec(db_session, elasticsearch_url):
    from search.elastic import ElasticsearchBackend
    from search.reindex import reindex

    elastic = ElasticsearchBackend(elasticsearch_url, f"{RUN_ID}-differential", timeout=30)

    coverage = _run_worlds(
        [elastic, DatabaseSearchBackend()],
        worlds=15,
        suppliers=(150, 300),
        demands=7,
        seed=5,
        refresh=lambda: reindex(elastic),
    )
    assert coverage.demands == 105, coverage
    # Seed 5 with reviews: 122 suppliers left out only by an unverified certificate; 49 of the
    # 75 searches answer differently with verified_only.
    assert coverage.unverified_excluded >= 80 and coverage.review_sensitive >= 30, coverage
    # Seed 5: 75 searches, 27 of them with words that found something (about 470 hits).
    assert coverage.text_searches >= 20 and coverage.text_hits > 300, coverage
    # Seed 5 compares 1 500 ranked hits since sites lie inside their cities' real boundaries
    # (about 2 000 before; 153 with score 0, 208 adjacent equal scores).
    assert coverage.hits >= 1200 and coverage.search_hits > 300, coverage
    assert coverage.zero_scores > 50 and coverage.equal_scores > 50, coverage
    assert coverage.performance_demands >= 80 and coverage.reordered >= 40, coverage
