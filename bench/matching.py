"""Cases 1–3: ranked matches, match throughput, and rebuilding the index.

1. ``GET /demands/{id}/matches`` (real HTTP to gunicorn, one client) beside the raw
   Elasticsearch client call with the same body, a plain-SQL query (GIN on category paths),
   PostGIS (``ST_DWithin`` on geography, GiST) and the product's database backend.
2. The match endpoint under gunicorn at a fixed concurrency beside raw ``_search`` requests at
   the same concurrency (one load client for both).
3. ``flask search reindex`` beside posting pre-serialised bulk bodies to a fresh index.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from elasticsearch import Elasticsearch

from bench.load import Gunicorn, Request, closed_loop
from bench.stats import Report, Row, percentile
from bench.world import ES, World, admin_token, as_postgres, ensure_demands, label, prepare
from search import queries, spec

PER_PAGE = 20
# Issue 18's goals: the API's p50 within this factor of the raw Elasticsearch call (by size),
# and its throughput at the same concurrency at least this share of raw _search (at 10k).
P50_RATIO_GOAL = {10_000: 1.5, 100_000: 1.5, 1_000_000: 1.3}
THROUGHPUT_SHARE_GOAL = {10_000: 0.4}
_SIGMA2 = -(spec.DECAY_SCALE_KM**2) / (2 * math.log(spec.DECAY))
_TIER_CASE = " ".join(
    f"WHEN {tier} THEN {weight!r}" for tier, weight in sorted(spec.DEFAULT_TIER_WEIGHTS.items())
)

# A denormalised table for the SQL baselines: every ancestor path of every capability of every
# visible supplier, GIN-indexed (what the Elasticsearch document's ``categories`` field holds).
PATHS_TABLE = """
CREATE TABLE bench_supplier_paths AS
SELECT o.id AS organization_id, o.tier,
       array_agg(DISTINCT array_to_string((string_to_array(c.category, '.'))[1:n], '.')) AS paths
