"""ledger: running totals per (OEM, year); the (oem, year) index covers the sums

Revision ID: 0008_ledger_totals
Revises: 0007_fk_indexes
Create Date: 2026-11-25 05:10:00

"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0008_ledger_totals"
down_revision = "0007_fk_indexes"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_totals",
        sa.Column("oem_org_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("near_shore_total", market.database.Money(), nullable=False),
        sa.Column("subsidy_total", market.database.Money(), nullable=False),
        sa.Column("updated_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["oem_org_id"], ["organizations.id"], name=op.f("fk_ledger_totals_oem_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("oem_org_id", "year", name=op.f("pk_ledger_totals")),
    )
    # The totals of the entries already there (Money is stored as fen on SQLite, as yuan on
    # PostgreSQL: summing the stored values keeps each database's unit).
    op.execute(
        "INSERT INTO ledger_totals (oem_org_id, year, near_shore_total, subsidy_total, updated_at) "
        "SELECT oem_org_id, year, SUM(CASE WHEN near_shore THEN amount ELSE 0 END), "
        "SUM(subsidy), CURRENT_TIMESTAMP FROM ledger_entries GROUP BY oem_org_id, year"
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_oem_year")
        batch_op.create_index(
            "ix_ledger_entries_oem_year",
            ["oem_org_id", "year"],
            unique=False,
            postgresql_include=["near_shore", "amount", "subsidy"],
        )


def downgrade():
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_oem_year")
        batch_op.create_index("ix_ledger_entries_oem_year", ["oem_org_id", "year"], unique=False)
    op.drop_table("ledger_totals")
