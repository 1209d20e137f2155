"""Test set-up: the real services on 127.0.0.1, a database per run, a savepoint per test.

Service addresses come from ``MARKET_TEST_DATABASE_URL``, ``MARKET_TEST_REDIS_URL`` and
``MARKET_TEST_ELASTICSEARCH_URL``; their defaults are what ``bash .ci/services.sh up`` starts.
``MARKET_TEST_DATABASE_URL=sqlite://`` runs the suite on SQLite instead of PostgreSQL.

PostgreSQL runs with the production's two roles: the run's database is created and migrated
by the owner (``MARKET_TEST_OWNER_DATABASE_URL``, default ``market_owner``), the app connects as
the role of ``MARKET_TEST_DATABASE_URL`` (``market``), which may only SELECT and INSERT the
ledger tables. ``db_session`` tests run as the app role too (the owner's connection with
``SET ROLE``), so ``tests.insider`` can step back to the owner for an insider's tampering.

A test that needs a service it cannot reach fails when ``CI`` is set (never a silent skip in
CI); on a developer machine it is skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from market import create_app
from market.config import TestConfig
from market.extensions import db

IN_CI = bool(os.environ.get("CI"))
DATABASE_URL = os.environ.get(
    "MARKET_TEST_DATABASE_URL",
    "postgresql+psycopg://market:market@127.0.0.1:5432/market_test",
)
OWNER_DATABASE_URL = os.environ.get("MARKET_TEST_OWNER_DATABASE_URL") or (
    make_url(DATABASE_URL)
    .set(username="market_owner", password="market_owner")
    .render_as_string(hide_password=False)
    if DATABASE_URL.startswith("postgresql")
    else DATABASE_URL
)
APP_ROLE = make_url(DATABASE_URL).username
REDIS_URL = os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ELASTICSEARCH_URL = os.environ.get("MARKET_TEST_ELASTICSEARCH_URL", "http://127.0.0.1:9200")
# Everything a run creates in shared services is namespaced by this, so runs never collide.
RUN_ID = f"t{os.getpid()}{uuid.uuid4().hex[:6]}"


def _unreachable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({type(error).__name__}: {error}); run `bash .ci/services.sh up`"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _probe_postgres(url: str = DATABASE_URL) -> str | None:
    if not url.startswith("postgresql"):
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    except Exception:
        return None
    finally:
        engine.dispose()


def _probe_redis() -> str | None:
    from redis import Redis

    try:
        return str(
            Redis.from_url(REDIS_URL, socket_connect_timeout=1).info("server")["redis_version"]
        )
    except Exception:
        return None


def _probe_elasticsearch() -> str | None:
    from elasticsearch import Elasticsearch

    try:
        client = Elasticsearch(ELASTICSEARCH_URL, request_timeout=3, max_retries=0)
        nodes = client.nodes.info(
            node_id="_local", filter_path="nodes.*.version,nodes.*.jvm.version"
        )
        node = next(iter(nodes["nodes"].values()))
        return f"{node['version']} (JVM {node['jvm']['version']})"
    except Exception:
        return None


SERVICE_VERSIONS = {
    "postgresql": _probe_postgres(),
    "redis": _probe_redis(),
    "elasticsearch": _probe_elasticsearch(),
}
USE_POSTGRES = SERVICE_VERSIONS["postgresql"] is not None
# Two roles when the owner can sign in (``.ci/services.sh up`` makes it); else the app's role
# does everything, as before, and the role tests fail in CI / skip on a developer machine.
USE_ROLES = (
    USE_POSTGRES
    and OWNER_DATABASE_URL != DATABASE_URL
    and bool(_probe_postgres(OWNER_DATABASE_URL))
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"run id: {RUN_ID}  (CI={'yes' if IN_CI else 'no'})"]
    database = (
        f"PostgreSQL {SERVICE_VERSIONS['postgresql']}"
        if USE_POSTGRES
        else "SQLite (in a temp file)"
    )
    lines.append(f"database: {database}")
    if USE_POSTGRES:
        roles = f"owner {make_url(OWNER_DATABASE_URL).username}, app {APP_ROLE}"
        lines.append(f"database roles: {roles if USE_ROLES else 'one role (no owner role)'}")
    lines.append(f"redis: {SERVICE_VERSIONS['redis'] or 'NOT REACHABLE'} at {REDIS_URL}")
    lines.append(
        f"elasticsearch: {SERVICE_VERSIONS['elasticsearch'] or 'NOT REACHABLE'} at {ELASTICSEARCH_URL}"
    )
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and DATABASE_URL.startswith("postgresql") and not USE_POSTGRES:
        raise pytest.UsageError(f"CI: PostgreSQL is not reachable at {DATABASE_URL}")


# --- the database -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A fresh database for this run, dropped afterwards: (the app's URL, the owner's URL)."""
    if not USE_POSTGRES:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'market.db'}"
        yield url, url
        return
    name = f"market_{RUN_ID}"
    owner = make_url(OWNER_DATABASE_URL if USE_ROLES else DATABASE_URL)
    admin = create_engine(owner, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False),
            owner.set(database=name).render_as_string(hide_password=False),
        )
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(database_urls: tuple[str, str]) -> str:
    """The run's database as the application's role sees it."""
    return database_urls[0]


