"""quote revisions: history of every quote version, one active quote per supplier, hidden target price

Revision ID: 0017_quote_revisions
Revises: 0016_webhooks

- ``demands.hide_target_price`` (false for existing demands: what suppliers saw stays visible);
- ``quotes.revision`` / ``quotes.revised_at`` and the append-only ``quote_revisions`` table; every
  existing quote becomes its own revision 1, so each quote's history is complete;
- the unique (demand, supplier) of quotes becomes a partial unique index over the *active* ones
  (submitted or awarded): a supplier may quote again after withdrawing.
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0017_quote_revisions"
down_revision = "0016_webhooks"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('submitted', 'awarded')")


def upgrade():
    with op.batch_alter_table("demands") as batch:
        batch.add_column(
            sa.Column("hide_target_price", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("quotes") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("revised_at", market.database.UTCDateTime(timezone=True), nullable=True)
        )
        batch.drop_constraint("uq_quotes_demand_id_organization_id", type_="unique")
    op.create_index(
        "uq_quotes_active_demand_id_organization_id",
        "quotes",
        ["demand_id", "organization_id"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_table(
        "quote_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quote_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("unit_price", market.database.Money(precision=18, scale=2), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["quotes.id"], name=op.f("fk_quote_revisions_quote_id_quotes")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_quote_revisions_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_quote_revisions_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_revisions")),
        sa.UniqueConstraint(
            "quote_id", "revision", name=op.f("uq_quote_revisions_quote_id_revision")
        ),
    )
    with op.batch_alter_table("quote_revisions") as batch:
        batch.create_index(batch.f("ix_quote_revisions_quote_id"), ["quote_id"], unique=False)
        batch.create_index(batch.f("ix_quote_revisions_site_id"), ["site_id"], unique=False)
        batch.create_index(
            batch.f("ix_quote_revisions_created_by_id"), ["created_by_id"], unique=False
        )
    # Every existing quote is its own first version (amounts are stored alike in both tables).
    op.execute(
        "INSERT INTO quote_revisions (quote_id, revision, site_id, unit_price, quantity, "
        "lead_time_days, valid_until, note, created_by_id, created_at) "
        "SELECT id, 1, site_id, unit_price, quantity, lead_time_days, valid_until, note, "
        "created_by_id, created_at FROM quotes"
    )


def downgrade():
    op.drop_table("quote_revisions")
    op.drop_index("uq_quotes_active_demand_id_organization_id", table_name="quotes")
    with op.batch_alter_table("quotes") as batch:
        # Fails if a supplier has quoted again after withdrawing: keep one quote per pair first.
        batch.create_unique_constraint(
            "uq_quotes_demand_id_organization_id", ["demand_id", "organization_id"]
        )
        batch.drop_column("revised_at")
        batch.drop_column("revision")
    with op.batch_alter_table("demands") as batch:
        batch.drop_column("hide_target_price")
