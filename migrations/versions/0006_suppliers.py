"""suppliers: index certifications.site_id

PostgreSQL does not index foreign keys by itself; without this index every deleted site
(``flask seed-demo --reset`` of a large demo world) scans the whole certifications table.

Revision ID: 0006_suppliers
Revises: 0001
"""

from alembic import op


# revision identifiers, used by Alembic.
revision = "0006_suppliers"
down_revision = "0005_ledger"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("certifications") as batch_op:
        batch_op.create_index("ix_certifications_site_id", ["site_id"], unique=False)


def downgrade():
    with op.batch_alter_table("certifications") as batch_op:
        batch_op.drop_index("ix_certifications_site_id")
