"""checkpoints: the Merkle tree over the ledger, signed checkpoints, issuance failures; the
ledger refuses DELETE on SQLite too

- ledger_tree_nodes: the perfect subtrees of the RFC 9162 tree over the entries (level 0 = leaf
  hashes), written once each, so a proof reads O(log n) rows at any size.
- ledger_checkpoints: signed {size, root, time}; ledger_checkpoint_failures: issuance attempts
  that failed (signing key unavailable, a gap in the entries), listed for admins.
- All three are append-only like ledger_entries: a trigger refuses UPDATE and DELETE on both
  databases. SQLite now refuses DELETE on ledger_entries as well (0005 left it to the file's
  owner).
- PostgreSQL grants for the application's role are applied by migrations/env.py after every
  upgrade (market/database_roles.py), not here: they depend on DATABASE_APP_ROLE.

Revision ID: 0012_checkpoints
Revises: 0011_search
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0012_checkpoints"
down_revision = "0011_search"
branch_labels = None
depends_on = None

NEW_TABLES = ("ledger_tree_nodes", "ledger_checkpoints", "ledger_checkpoint_failures")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only: % refused on %', TG_OP, TG_TABLE_NAME;
END
$$
"""
PG_TRIGGER = """
CREATE TRIGGER {table}_immutable
BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION ledger_append_only()
"""
SQLITE_TRIGGER = """
CREATE TRIGGER {table}_no_{verb}
BEFORE {op} ON {table}
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only: {op} refused on {table}');
END
"""


def upgrade():
    op.create_table(
        "ledger_tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "position", name=op.f("pk_ledger_tree_nodes")),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_checkpoints")),
        sa.UniqueConstraint("size", name=op.f("uq_ledger_checkpoints_size")),
    )
    op.create_table(
        "ledger_checkpoint_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ledger_size", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_checkpoint_failures")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in NEW_TABLES:
            op.execute(PG_TRIGGER.format(table=table))
    else:
        for table in ("ledger_entries", *NEW_TABLES):
            op.execute(SQLITE_TRIGGER.format(table=table, verb="delete", op="DELETE"))
        for table in NEW_TABLES:
            op.execute(SQLITE_TRIGGER.format(table=table, verb="update", op="UPDATE"))


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    if not postgres:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    op.drop_table("ledger_checkpoint_failures")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_tree_nodes")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
