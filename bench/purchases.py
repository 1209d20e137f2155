"""Case 5: ``POST /purchases`` and its confirmation under gunicorn at a fixed concurrency, beside
``GET /healthz``.

Every request records a new purchase (its own invoice number and Idempotency-Key), so the case
measures the whole use case: bearer authentication, body validation, the supplier/site/plant
checks, the subsidy preview (a read of the OEM's ledger totals), the idempotency record, the
commit with its outbox row and the drain request to Redis. No ledger worker runs meanwhile: the
outbox rows stay pending (the ledger case drains them first).

The confirmation (``POST /purchases/{id}/confirm`` by ``supplier@demo.test``) is measured on
purchases the buyer recorded, pending, inserted beforehand in one SQL statement (enough for the
whole run at any plausible rate, so every request confirms a purchase that waits for it): the
guarded update, the supplier lock, the twin check, the outbox row and the answer.

The helpers here (the demo buyer, its requests, the gunicorn shape) are shared with the ledger
case, which posts purchases the same way.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bench.load import Gunicorn, LoadResult, Request, closed_loop
from bench.stats import Report, Row, percentile
from bench.world import World, prepare

CASE = "5 POST /purchases"
WORLD_SIZE = 1000  # a small world of its own: the search worlds are left alone
BUYER_EMAIL = "buyer@demo.test"
SUPPLIER_EMAIL = "supplier@demo.test"
TOKEN_NAME = "benchmark purchases"  # noqa: S105  (a token's name, not a secret)
PURCHASES_PATH = "/api/v1/purchases"
# Two processes for two cores (Python runs one request at a time per process, GIL), four
# threads each so a request waiting on PostgreSQL or Redis does not idle its core and the 8
# client connections are all served at once (2 x 4 = 8). More processes (the usual 2n+1 = 5)
# only add context switches on a box that also runs PostgreSQL, Redis and the load client.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4
CONCURRENCY = 8
GOAL_RATE = 300.0
GOAL_P95_MS = 50.0
CONFIRM_CASE = "5 POST /purchases/{id}/confirm"
# Pending purchases made for the confirmations: more than 8 connections can confirm in the
# run (1,000 a second for the measured and the warm-up seconds).
CONFIRMS_PER_SECOND_CEILING = 1000


@dataclass(frozen=True)
class Buyer:
    """The demo OEM buyer, a fresh bearer token, and what its purchases may refer to."""

    token: str
    user_id: int
    org_id: int
    plants: list[int]
    sites: list[tuple[int, int]]  # (supplier organization id, supplier site id)
    categories: list[str]


def buyer(world: World) -> Buyer:
    """The demo buyer with a new token; earlier benchmark tokens are revoked first (a user
    may hold at most 25 active tokens, and every run makes one)."""
    from sqlalchemy import select, update

    from market import refdata
    from market.extensions import db
    from market.models import ApiToken, Organization, OrgKind, OrgStatus, Site, SiteKind, User
    from market.services.accounts import token_issue

    with world.app():
        user = db.session.scalar(select(User).where(User.email == BUYER_EMAIL))
        assert user is not None and user.organization_id is not None, f"no {BUYER_EMAIL}"
        db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.user_id == user.id,
                ApiToken.name.startswith(TOKEN_NAME),
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=datetime.now(UTC))
        )
        db.session.commit()
        _, raw = token_issue(user, f"{TOKEN_NAME} {datetime.now(UTC):%H%M%S%f}", 1)
        plants = list(
            db.session.scalars(
                select(Site.id)
                .where(
                    Site.organization_id == user.organization_id,
                    Site.kind == SiteKind.PLANT,
                    Site.active.is_(True),
                )
                .order_by(Site.id)
            )
        )
        # The first 200 active supplier sites: near-shore and not, in and out of Guangdong.
        rows = db.session.execute(
            select(Site.organization_id, Site.id)
            .join(Organization, Organization.id == Site.organization_id)
            .where(
                Organization.kind == OrgKind.SUPPLIER,
                Organization.status == OrgStatus.ACTIVE,
                Site.active.is_(True),
            )
            .order_by(Site.id)
            .limit(200)
        )
        sites = [(org_id, site_id) for org_id, site_id in rows]
        assert plants and sites, "the demo world has no buyer plant or no supplier site"
        categories = sorted(c.slug for c in refdata.categories().values() if c.depth >= 2)
        return Buyer(raw, user.id, user.organization_id, plants, sites, categories)


def supplier_token(world: World) -> tuple[str, int]:
    """A fresh bearer token of the demo supplier's user, and its organization id (earlier
    benchmark tokens revoked first, as for the buyer)."""
    from sqlalchemy import select, update

    from market.extensions import db
    from market.models import ApiToken, User
    from market.services.accounts import token_issue

    with world.app():
        user = db.session.scalar(select(User).where(User.email == SUPPLIER_EMAIL))
        assert user is not None and user.organization_id is not None, f"no {SUPPLIER_EMAIL}"
        db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.user_id == user.id,
                ApiToken.name.startswith(TOKEN_NAME),
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=datetime.now(UTC))
        )
        db.session.commit()
        _, raw = token_issue(user, f"{TOKEN_NAME} {datetime.now(UTC):%H%M%S%f}", 1)
        return raw, user.organization_id


def pending_purchases(
    world: World, who: Buyer, supplier_org: int, tag: str, count: int
) -> list[int]:
    """``count`` purchases the buyer recorded from the supplier, pending its confirmation, made
    in one statement with the facts frozen from the rows as recording does (ids returned)."""
    with world.connect() as conn:
        rows = conn.execute(
            """
            INSERT INTO purchases (
                oem_org_id, supplier_org_id, supplier_site_id, plant_id, category, amount,
                purchased_on, invoice_number, source, status, created_by_party, created_by_id,
                created_at, site_city_code, site_lat, site_lon, plant_city_code, plant_lat,
                plant_lon)
            SELECT %(oem)s, s.organization_id, s.id, p.id, 'ic.hd-map', 1000 + n %% 9000,
                   %(day)s, %(tag)s || '-' || lpad(n::text, 7, '0'), 'direct',
                   'pending_confirmation', 'oem', %(user)s, now(), s.city_code, s.lat, s.lon,
                   p.city_code, p.lat, p.lon
            FROM generate_series(1, %(count)s) AS n
            JOIN LATERAL (
                SELECT * FROM sites WHERE organization_id = %(supplier)s AND active
                ORDER BY id LIMIT 1) AS s ON true
            JOIN sites AS p ON p.id = %(plant)s
            RETURNING id
            """,
            {
                "oem": who.org_id,
                "supplier": supplier_org,
                "plant": who.plants[0],
                "user": who.user_id,
                "day": purchase_day(),
                "tag": tag,
                "count": count,
            },
        ).fetchall()
    ids = sorted(row[0] for row in rows)
    assert len(ids) == count, f"made {len(ids)} pending purchases of {count}"
    return ids


def confirm_requests(token: str, ids: list[int]) -> Callable[[int], Request]:
    """``POST /purchases/{id}/confirm`` of the ``index``-th pending purchase."""
    headers = {"Authorization": f"Bearer {token}"}

    def make(index: int) -> Request:
        # Past the last one, a repeated confirmation: the run then stops on the count check.
        purchase_id = ids[min(index, len(ids) - 1)]
        return Request("POST", f"{PURCHASES_PATH}/{purchase_id}/confirm", headers)

    return make


def run_tag() -> str:
    """A prefix of this run's invoice numbers and keys (unique, so runs can be repeated)."""
    return f"BENCH{datetime.now(UTC):%y%m%d%H%M%S}{secrets.token_hex(2).upper()}"


