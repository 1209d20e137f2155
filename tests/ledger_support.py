"""Test support shared by the ledger's test modules.

``db_session`` here replaces conftest's for these modules because conftest's does not isolate
a test whose code commits (reported to the lead; delete this once conftest has the fix):

- Flask-SQLAlchemy's ``Session.get_bind`` returns the engine for mapped classes, ignoring the
  session's ``bind=connection``: the session works on a connection of its own, and every
  ``commit()`` of the code under test really commits. The session below binds to the test's
  connection for real.
- pysqlite emits no BEGIN (the driver begins lazily), so SQLite's outermost SAVEPOINT starts
  the transaction and its RELEASE commits it. The connection below runs in driver autocommit
  with an explicit BEGIN, so savepoints nest inside the test's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FlaskSqlaSession
from sqlalchemy import text

from market.extensions import db
from market.services.ledger import ensure_default_policy


class ConnectionBoundSession(FlaskSqlaSession):
    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        return bind if bind is not None else self.bind


@pytest.fixture
def db_session(app: Flask) -> Iterator[Any]:
    """Each test runs in a transaction that is rolled back; the code's commits are savepoints."""
    with app.app_context():
        connection = db.engine.connect()
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            raw = connection.connection.dbapi_connection
            raw.isolation_level = None  # type: ignore[union-attr]
        outer = connection.begin()
        if sqlite:
            connection.exec_driver_sql("BEGIN")
        original = db.session
        db.session = db._make_scoped_session(
            {
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
                "class_": ConnectionBoundSession,
            }
        )
        try:
            yield db.session
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            if sqlite:
                raw.isolation_level = ""  # type: ignore[union-attr]
            connection.close()


class FreshUserClient(FlaskClient):
    """Requests made inside the test's app context share its ``g``, where Flask-Login caches
    the signed-in user: forget it so each request is judged by its own credentials."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        g.pop("_login_user", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask, db_session: Any) -> FlaskClient:
    return FreshUserClient(app, app.response_class, use_cookies=True)


LEDGER_TABLES = ("ledger_entries", "declared_baselines", "subsidy_policies", "outbox_events")


def reset_ledger_tables() -> None:
    """Start the test's transaction (rolled back afterwards) from an empty ledger, outbox and
    policy table with version 1 seeded, whatever other tests committed before."""
    if db.session.get_bind().dialect.name == "postgresql":
        # TRUNCATE is transactional on PostgreSQL and row triggers do not see it.
        db.session.execute(text(f"TRUNCATE {', '.join(LEDGER_TABLES)}"))
    else:
        for table in LEDGER_TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))
    ensure_default_policy()
