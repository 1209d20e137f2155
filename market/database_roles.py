"""Two PostgreSQL roles: the owner runs the migrations, the application reads and writes.

The owner (``DATABASE_URL`` of ``flask db upgrade``) owns every table. After each upgrade,
:func:`grant_application_role` gives the application's role (``DATABASE_APP_ROLE``) ordinary
rights on every table except the append-only ones, where it may only SELECT and INSERT: it
cannot UPDATE, DELETE or TRUNCATE a ledger row, and, owning nothing, cannot ALTER a table or
switch a trigger off. Re-run on every upgrade, so tables added later get their grants too.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import Connection

# The ledger and what proves it: insert-only for the application.
APPEND_ONLY_TABLES = (
    "ledger_entries",
    "ledger_tree_nodes",
    "ledger_checkpoints",
    "ledger_checkpoint_failures",
    # A claim's history, the evidence asked for and the documents handed in (claims and
    # their lines change state, so they are ordinary tables).
    "claim_transitions",
    "claim_evidence_requests",
    "claim_evidence",
)
# Histories the application adds to but never rewrites (no trigger: the grants are the guard).
INSERT_ONLY_TABLES = ("quote_revisions",)
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_application_role(connection: Connection, role: str) -> None:
    """Grant ``role`` its rights on the current schema (PostgreSQL; run as the owner)."""
    if not _ROLE_NAME.match(role):
        raise ValueError(f"not a plain PostgreSQL role name: {role!r}")
    owner = connection.exec_driver_sql("SELECT current_user").scalar()
    if owner == role:
        raise ValueError(
            f"DATABASE_APP_ROLE is {role!r}, the role running the migrations: the application "
            "must connect as a role that does not own the tables"
        )
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
    existing = set(
        connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).scalars()
    )
    statements = [
        f'GRANT USAGE ON SCHEMA "{schema}" TO {role}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}',
    ]
    if "alembic_version" in existing:  # the application reads the revision, never moves it
        statements += [
            f"REVOKE ALL ON alembic_version FROM {role}",
            f"GRANT SELECT ON alembic_version TO {role}",
        ]
    for name in (*APPEND_ONLY_TABLES, *INSERT_ONLY_TABLES):
        if name in existing:
            statements += [
                f"REVOKE ALL ON {name} FROM {role}",
                f"GRANT SELECT, INSERT ON {name} TO {role}",
            ]
    for statement in statements:
        connection.exec_driver_sql(statement)
