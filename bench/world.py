"""The data a benchmark runs on: one PostgreSQL database and one index alias per size.

``market_bench_<size>`` is created, migrated and filled by ``flask seed-demo --size <size>`` the
first time and reused afterwards (a million suppliers take minutes to seed). Benchmark demands
(random plant, category at depth 1–2, at most one required standard, 200 km) are added to the
seeded world with a fixed seed, so every run measures the same queries.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from flask import Flask
from psycopg.types.json import Json

from bench.load import ROOT

# The owner role: the benchmark creates its databases and migrates them.
PG = os.environ.get("BENCH_PG", "postgresql://market_owner:market_owner@127.0.0.1:5432")
ES = os.environ.get("BENCH_ES", "http://127.0.0.1:9200")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
DEMAND_TITLE = "benchmark demand"
BENCH_SEED = 8
# The checkpoint signing key of the benchmark worlds (production refuses to make one up, and
# seed-demo submits a claim, which issues a checkpoint): generated once, kept with the
# instance files so later runs sign with the same key.
SIGNING_KEY = ROOT / "instance" / "bench-ledger-signing-key.pem"


def signing_key_file() -> str:
    from market.ledger.checkpoints import generate_key_file

    generate_key_file(SIGNING_KEY)  # once: an existing key is kept
    return str(SIGNING_KEY)


# The world sizes a command line may name (--sizes, --size), by their label.
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


@dataclass
class World:
    size: int
    database: str

    @property
    def dsn(self) -> str:
        return f"{PG}/{self.database}"

    @property
    def prefix(self) -> str:
        return f"bench{self.size}"

    @property
    def alias(self) -> str:
        return f"{self.prefix}-suppliers"

    def env(self, *, elasticsearch: bool = True, redis: bool = True) -> dict[str, str]:
        """The production configuration of the app on this world."""
        env = {
            "MARKET_ENV": "production",
            "DATABASE_URL": self.dsn.replace("postgresql://", "postgresql+psycopg://"),
            "SECRET_KEY": "benchmark-secret-key",
            "ELASTICSEARCH_INDEX_PREFIX": self.prefix,
            "RQ_QUEUE_PREFIX": self.prefix,
            "LOG_LEVEL": "WARNING",
            "LEDGER_SIGNING_KEY": signing_key_file(),
        }
        if elasticsearch:
            env["ELASTICSEARCH_URL"] = ES
        if redis:
            env["REDIS_URL"] = REDIS
        return env

    def flask(self, *args: str, elasticsearch: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``flask`` command of the product against this world."""
        command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
        env = {**os.environ, **self.env(elasticsearch=elasticsearch)}
        return subprocess.run(  # noqa: S603
            command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )

    @contextmanager
    def app(self, **overrides: Any) -> Iterator[Flask]:
        """The product's app, in-process, on this world (context pushed)."""
        from market import create_app
        from market.config import ProductionConfig

        env = self.env()
        app = create_app(
            ProductionConfig,
            SQLALCHEMY_DATABASE_URI=env["DATABASE_URL"],
            SECRET_KEY=env["SECRET_KEY"],
            ELASTICSEARCH_URL=ES,
            ELASTICSEARCH_INDEX_PREFIX=self.prefix,
            REDIS_URL=REDIS,
            JOB_MODE="rq",
            RQ_QUEUE_PREFIX=self.prefix,
            LOG_LEVEL="WARNING",
            LEDGER_SIGNING_KEY=env["LEDGER_SIGNING_KEY"],
            **overrides,
        )
        with app.app_context():
            yield app

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)


def _admin(sql: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def as_postgres(database: str, sql: str) -> None:
    """Run SQL as the ``postgres`` superuser (needed for CREATE EXTENSION postgis)."""
    subprocess.run(  # noqa: S603
        ["runuser", "-u", "postgres", "--", "psql", "-q", "-d", database, "-c", sql],  # noqa: S607
        check=True,
        capture_output=True,
        cwd="/",
    )


def prepare(size: int, *, log: Any = print) -> World:
    """The world of ``size`` suppliers, seeded if needed."""
    world = World(size, f"market_bench_{size}")
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (world.database,)
        ).fetchone()
    if not exists:
        _admin(f'CREATE DATABASE "{world.database}"')
    world.flask("db", "upgrade", elasticsearch=False)
    with world.connect() as conn:
        suppliers = conn.execute(
            "SELECT count(*) FROM organizations WHERE kind = 'supplier'"
        ).fetchone()[0]  # type: ignore[index]
    if suppliers == 0:
        log(f"seeding {size:,} suppliers into {world.database} (once; minutes at 1M)")
        started = time.perf_counter()
        world.flask("seed-demo", "--size", str(size), elasticsearch=False)
        log(f"seeded in {time.perf_counter() - started:.0f} s")
    elif suppliers != size:
        raise SystemExit(
            f"{world.database} holds {suppliers} suppliers, not {size}: drop it and run again"
        )
    return world


def ensure_demands(world: World, count: int) -> list[int]:
    """``count`` benchmark demands (created once, same seed, same demands), their ids."""
    from market import refdata

    with world.connect() as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM demands WHERE title = %s ORDER BY id", (DEMAND_TITLE,)
            )
        ]
        if len(ids) >= count:
            return ids[:count]
        plants = conn.execute(
            "SELECT s.id, s.organization_id FROM sites s JOIN organizations o "
            "ON o.id = s.organization_id WHERE o.kind = 'oem' AND s.kind = 'plant' ORDER BY s.id"
        ).fetchall()
        user = conn.execute("SELECT id FROM users WHERE email = 'admin@demo.test'").fetchone()
        rng = random.Random(BENCH_SEED + len(ids))
        categories = [c.slug for c in refdata.categories().values() if c.depth in (1, 2)]
        # Required standards as often as suppliers hold them (a rare one empties the list).
        held = conn.execute(
            "SELECT standard, count(*) FROM certifications GROUP BY standard ORDER BY standard"
        ).fetchall()
        standards, weights = [s for s, _ in held], [n for _, n in held]
        now = datetime.now(UTC)
        need_by = now.date() + timedelta(days=90)
        for _ in range(count - len(ids)):
            plant_id, org_id = rng.choice(plants)
            standard = rng.choices(standards, weights)[:1] if rng.random() < 0.5 else []
            conn.execute(
                "INSERT INTO demands (organization_id, plant_id, category, title, quantity, unit,"
                " required_standards, need_by, radius_km, state, created_by_id, created_at,"
                " updated_at, published_at) VALUES (%s, %s, %s, %s, 1000, 'pcs', %s, %s, 200,"
                " 'open', %s, %s, %s, %s)",
                (
                    org_id,
                    plant_id,
                    rng.choice(categories),
                    DEMAND_TITLE,
                    Json(standard),
                    need_by,
                    user and user[0],
                    now,
                    now,
                    now,
                ),
            )
    return ensure_demands(world, count)


def admin_token(world: World) -> str:
    """A fresh bearer token of the demo admin (reads every demand); the earlier benchmark
    tokens are revoked first (a user holds at most 25 active tokens)."""
    from sqlalchemy import select, update

    from market.extensions import db
    from market.models import ApiToken, User
    from market.services.accounts import token_issue

    with world.app():
        admin = db.session.scalar(select(User).where(User.email == "admin@demo.test"))
        assert admin is not None, "the demo world has no admin@demo.test"
        db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.user_id == admin.id,
                ApiToken.name.startswith("benchmark "),
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=datetime.now(UTC))
        )
        db.session.commit()
        _, raw = token_issue(admin, f"benchmark {datetime.now(UTC):%H%M%S%f}", 1)
        return raw
