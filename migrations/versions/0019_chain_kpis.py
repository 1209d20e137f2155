"""chain kpis: declared vehicle output, delivery records, domestic-origin chips, performance

Revision ID: 0019_chain_kpis
Revises: 0018_cert_verification
Create Date: 2026-12-05 07:30:00

Adds the admin-declared vehicle output per OEM and year (整零比), delivery records on purchases
(the supplier scorecard), the domestic-origin flag of ic.chips capabilities and its frozen copy
on purchases (chip localisation), the supplier's precomputed performance score and the demand's
opt-in ranking factor. Existing rows get false / null: no chip purchase recorded before this
revision counts as domestic, no supplier has a score, no demand ranks by performance.
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0019_chain_kpis"
down_revision = "0018_cert_verification"
branch_labels = None
depends_on = None

UTC_DATETIME = market.database.UTCDateTime(timezone=True)


def upgrade():
    op.create_table(
        "declared_vehicle_outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("oem_org_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("output_value", market.database.Money(), nullable=False),
        sa.Column("vehicles", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("declared_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["declared_by_id"],
            ["users.id"],
            name=op.f("fk_declared_vehicle_outputs_declared_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["oem_org_id"],
            ["organizations.id"],
            name=op.f("fk_declared_vehicle_outputs_oem_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_declared_vehicle_outputs")),
        sa.UniqueConstraint(
            "oem_org_id", "year", name=op.f("uq_declared_vehicle_outputs_oem_org_id_year")
        ),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=False),
        sa.Column("supplier_org_id", sa.Integer(), nullable=False),
        sa.Column("promised_on", sa.Date(), nullable=False),
        sa.Column("delivered_on", sa.Date(), nullable=False),
        sa.Column("accepted_qty", sa.Integer(), nullable=False),
        sa.Column("rejected_qty", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_deliveries_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_deliveries_recorded_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["supplier_org_id"],
            ["organizations.id"],
            name=op.f("fk_deliveries_supplier_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_purchase_id"), ["purchase_id"])
        batch_op.create_index(
            "ix_deliveries_supplier_delivered", ["supplier_org_id", "delivered_on"]
        )
    with op.batch_alter_table("capabilities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("domestic_origin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chip_domestic_origin", sa.Boolean(), nullable=True))
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("performance_bp", sa.Integer(), nullable=True))
    with op.batch_alter_table("demands", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rank_by_performance", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Chip purchases recorded before the flag existed are foreign (not domestic), explicitly.
    op.execute("UPDATE purchases SET chip_domestic_origin = false WHERE category LIKE 'ic.chips%'")


def downgrade():
    with op.batch_alter_table("demands", schema=None) as batch_op:
        batch_op.drop_column("rank_by_performance")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("performance_bp")
    with op.batch_alter_table("purchases", schema=None) as batch_op:
        batch_op.drop_column("chip_domestic_origin")
    with op.batch_alter_table("capabilities", schema=None) as batch_op:
        batch_op.drop_column("domestic_origin")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_supplier_delivered")
        batch_op.drop_index(batch_op.f("ix_deliveries_purchase_id"))
    op.drop_table("deliveries")
    op.drop_table("declared_vehicle_outputs")