FROM organizations o
JOIN capabilities c ON c.organization_id = o.id
CROSS JOIN LATERAL generate_series(1, cardinality(string_to_array(c.category, '.'))) AS n
WHERE o.kind = 'supplier' AND o.status = 'active' AND o.listed
GROUP BY o.id, o.tier;
CREATE INDEX bench_supplier_paths_gin ON bench_supplier_paths USING gin (paths);
ALTER TABLE bench_supplier_paths ADD PRIMARY KEY (organization_id);
ANALYZE bench_supplier_paths;
"""
GEOGRAPHY = "(ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)::geography)"
GEO_INDEX = (
    "CREATE INDEX IF NOT EXISTS bench_sites_geography ON sites USING gist "
    "((ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography)) WHERE active; ANALYZE sites;"
)

_CANDIDATES = """
candidates AS (
  SELECT p.organization_id, p.tier FROM bench_supplier_paths p
  WHERE p.paths @> ARRAY[%(category)s]::text[]
    AND (%(standard)s::text IS NULL OR EXISTS (
      SELECT 1 FROM certifications c
      WHERE c.organization_id = p.organization_id AND c.standard = %(standard)s
        AND c.status = 'active' AND c.verification = 'verified' AND c.valid_from <= %(today)s
        AND (c.valid_until IS NULL OR c.valid_until >= %(need_by)s)))
)"""
# Only constants of the spec are formatted into these queries; values are bound parameters.
# The spec's haversine distance (km) from %(lat)s, %(lon)s to the site ``s``.
SITE_KM = f"""2 * {spec.EARTH_RADIUS_KM!r} * asin(least(1, sqrt(
      sin(radians(s.lat - %(lat)s) / 2) ^ 2
      + cos(radians(%(lat)s)) * cos(radians(s.lat)) * sin(radians(s.lon - %(lon)s) / 2) ^ 2
  )))"""
_RANKED = f"""
SELECT organization_id, score, km, count(*) OVER () AS total FROM (
  SELECT organization_id, km,
         exp(-(greatest(km - {spec.DECAY_OFFSET_KM}, 0) ^ 2) / (2 * {_SIGMA2!r}))
           * CASE tier {_TIER_CASE} ELSE 0 END AS score
  FROM nearest WHERE km <= %(radius)s
) scored
ORDER BY score DESC, km, organization_id
LIMIT {PER_PAGE}"""  # noqa: S608
PLAIN_SQL = f"""
WITH {_CANDIDATES},
nearest AS (
  SELECT c.organization_id, c.tier, min({SITE_KM}) AS km
  FROM candidates c JOIN sites s ON s.organization_id = c.organization_id AND s.active
  WHERE s.lat BETWEEN %(lat_min)s AND %(lat_max)s AND s.lon BETWEEN %(lon_min)s AND %(lon_max)s
  GROUP BY c.organization_id, c.tier
)
{_RANKED}"""  # noqa: S608
POSTGIS_SQL = f"""
WITH {_CANDIDATES},
nearest AS (
  SELECT c.organization_id, c.tier,
         min(ST_Distance({GEOGRAPHY}, %(origin)s::geography, false)) / 1000 AS km
  FROM candidates c JOIN sites s ON s.organization_id = c.organization_id AND s.active
  WHERE ST_DWithin({GEOGRAPHY}, %(origin)s::geography, %(radius_m)s, false)
  GROUP BY c.organization_id, c.tier
)
{_RANKED}"""  # noqa: S608


class Fact:
    """A benchmark demand as every subject needs it."""

    def __init__(self, demand_id: int, fact: spec.DemandFact) -> None:
        self.id, self.fact = demand_id, fact
        dlat = math.degrees(fact.radius_km / spec.EARTH_RADIUS_KM) * 1.0001
        dlon = (
            math.degrees(
                math.asin(
                    min(
                        1.0,
                        math.sin(fact.radius_km / spec.EARTH_RADIUS_KM)
                        / math.cos(math.radians(fact.lat)),
                    )
                )
            )
            * 1.0001
        )
        self.params = {
            "category": fact.category,
            "standard": fact.required_standards[0] if fact.required_standards else None,
            "today": date.today(),
            "need_by": fact.need_by,
            "lat": fact.lat,
            "lon": fact.lon,
            "radius": fact.radius_km,
            "radius_m": fact.radius_km * 1000,
            "origin": f"SRID=4326;POINT({fact.lon} {fact.lat})",
            "lat_min": fact.lat - dlat,
            "lat_max": fact.lat + dlat,
            "lon_min": fact.lon - dlon,
            "lon_max": fact.lon + dlon,
        }


def _facts(world: World, ids: Sequence[int]) -> list[Fact]:
    from market.extensions import db
    from market.models import Demand
    from search.documents import demand_fact

    with world.app():
        return [Fact(i, demand_fact(db.session.get_one(Demand, i))) for i in ids]


def _today() -> date:
    return datetime.now(UTC).date()


def _es_body(fact: spec.DemandFact) -> dict[str, Any]:
    return {
        "query": queries.match_query(fact, _today()),
        "sort": queries.match_sort(fact),
        "from": 0,
        "size": PER_PAGE,
        "track_total_hits": True,
    }


def _time_each(
    facts: Sequence[Fact], call: Callable[[Fact], list[int]], warmup: int
) -> tuple[list[float], dict[int, list[int]]]:
    for fact in facts[:warmup]:
        call(fact)
    seconds, answers = [], {}
    for fact in facts:
        started = time.perf_counter()
        answers[fact.id] = call(fact)
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def prepare_sql(world: World, report: Report) -> None:
    """The GIN table and the PostGIS index (built once per world)."""
    as_postgres(world.database, "CREATE EXTENSION IF NOT EXISTS postgis")
    with world.connect() as conn:
        exists = conn.execute("SELECT to_regclass('bench_supplier_paths')").fetchone()
        if exists and exists[0] is None:
            started = time.perf_counter()
            conn.execute(PATHS_TABLE)
            took = time.perf_counter() - started
            report.fact(f"{label(world.size)}: GIN paths table built in {took:.0f} s")
        started = time.perf_counter()
        conn.execute(GEO_INDEX)
        report.fact(
            f"{label(world.size)}: PostGIS index ready in {time.perf_counter() - started:.0f} s"
        )


def ensure_index(world: World, report: Report, *, timed: bool) -> float | None:
    """Rebuild the index with ``flask search reindex`` when it is missing or stale."""
    client = Elasticsearch(ES, request_timeout=600)
    with world.connect() as conn:
        suppliers = conn.execute(
            "SELECT count(*) FROM organizations WHERE kind = 'supplier'"
        ).fetchone()[0]  # type: ignore[index]
    try:
        indexed = client.count(index=world.alias)["count"]
    except Exception:
        indexed = -1
    if indexed == suppliers and not timed:
        return None
    started = time.perf_counter()
    world.flask("search", "reindex", "--batch-size", "1000")
    seconds = time.perf_counter() - started
    report.fact(
        f"{label(world.size)}: flask search reindex of {suppliers:,} suppliers: {seconds:.1f} s"
    )
    return seconds


def case_reindex(world: World, report: Report) -> None:
    """Case 3: the product's rebuild beside raw bulk posting of the same documents."""
    with world.connect() as conn:
        suppliers = conn.execute(
            "SELECT count(*) FROM organizations WHERE kind = 'supplier'"
        ).fetchone()[0]  # type: ignore[index]
    seconds = ensure_index(world, report, timed=True)
    assert seconds is not None
    client = Elasticsearch(ES, request_timeout=600)
    # Pre-serialise every document of the new index into bulk bodies of 1,000 (not timed).
    bodies: list[bytes] = []
    lines: list[bytes] = []
    target = f"{world.prefix}-rawbulk"
    for hit in _scan(client, world.alias):
        lines.append(json.dumps({"index": {"_index": target, "_id": hit["_id"]}}).encode())
        lines.append(json.dumps(hit["_source"], ensure_ascii=False).encode())
        if len(lines) == 2000:
            bodies.append(b"\n".join(lines) + b"\n")
            lines = []
    if lines:
        bodies.append(b"\n".join(lines) + b"\n")
    from search.mapping import INDEX_SETTINGS, MAPPING

    client.options(ignore_status=404).indices.delete(index=target)
    client.indices.create(
        index=target, settings={**INDEX_SETTINGS, "refresh_interval": "-1"}, mappings=MAPPING
    )
    started = time.perf_counter()
    for body in bodies:
        answer = client.bulk(operations=cast(Any, body))  # bytes pass through as is
        assert not answer["errors"], "raw bulk failed"
    client.indices.put_settings(index=target, settings={"refresh_interval": "1s"})
    client.indices.refresh(index=target)
    raw = time.perf_counter() - started
    client.indices.delete(index=target)
    name = f"3 reindex {label(world.size)}"
    product_rate, raw_rate = suppliers / seconds, suppliers / raw
    report.add(
        Row(
            name,
            "flask search reindex",
            suppliers,
            rate=product_rate,
            unit="docs/s",
            note=f"{seconds:.1f} s wall clock incl. start-up",
        )
    )
    report.add(
        Row(
            name,
            "baseline: raw bulk, same docs",
            suppliers,
            rate=raw_rate,
            unit="docs/s",
            note=f"{raw:.1f} s, 1,000 docs per request",
        )
    )
    report.goal(
        f"reindex {label(world.size)} ≥ 10,000 docs/s and ≥ 0.5× raw bulk",
        f"{product_rate:,.0f} docs/s = {product_rate / raw_rate:.2f}× raw ({raw_rate:,.0f})",
        product_rate >= 10_000 and product_rate >= 0.5 * raw_rate,
    )


