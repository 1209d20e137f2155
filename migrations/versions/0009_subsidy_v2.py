"""subsidy v2: confirmed purchases with frozen facts; order-independent ledger entries

Revision ID: 0009_subsidy_v2
Revises: 0008_ledger_totals
Create Date: 2026-12-04 16:40:00

What this migration assumes, and what it does not do:

- Purchases recorded before v2 were declared by the buyer alone. They become ``confirmed`` with
  ``confirmation = 'legacy_v1'`` (awards: ``'award'``), so an auditor can tell them apart;
  nothing pretends a supplier confirmed them.
- Their frozen facts are copied from the sites *as they are now*: the best record there is of
  where the goods shipped from. Their ledger entries already carry the verdicts decided then.
- Existing ledger entries stay exactly as they are (``format`` 1: their hash covers the v1
  fields). Only the columns v2 added are filled on them: ``format`` = 1, ``cause`` =
  ``<kind>:<purchase>:1`` (what the old unique (purchase_id, kind) meant) and ``plant_city_code``
  (from the purchase, for auditors' jurisdictions); neither is hashed in format 1. To fill them
  the immutability trigger is dropped for the duration of this migration and created again.
- Nothing is recomputed here. The v1 rule computed increments in arrival order; the first v2
  append for an (OEM, year) with v1 entries appends a ``SETTLED`` adjustment that brings that
  year's sums to the v2 figures, visibly, in the chain (``flask baselines settle`` does it for all at once).
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0009_subsidy_v2"
down_revision = "0008_ledger_totals"
branch_labels = None
depends_on = None

PG_TRIGGER = """
CREATE TRIGGER ledger_entries_immutable
BEFORE UPDATE OR DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()
"""
SQLITE_TRIGGER = """
CREATE TRIGGER ledger_entries_immutable
BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only: UPDATE refused on ledger_entries');
END
"""


def _enum(name, *values):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


OLD_STATUS = _enum("purchasestatus", "recorded", "cancelled")
NEW_STATUS = _enum("purchasestatus", "pending_confirmation", "confirmed", "disputed", "cancelled")
OLD_KIND = _enum("entrykind", "record", "reversal")
NEW_KIND = _enum("entrykind", "record", "reversal", "adjustment")
OLD_TOPIC = _enum("outboxtopic", "ledger.record", "ledger.reverse", "search.sync")
NEW_TOPIC = _enum("outboxtopic", "ledger.record", "ledger.reverse", "ledger.rebase", "search.sync")


def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    money = market.database.Money()

    # --- purchases ------------------------------------------------------------------------
    with op.batch_alter_table("purchases") as batch:
        batch.alter_column("status", type_=sa.String(24), existing_type=OLD_STATUS)
        batch.add_column(sa.Column("created_by_party", _enum("purchaseparty", "oem", "supplier"), nullable=True))
        batch.add_column(sa.Column("site_city_code", sa.String(6), nullable=True))
        batch.add_column(sa.Column("site_lat", sa.Float(), nullable=True))
        batch.add_column(sa.Column("site_lon", sa.Float(), nullable=True))
        batch.add_column(sa.Column("plant_city_code", sa.String(6), nullable=True))
        batch.add_column(sa.Column("plant_lat", sa.Float(), nullable=True))
        batch.add_column(sa.Column("plant_lon", sa.Float(), nullable=True))
        batch.add_column(sa.Column("confirmation", _enum("confirmation", "counterparty", "award", "legacy_v1"), nullable=True))
        batch.add_column(sa.Column("confirmed_at", market.database.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("confirmed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("disputed_at", market.database.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disputed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("dispute_reason", sa.String(500), nullable=True))
        batch.add_column(sa.Column("review", _enum("invoicereview", "pending", "released", "rejected"), nullable=True))
        batch.add_column(sa.Column("reviewed_at", market.database.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reviewed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("review_reason", sa.String(500), nullable=True))
        batch.create_foreign_key(op.f("fk_purchases_confirmed_by_id_users"), "users", ["confirmed_by_id"], ["id"])
        batch.create_foreign_key(op.f("fk_purchases_disputed_by_id_users"), "users", ["disputed_by_id"], ["id"])
        batch.create_foreign_key(op.f("fk_purchases_reviewed_by_id_users"), "users", ["reviewed_by_id"], ["id"])
        batch.drop_constraint("uq_purchases_supplier_org_id_invoice_number", type_="unique")
        batch.create_unique_constraint(
            op.f("uq_purchases_oem_org_id_supplier_org_id_invoice_number"),
            ["oem_org_id", "supplier_org_id", "invoice_number"],
        )
        batch.create_index("ix_purchases_supplier_invoice", ["supplier_org_id", "invoice_number"])

    op.execute(
        """
        UPDATE purchases SET
            created_by_party = 'oem',
            site_city_code = (SELECT s.city_code FROM sites s WHERE s.id = purchases.supplier_site_id),
            site_lat = (SELECT s.lat FROM sites s WHERE s.id = purchases.supplier_site_id),
            site_lon = (SELECT s.lon FROM sites s WHERE s.id = purchases.supplier_site_id),
            plant_city_code = (SELECT s.city_code FROM sites s WHERE s.id = purchases.plant_id),
            plant_lat = (SELECT s.lat FROM sites s WHERE s.id = purchases.plant_id),
            plant_lon = (SELECT s.lon FROM sites s WHERE s.id = purchases.plant_id),
            confirmation = CASE WHEN source = 'award' THEN 'award' ELSE 'legacy_v1' END,
            confirmed_at = CASE WHEN source = 'award' THEN created_at ELSE NULL END,
            status = CASE WHEN status = 'recorded' THEN 'confirmed' ELSE status END
        """
    )
    with op.batch_alter_table("purchases") as batch:
        batch.alter_column("status", type_=NEW_STATUS, existing_type=sa.String(24), nullable=False)
        for name, type_ in (
            ("created_by_party", _enum("purchaseparty", "oem", "supplier")),
            ("site_city_code", sa.String(6)),
            ("site_lat", sa.Float()),
            ("site_lon", sa.Float()),
            ("plant_city_code", sa.String(6)),
            ("plant_lat", sa.Float()),
            ("plant_lon", sa.Float()),
        ):
            batch.alter_column(name, existing_type=type_, nullable=False)

    # --- ledger entries -------------------------------------------------------------------
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_immutable" + (" ON ledger_entries" if postgres else ""))
    with op.batch_alter_table("ledger_entries") as batch:
        batch.alter_column("kind", type_=sa.String(24), existing_type=OLD_KIND)
        batch.add_column(sa.Column("format", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cause", sa.String(64), nullable=True))
        batch.add_column(sa.Column("plant_city_code", sa.String(6), nullable=True))
        batch.add_column(sa.Column("baseline_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("held", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("near_shore_total", money, nullable=True))
        batch.add_column(sa.Column("increment_total", money, nullable=True))
        batch.add_column(sa.Column("subsidy_total", money, nullable=True))
        batch.drop_constraint("uq_ledger_entries_purchase_id_kind", type_="unique")
        for name, type_ in (
            ("purchase_id", sa.Integer()),
            ("supplier_org_id", sa.Integer()),
            ("supplier_city_code", sa.String(6)),
            ("purchased_on", sa.Date()),
            ("distance_km", sa.Numeric(10, 3)),
            ("baseline", money),
        ):
            batch.alter_column(name, existing_type=type_, nullable=True)
    op.execute(
        """
        UPDATE ledger_entries SET
            format = 1,
            cause = kind || '\\:' || CAST(purchase_id AS VARCHAR(20)) || '\\:1',
            plant_city_code = (SELECT p.plant_city_code FROM purchases p WHERE p.id = ledger_entries.purchase_id)
        """
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.alter_column("kind", type_=NEW_KIND, existing_type=sa.String(24), nullable=False)
        batch.alter_column("format", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("cause", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint(op.f("uq_ledger_entries_cause"), ["cause"])
        batch.create_index("ix_ledger_entries_purchase_id", ["purchase_id"])
    op.execute(PG_TRIGGER if postgres else SQLITE_TRIGGER)

    # --- totals and the outbox ------------------------------------------------------------
    with op.batch_alter_table("ledger_totals") as batch:
        batch.add_column(sa.Column("increment_total", money, nullable=True))
    op.execute(
        """
        UPDATE ledger_totals SET increment_total = COALESCE((
            SELECT SUM(e.increment) FROM ledger_entries e
            WHERE e.oem_org_id = ledger_totals.oem_org_id AND e.year = ledger_totals.year), 0)
        """
    )
    with op.batch_alter_table("ledger_totals") as batch:
        batch.alter_column("increment_total", existing_type=money, nullable=False)
    with op.batch_alter_table("outbox_events") as batch:
        batch.alter_column("topic", type_=NEW_TOPIC, existing_type=OLD_TOPIC)


def downgrade():
    raise RuntimeError(
        "0009_subsidy_v2 is not reversible: v2 ledger entries (adjustments, confirmations) "
        "have no v1 form. Restore a backup taken before the upgrade instead."
    )
