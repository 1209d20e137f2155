"""A test's database work in one transaction that is rolled back, with requests as in production.

Two things make this different from a plain ``app.app_context()`` around the test:

- Flask-SQLAlchemy's session ignores ``bind=`` (it picks an engine per mapper, on a fresh
  connection), so its commits would be real. :class:`ConnectionBoundSession` pins it to the
  test's connection; the code's commits become savepoints inside the test's transaction.
- No app context stays pushed while the test client sends requests: every request gets its own
  app context and its own ``g`` (where Flask-Login caches the user), as in production. Set-up
  and checks run in short ``with env.db():`` blocks instead.

Use: ``from tests.isolation import env  # noqa: F401`` in a test module, then a test asks for
``env`` and does ``with env.db() as session: ...``; objects stay readable afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy.engine import Connection

from market.extensions import db
from market.models import User
from market.passwords import hash_password
from tests import factories


class ConnectionBoundSession(FlaskSession):
    """A Flask-SQLAlchemy session that always uses the connection it was given."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        return self.bind


def bind_session(connection: Connection) -> None:
    """Point ``db.session`` at ``connection``; each commit is a savepoint inside its transaction."""
    db.session = db._make_scoped_session(
        {
            "bind": connection,
            "join_transaction_mode": "create_savepoint",
            "class_": ConnectionBoundSession,
            "expire_on_commit": False,
        }
    )


def begin_outer(connection: Connection) -> Any:
    """The test's transaction: a real one, so savepoints nest inside it on every database."""
    outer = connection.begin()
    if connection.dialect.name == "sqlite":
        # pysqlite defers BEGIN until the first write, so a savepoint would open (and its
        # RELEASE commit) a transaction of its own. Driver autocommit plus an explicit BEGIN.
        connection.connection.driver_connection.isolation_level = None  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN")
    return outer


def end_outer(connection: Connection, outer: Any) -> None:
    """Roll the test's transaction back and return the connection as it was."""
    outer.rollback()
    if connection.dialect.name == "sqlite":
        connection.connection.driver_connection.isolation_level = ""  # type: ignore[union-attr]
    connection.close()


@dataclass
class Env:
    app: Flask
    connection: Connection

    @contextmanager
    def db(self, app: Flask | None = None) -> Iterator[Any]:
        """An app context for set-up or checks; what it wrote is kept (released savepoint)."""
        with (app or self.app).app_context():
            yield db.session
            db.session.commit()

    def client(self, app: Flask | None = None) -> FlaskClient:
        return (app or self.app).test_client()


@pytest.fixture
def env(app: Flask) -> Iterator[Env]:
    """The test's transaction, rolled back afterwards; rate-limit counters start empty."""
    original = db.session
    with app.app_context():
        connection = db.engine.connect()
    outer = begin_outer(connection)
    with app.app_context():
        bind_session(connection)
    try:
        yield Env(app, connection)
    finally:
        with app.app_context():
            db.session.remove()
        db.session = original
        end_outer(connection, outer)
        app.extensions["rate_limiter"].storage.reset()


def make_user(*args: Any, **kwargs: Any) -> User:
    """``factories.make_user`` with the password hashed at the test apps' (cheap) argon2 cost.

    The factories hash their shared password once at import, with the production cost; signing
    in as such a user costs a full argon2 verification each time.
    """
    user = factories.make_user(*args, **kwargs)
    user.password_hash = hash_password(factories.PASSWORD)
    return user