def _scan(client: Elasticsearch, index: str) -> Any:
    after: list[Any] | None = None
    while True:
        page = client.search(
            index=index,
            size=5000,
            sort=[{"id": "asc"}],
            search_after=after,
            query={"match_all": {}},
        )["hits"]["hits"]
        if not page:
            return
        yield from page
        after = page[-1]["sort"]


def case_matches(world: World, report: Report, args: argparse.Namespace) -> None:
    """Case 1 at one size, and case 2 if asked."""
    ids = ensure_demands(world, args.demands)
    facts = _facts(world, ids)
    random.Random(1).shuffle(facts)
    slow = facts[: args.slow_demands] if args.slow_demands else facts
    token = admin_token(world)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    name = f"1 matches {label(world.size)}"
    es = Elasticsearch(ES, request_timeout=30)

    def raw_es(fact: Fact) -> list[int]:
        body = _es_body(fact.fact)
        answer = es.search(index=world.alias, **body)
        return [int(h["_id"]) for h in answer["hits"]["hits"]]

    with Gunicorn(world.env(), workers=1, threads=1) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def api(fact: Fact) -> list[int]:
            connection.request(
                "GET", f"/api/v1/demands/{fact.id}/matches?per_page={PER_PAGE}", headers=headers
            )
            answer = connection.getresponse()
            body = json.loads(answer.read())
            assert answer.status == 200, body
            assert not body["degraded"], "the API answered from the database backend"
            return [item["supplier"]["id"] for item in body["items"]]

        api_s, api_ids = _time_each(facts, api, args.warmup)
        connection.close()
    es_s, es_ids = _time_each(facts, raw_es, args.warmup)

    with world.connect() as conn:
        conn.execute("SET jit = off")

        def sql(query: str) -> Callable[[Fact], list[int]]:
            def run(fact: Fact) -> list[int]:
                return [row[0] for row in conn.execute(query, fact.params)]

            return run

        sql_s, sql_ids = _time_each(slow, sql(PLAIN_SQL), min(args.warmup, len(slow)))
        gis_s, gis_ids = _time_each(slow, sql(POSTGIS_SQL), min(args.warmup, len(slow)))

    from search.database import DatabaseSearchBackend

    backend = DatabaseSearchBackend()
    with world.app():

        def database(fact: Fact) -> list[int]:
            page = backend.match(fact.fact, _today(), 1, PER_PAGE)
            return [hit.document["id"] for hit in page.hits]

        db_s, db_ids = _time_each(slow, database, min(args.warmup, len(slow)))

    api_row = report.add(
        Row.of_latencies(
            name, "GET /demands/{id}/matches", api_s, note="gunicorn, 1 client, HTTP keep-alive"
        )
    )
    es_row = report.add(
        Row.of_latencies(name, "baseline: raw ES client", es_s, note="same body, same page")
    )
    sql_row = report.add(Row.of_latencies(name, "baseline: plain SQL (GIN)", sql_s, note="jit off"))
    report.add(Row.of_latencies(name, "baseline: PostGIS ST_DWithin", gis_s))
    report.add(Row.of_latencies(name, "baseline: database backend", db_s, note="in-process"))
    agree = {
        subject: sum(answer[fid] == api_ids[fid] for fid in answer)
        for subject, answer in (
            ("raw ES", es_ids),
            ("plain SQL", sql_ids),
            ("PostGIS", gis_ids),
            ("database backend", db_ids),
        )
    }
    hits = [len(v) for v in api_ids.values()]
    report.fact(
        f"{name}: {len(facts)} demands, {sum(1 for h in hits if h == 0)} with no match, "
        f"median page {percentile(hits, 50):.0f} hits; same top-{PER_PAGE} ids as the API: "
        + ", ".join(f"{k} {v}/{len(es_ids if k == 'raw ES' else slow)}" for k, v in agree.items())
    )
    ratio, allowed = api_row.p50 / es_row.p50, P50_RATIO_GOAL[world.size]
    report.goal(
        f"{label(world.size)}: API p50 ≤ {allowed}× raw ES", f"{ratio:.2f}×", ratio <= allowed
    )
    budget = {100_000: 25.0, 1_000_000: 50.0}.get(world.size)
    if budget:
        report.goal(
            f"{label(world.size)}: API p95 ≤ {budget:.0f} ms",
            f"{api_row.p95:.1f} ms",
            api_row.p95 <= budget,
        )
    factor = {100_000: 0.5, 1_000_000: 0.1}.get(world.size)
    if factor:
        report.goal(
            f"{label(world.size)}: API p95 ≤ {factor}× plain-SQL p95",
            f"{api_row.p95 / sql_row.p95:.3f}× ({api_row.p95:.1f} vs {sql_row.p95:.1f} ms)",
            api_row.p95 <= factor * sql_row.p95,
        )
    if args.throughput:
        case_throughput(world, report, args, facts, headers)