def purchase_day() -> date:
    # Yesterday by the server's local date, which is what "not in the future" is checked on.
    return date.today() - timedelta(days=1)


def amount_of(index: int) -> str:
    return f"{1000 + (index * 7919) % 90000}.{index % 100:02d}"


def purchase_requests(
    who: Buyer, tag: str, sent: dict[str, float] | None = None
) -> Callable[[int], Request]:
    """``POST /purchases`` number ``index`` of this run: its own invoice and Idempotency-Key.
    With ``sent``, the wall-clock time each invoice is sent at (the load client builds a
    request right before sending it)."""
    day = purchase_day().isoformat()
    headers = {"Authorization": f"Bearer {who.token}", "Content-Type": "application/json"}

    def make(index: int) -> Request:
        supplier, site = who.sites[index % len(who.sites)]
        invoice = f"{tag}-{index:07d}"
        body = {
            "supplier_org_id": supplier,
            "supplier_site_id": site,
            "plant_id": who.plants[index % len(who.plants)],
            "category": who.categories[index % len(who.categories)],
            "amount": amount_of(index),
            "purchased_on": day,
            "invoice_number": invoice,
        }
        if sent is not None:
            sent[invoice] = time.time()
        return Request(
            "POST",
            PURCHASES_PATH,
            {**headers, "Idempotency-Key": invoice},
            json.dumps(body).encode(),
        )

    return make


def healthz(_: int) -> Request:
    return Request("GET", "/healthz")


def statuses(result: LoadResult) -> str:
    text = " ".join(f"{status}×{count}" for status, count in sorted(result.statuses.items()))
    return text + (f" errors×{result.errors}" if result.errors else "")


