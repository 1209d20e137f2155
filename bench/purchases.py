"""Case 5: ``POST /purchases`` under gunicorn at a fixed concurrency, beside ``GET /healthz``.

Every request records a new purchase (its own invoice number and Idempotency-Key), so the case
measures the whole use case: bearer authentication, body validation, the supplier/site/plant
checks, the subsidy preview (a read of the OEM's ledger totals), the idempotency record, the
commit with its outbox row and the drain request to Redis. No ledger worker runs meanwhile: the
outbox rows stay pending (the ledger case drains them first).

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
    """Throughput and latency of POST /purchases at 8 connections, beside GET /healthz."""
    seconds = 5.0 if args.quick else 25.0
    warmup = 1.0 if args.quick else 3.0
    world = prepare(WORLD_SIZE)
    who = buyer(world)
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
    with Gunicorn(world.env(), workers=GUNICORN_WORKERS, threads=GUNICORN_THREADS) as server:
        closed_loop(server.url, healthz, concurrency=CONCURRENCY, seconds=warmup)
        closed_loop(
            server.url,
            purchase_requests(who, f"{tag}W"),
            concurrency=CONCURRENCY,
            seconds=warmup,
        )
        floor = closed_loop(server.url, healthz, concurrency=CONCURRENCY, seconds=seconds)
        posts = closed_loop(
            server.url, purchase_requests(who, tag), concurrency=CONCURRENCY, seconds=seconds
        )
    check_answers(floor, 200, "GET /healthz")
    check_answers(posts, 201, "POST /purchases")
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
    p95 = percentile(posts.latencies, 95) * 1000
    report.goal(
        f"POST /purchases ≥ {GOAL_RATE:.0f} req/s at {CONCURRENCY} connections",
        f"{posts.rate:.0f} req/s (GET /healthz: {floor.rate:.0f} req/s)",
        posts.rate >= GOAL_RATE,
    )
    report.goal(
        f"POST /purchases p95 ≤ {GOAL_P95_MS:.0f} ms",
        f"{p95:.1f} ms (GET /healthz: {percentile(floor.latencies, 95) * 1000:.1f} ms)",
        p95 <= GOAL_P95_MS,
    )
