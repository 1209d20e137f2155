"""An insider with the database owner's rights, going around the application.

What the application's role cannot do (switch the ledger's append-only guards off, rewrite or
delete rows), the tables' owner can: these helpers let a test play that insider, to show the
checks that must still catch it (the chain check, an older checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from market.database_roles import APPEND_ONLY_TABLES
from tests.conftest import APP_ROLE, USE_ROLES


@contextmanager
def append_only_guards_off(conn: Connection) -> Iterator[None]:
    """The append-only triggers of the ledger tables off meanwhile (the owner's connection)."""
    if conn.dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield
        for table in APPEND_ONLY_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        return
    placeholders = ", ".join("?" for _ in APPEND_ONLY_TABLES)
    triggers = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        f"AND tbl_name IN ({placeholders})",
        APPEND_ONLY_TABLES,
    ).all()
    for name, _ in triggers:
        conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    for _, sql in triggers:
        conn.exec_driver_sql(sql)


@contextmanager
def as_insider(conn: Connection) -> Iterator[None]:
    """In a ``db_session`` test: step from the app's role back to the owner, guards off."""
    if conn.dialect.name == "postgresql" and USE_ROLES:
        conn.exec_driver_sql("RESET ROLE")
    with append_only_guards_off(conn):
        yield
    if conn.dialect.name == "postgresql" and USE_ROLES:
        conn.exec_driver_sql(f"SET ROLE {APP_ROLE}")