def check_answers(result: LoadResult, expected: int, what: str) -> None:
    """A benchmark of failing requests measures nothing: stop with what went wrong."""
    others = {s: n for s, n in result.statuses.items() if s != expected}
    if others or result.errors or not result.latencies:
        raise RuntimeError(f"{what}: unexpected answers ({statuses(result)})")


def run(report: Report, args: argparse.Namespace) -> None:
    """Throughput and latency of POST /purchases and of confirmations at 8 connections,
    beside GET /healthz."""
    seconds = 5.0 if args.quick else 25.0
    warmup = 1.0 if args.quick else 3.0
    world = prepare(WORLD_SIZE)
    who = buyer(world)
    token, supplier_org = supplier_token(world)
    tag = run_tag()
    report.fact(
        f"case 5: world {world.database}; gunicorn gthread {GUNICORN_WORKERS} workers × "
        f"{GUNICORN_THREADS} threads (one process per core, threads cover the waits on "
        f"PostgreSQL/Redis); {CONCURRENCY} keep-alive connections, {seconds:.0f} s each after "
        f"{warmup:.0f} s of warm-up; no ledger worker running"
    )
    with world.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE oem_org_id = %s AND year = %s",
            (who.org_id, purchase_day().year),
        ).fetchone()
    # The subsidy preview sums these on every request: runs get slower as they accumulate.
    report.fact(f"case 5: the buyer's ledger holds {row[0] if row else 0:,} entries this year")
    warm_ids = pending_purchases(
        world, who, supplier_org, f"{tag}CW", int(CONFIRMS_PER_SECOND_CEILING * warmup)
    )
    confirm_ids = pending_purchases(
        world, who, supplier_org, f"{tag}C", int(CONFIRMS_PER_SECOND_CEILING * seconds)
    )
    report.fact(
        f"case 5: {len(confirm_ids):,} pending purchases made for {SUPPLIER_EMAIL} to confirm "
        f"(+{len(warm_ids):,} for the warm-up)"
    )
    with Gunicorn(world.env(), workers=GUNICORN_WORKERS, threads=GUNICORN_THREADS) as server:
        closed_loop(server.url, healthz, concurrency=CONCURRENCY, seconds=warmup)
        closed_loop(
            server.url,
            purchase_requests(who, f"{tag}W"),
            concurrency=CONCURRENCY,
            seconds=warmup,
        )
        closed_loop(
            server.url, confirm_requests(token, warm_ids), concurrency=CONCURRENCY, seconds=warmup
        )
        floor = closed_loop(server.url, healthz, concurrency=CONCURRENCY, seconds=seconds)
        posts = closed_loop(
            server.url, purchase_requests(who, tag), concurrency=CONCURRENCY, seconds=seconds
        )
        confirms = closed_loop(
            server.url,
            confirm_requests(token, confirm_ids),
            concurrency=CONCURRENCY,
            seconds=seconds,
        )
    check_answers(floor, 200, "GET /healthz")
    check_answers(posts, 201, "POST /purchases")
    check_answers(confirms, 200, "POST /purchases/{id}/confirm")
    with world.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM purchases WHERE invoice_number LIKE %s AND status = 'confirmed'",
            (f"{tag}C-%",),
        ).fetchone()
    confirmed = row[0] if row else 0
    # Every measured answer confirmed a purchase that waited (none replayed a confirmation).
    if confirmed != len(confirms.latencies):
        raise RuntimeError(f"{len(confirms.latencies)} confirmations answered, {confirmed} made")
    report.add(
        Row.of_latencies(
            CASE, "GET /healthz (baseline)", floor.latencies, rate=floor.rate,
            note=statuses(floor),
        )
    )  # fmt: skip
    report.add(
        Row.of_latencies(
            CASE, f"POST /purchases c={CONCURRENCY}", posts.latencies, rate=posts.rate,
            note=statuses(posts),
        )
    )  # fmt: skip
    report.add(
        Row.of_latencies(
            CONFIRM_CASE, f"POST …/confirm c={CONCURRENCY}", confirms.latencies,
            rate=confirms.rate, note=statuses(confirms),
        )
    )  # fmt: skip
    floor_p95 = percentile(floor.latencies, 95) * 1000
    for what, result in (("POST /purchases", posts), ("POST /purchases/{id}/confirm", confirms)):
        p95 = percentile(result.latencies, 95) * 1000
        report.goal(
            f"{what} ≥ {GOAL_RATE:.0f} req/s at {CONCURRENCY} connections",
            f"{result.rate:.0f} req/s (GET /healthz: {floor.rate:.0f} req/s)",
            result.rate >= GOAL_RATE,
        )
        report.goal(
            f"{what} p95 ≤ {GOAL_P95_MS:.0f} ms",
            f"{p95:.1f} ms (GET /healthz: {floor_p95:.1f} ms)",
            p95 <= GOAL_P95_MS,
        )
