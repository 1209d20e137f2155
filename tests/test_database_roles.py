"""The application's PostgreSQL role can read and append the ledger, and nothing more.

Run against the real PostgreSQL with the two roles of ``.ci/services.sh``: the run's database
was migrated by the owner (``market_owner``) with ``DATABASE_APP_ROLE`` set, and the app
connects as ``market``. Every way the application's role could rewrite history is refused by
the database itself, whatever the application's code does.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from market.database_roles import APPEND_ONLY_TABLES, grant_application_role
from tests.conftest import APP_ROLE, IN_CI, OWNER_DATABASE_URL, USE_POSTGRES, USE_ROLES

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="PostgreSQL roles"),
]

OWNER_ROLE = make_url(OWNER_DATABASE_URL).username


@pytest.fixture
def app_engine(database_url):
    if not USE_ROLES:
        message = f"the owner role {OWNER_ROLE} cannot sign in: run `bash .ci/services.sh up`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _refusal(engine, statement: str) -> str:
    with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text(statement))
    return str(caught.value.orig)


REWRITES = [
    ("UPDATE {table} SET {column} = {column}", "permission denied for table {table}"),
    ("DELETE FROM {table}", "permission denied for table {table}"),
    ("TRUNCATE {table}", "permission denied for table {table}"),
    ("ALTER TABLE {table} DISABLE TRIGGER USER", "must be owner of table {table}"),
    ("ALTER TABLE {table} ADD COLUMN note text", "must be owner of table {table}"),
    ("DROP TABLE {table}", "must be owner of table {table}"),
    (
        "CREATE TRIGGER t BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION "
        "ledger_append_only()",
        "permission denied for table {table}",
    ),
]
KEY_COLUMN = {
    "ledger_entries": "amount",
    "ledger_tree_nodes": "hash",
    "ledger_checkpoints": "root_hash",
    "ledger_checkpoint_failures": "reason",
    "claim_transitions": "reason",
    "claim_evidence_requests": "note",
    "claim_evidence": "sha256",
}


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize(("statement", "refusal"), REWRITES)
def test_the_app_role_cannot_rewrite_the_ledger(app, app_engine, table, statement, refusal):
    sql = statement.format(table=table, column=KEY_COLUMN[table])
    assert refusal.format(table=table) in _refusal(app_engine, sql)


def test_the_app_role_reads_and_appends_but_cannot_become_the_owner(app, app_engine):
    with app_engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == APP_ROLE
        assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar() >= 0
        conn.execute(
            text(
                "INSERT INTO ledger_checkpoint_failures (attempted_at, ledger_size, reason) "
                "VALUES (now(), 0, 'role test')"
            )
        )
        conn.rollback()
        # Ordinary tables stay writable (the worker keeps its running totals up to date).
        conn.execute(text("UPDATE ledger_totals SET year = year WHERE false"))
        conn.rollback()
    assert "permission denied to set role" in _refusal(app_engine, f"SET ROLE {OWNER_ROLE}")
    # Triggers off for the session: superusers only.
    assert "permission denied" in _refusal(app_engine, "SET session_replication_role = replica")
    assert "permission denied for table alembic_version" in _refusal(
        app_engine, "UPDATE alembic_version SET version_num = version_num"
    )
    with app_engine.connect() as conn:
        flags = conn.execute(
            text("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert not flags.rolsuper
    if IN_CI:  # a developer's older set-up may still give it CREATEROLE (services.sh removes it)
        assert not flags.rolcreaterole


def test_the_app_role_must_not_be_the_owner(app, owner_database_url):
    engine = create_engine(owner_database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn, pytest.raises(ValueError, match="does not own"):
            grant_application_role(conn, OWNER_ROLE)
        with engine.connect() as conn, pytest.raises(ValueError, match="plain PostgreSQL"):
            grant_application_role(conn, "market; DROP TABLE ledger_entries")
    finally:
        engine.dispose()