def case_throughput(
    world: World,
    report: Report,
    args: argparse.Namespace,
    facts: Sequence[Fact],
    headers: dict[str, str],
) -> None:
    """Case 2: closed-loop load at a fixed concurrency, the API then raw ``_search``."""
    name = f"2 throughput {label(world.size)}"
    rng = random.Random(2)
    order = [rng.choice(facts) for _ in range(100_000)]
    concurrency, seconds = args.concurrency, args.seconds

    def api(i: int) -> Request:
        return Request(
            "GET",
            f"/api/v1/demands/{order[i % len(order)].id}/matches?per_page={PER_PAGE}",
            headers,
        )

    bodies = [json.dumps(_es_body(f.fact)).encode() for f in facts]
    by_id = {f.id: body for f, body in zip(facts, bodies, strict=True)}

    def raw(i: int) -> Request:
        return Request(
            "POST",
            f"/{world.alias}/_search",
            {"Content-Type": "application/json"},
            by_id[order[i % len(order)].id],
        )

    with Gunicorn(
        world.env(), workers=args.gunicorn_workers, threads=args.gunicorn_threads
    ) as server:
        closed_loop(server.url, api, concurrency=concurrency, seconds=min(5, seconds))  # warm-up
        product = closed_loop(server.url, api, concurrency=concurrency, seconds=seconds)
    closed_loop(ES, raw, concurrency=concurrency, seconds=min(5, seconds))
    baseline = closed_loop(ES, raw, concurrency=concurrency, seconds=seconds)
    setup = (
        f"{concurrency} connections, gunicorn {args.gunicorn_workers}×"
        f"{args.gunicorn_threads} gthread"
    )
    for subject, result in (
        ("GET /demands/{id}/matches", product),
        ("baseline: raw ES _search", baseline),
    ):
        bad = sum(n for status, n in result.statuses.items() if status >= 400) + result.errors
        report.add(
            Row.of_latencies(
                name, subject, result.latencies, rate=result.rate, note=f"{setup}; {bad} errors"
            )
        )
    share, wanted = product.rate / baseline.rate, THROUGHPUT_SHARE_GOAL.get(world.size)
    if wanted:
        report.goal(
            f"{label(world.size)}: API throughput ≥ {wanted}× raw _search",
            f"{share:.2f}× ({product.rate:,.0f} vs {baseline.rate:,.0f} req/s)",
            share >= wanted,
        )


def run(report: Report, args: argparse.Namespace) -> None:
    for size in args.sizes:
        world = prepare(size, log=report.fact)
        if "reindex" in args.cases and size >= 100_000:
            case_reindex(world, report)
        else:
            ensure_index(world, report, timed=False)
        if "matches" in args.cases:
            prepare_sql(world, report)
            case_matches(world, report, args)
        describe_sizes(world, report)


def describe_sizes(world: World, report: Report) -> None:
    client = Elasticsearch(ES, request_timeout=30)
    stats = client.indices.stats(index=world.alias, metric="store,docs")["_all"]["primaries"]
    jvm = next(iter(client.nodes.stats(metric="jvm")["nodes"].values()))["jvm"]["mem"]
    with world.connect() as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
    report.fact(
        f"{label(world.size)}: ES index {stats['store']['size_in_bytes'] / 2**20:,.0f} MiB, "
        f"{stats['docs']['count']:,} docs (incl. nested); heap used "
        f"{jvm['heap_used_in_bytes'] / 2**20:,.0f} of {jvm['heap_max_in_bytes'] / 2**20:,.0f} MiB;"
        f" PostgreSQL database {size / 2**20:,.0f} MiB"
    )
