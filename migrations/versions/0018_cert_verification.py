"""cert verification: an admin's review of certificates (pending → verified | rejected)

Only verified certificates count for matching from now on. Every certificate that exists when
this runs is marked ``verified``: it was accepted under v1's rules (a supplier's declaration
was enough), and marking it pending would drop every supplier out of every demand that needs a
standard until an admin had worked through the whole backlog. New certificates, and ones whose
stated facts change, start ``pending`` (the column's default for rows written from now on).

The search index holds a copy of each certificate: run ``flask search reindex`` after this
migration (the mapping gains ``certifications.verification``).

Revision ID: 0018_cert_verification
Revises: 0017_quote_revisions
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0018_cert_verification"
down_revision = "0017_quote_revisions"
branch_labels = None
depends_on = None

UTC_DATETIME = market.database.UTCDateTime(timezone=True)


def _verification() -> sa.Enum:
    return sa.Enum(
        "pending",
        "verified",
        "rejected",
        name="certverification",
        native_enum=False,
        create_constraint=True,
        length=24,
    )


def upgrade():
    with op.batch_alter_table("certifications") as batch:
        # The server default fills the existing rows (v1's accepted certificates) as verified.
        batch.add_column(
            sa.Column(
                "verification", _verification(), nullable=False, server_default="verified"
            )
        )
        batch.add_column(sa.Column("reviewed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reviewed_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("review_reason", sa.String(length=500), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_certifications_reviewed_by_id_users"), "users", ["reviewed_by_id"], ["id"]
        )
        batch.create_index(batch.f("ix_certifications_verification"), ["verification"])
    # The application always sets the value; no default is left behind for new rows.
    with op.batch_alter_table("certifications") as batch:
        batch.alter_column("verification", server_default=None, existing_type=_verification())


def downgrade():
    with op.batch_alter_table("certifications") as batch:
        batch.drop_index(batch.f("ix_certifications_verification"))
        # The enum's CHECK constraint names the column: it goes first (SQLite rebuilds the table).
        batch.drop_constraint(batch.f("ck_certifications_certverification"), type_="check")
        batch.drop_constraint(batch.f("fk_certifications_reviewed_by_id_users"), type_="foreignkey")
        batch.drop_column("review_reason")
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewed_by_id")
        batch.drop_column("verification")