@pytest.fixture(scope="session")
def owner_database_url(database_urls: tuple[str, str]) -> str:
    """The run's database as the tables' owner (the migrations' role) sees it."""
    return database_urls[1]


_OWNER_ENGINES: dict[str, Engine] = {}


def owner_engine_for(url: str | URL) -> Engine:
    """An engine of the owner on the database of the app URL ``url`` (one per database)."""
    if not USE_ROLES:
        owner_url = make_url(url).render_as_string(hide_password=False)
    else:
        owner_url = (
            make_url(OWNER_DATABASE_URL)
            .set(database=make_url(url).database)
            .render_as_string(hide_password=False)
        )
    if owner_url not in _OWNER_ENGINES:
        _OWNER_ENGINES[owner_url] = create_engine(owner_url, poolclass=NullPool)
    return _OWNER_ENGINES[owner_url]


def make_test_app(database_url: str, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "RQ_QUEUE_PREFIX": RUN_ID,
        "ELASTICSEARCH_INDEX_PREFIX": RUN_ID,
        "RATELIMIT_KEY_PREFIX": RUN_ID,
    }
    settings.update(overrides)
    return create_app(TestConfig, **settings)


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The run's checkpoint signing key, a file as production would configure it."""
    from market.ledger.checkpoints import generate_key_file

    path = tmp_path_factory.mktemp("keys") / "ledger_signing_key.pem"
    generate_key_file(path)
    return str(path)


def migrate_as_owner(owner_url: str) -> None:
    """``flask db upgrade`` as the owner, granting the app's role its rights (as in production)."""
    from flask_migrate import upgrade

    migrator = make_test_app(owner_url, DATABASE_APP_ROLE=APP_ROLE if USE_ROLES else None)
    with migrator.app_context():
        upgrade(revision="heads")
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def app(database_url: str, owner_database_url: str, signing_key_file: str) -> Iterator[Flask]:
    """The app under test, on the run's database, with the schema migrated to head."""
    migrate_as_owner(owner_database_url)
    application = make_test_app(database_url, LEDGER_SIGNING_KEY=signing_key_file)
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Any]:
    """Each test runs in a transaction that is rolled back; the code's commits are savepoints.

    The session is pinned to the test's connection (``tests.isolation``): Flask-SQLAlchemy's
    own session would ignore ``bind=`` and really commit.
    """
    from tests.isolation import begin_outer, bind_session, end_outer

    with app.app_context():
        if USE_ROLES:
            # The owner's connection acting as the app's role: tests.insider can RESET ROLE.
            connection = owner_engine_for(db.engine.url).connect()
            outer = begin_outer(connection)
            connection.exec_driver_sql(f"SET ROLE {APP_ROLE}")
        else:
            connection = db.engine.connect()
            outer = begin_outer(connection)
        original = db.session
        bind_session(connection)
        try:
            yield db.session
        finally:
            db.session.remove()
            db.session = original
            end_outer(connection, outer)


@pytest.fixture
def committed_db(app: Flask) -> Iterator[Any]:
    """Real commits (for concurrency and worker tests); every table is emptied afterwards."""
    with app.app_context():
        yield db.session
        db.session.remove()
        _empty_all_tables()


def _empty_all_tables() -> None:
    """As the tables' owner: the app's role may not TRUNCATE or DELETE the ledger."""
    from tests.insider import append_only_guards_off

    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with owner_engine_for(db.engine.url).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Row triggers (the ledger's append-only guard) do not fire on TRUNCATE.
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            with append_only_guards_off(conn):
                for name in tables:
                    conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def client(app: Flask, db_session: Any) -> FlaskClient:
    return app.test_client()


# --- Redis and Elasticsearch ------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis; keys this run created (its prefix) are deleted afterwards."""
    from redis import Redis

    try:
        conn = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        conn.ping()
    except Exception as exc:
        _unreachable("Redis", exc)
    yield REDIS_URL
    for key in conn.scan_iter(match=f"*{RUN_ID}*", count=1000):
        conn.delete(key)


@pytest.fixture
def elasticsearch_url() -> Iterator[str]:
    """The real Elasticsearch node; indices this run created are deleted afterwards."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(ELASTICSEARCH_URL, request_timeout=10, max_retries=0)
    try:
        client.cluster.health(wait_for_status="yellow", timeout="5s")
    except Exception as exc:
        _unreachable("Elasticsearch", exc)
    yield ELASTICSEARCH_URL
    indices = client.indices.get(index=f"{RUN_ID.lower()}*", expand_wildcards="all")
    for name in indices:
        client.indices.delete(index=name, ignore_unavailable=True)
