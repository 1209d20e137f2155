"""claims: subsidy claims (申报), their lines, transitions, evidence requests and documents

- claims: one per (OEM, year, filing); a partial unique index keeps one open claim (draft,
  submitted, under review, evidence requested) per (OEM, year), under concurrency too.
- claim_lines: the near-shore purchases a claim is made of, with the auditor's decision.
- claim_transitions, claim_evidence_requests, claim_evidence: insert-only. A trigger refuses
  UPDATE and DELETE on both databases, and market/database_roles.py grants the application's
  PostgreSQL role only SELECT and INSERT on them (what happened to a claim, what was asked for
  and what was handed in are never rewritten). claims and claim_lines change state, so they
  stay ordinary tables.

Revision ID: 0014_claims
Revises: 0013_events
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0014_claims"
down_revision = "0013_events"
branch_labels = None
depends_on = None

OPEN = "state IN ('draft', 'submitted', 'under_review', 'evidence_requested')"
APPEND_ONLY = ("claim_transitions", "claim_evidence_requests", "claim_evidence")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION claim_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'claim history is append-only: % refused on %', TG_OP, TG_TABLE_NAME;
END
$$
"""
PG_TRIGGER = """
CREATE TRIGGER {table}_immutable
BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION claim_history_append_only()
"""
SQLITE_TRIGGER = """
CREATE TRIGGER {table}_no_{verb}
BEFORE {op} ON {table}
BEGIN
    SELECT RAISE(ABORT, 'claim history is append-only: {op} refused on {table}');
END
"""


def _append_only():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in APPEND_ONLY:
            op.execute(PG_TRIGGER.format(table=table))
    else:
        for table in APPEND_ONLY:
            op.execute(SQLITE_TRIGGER.format(table=table, verb="delete", op="DELETE"))
            op.execute(SQLITE_TRIGGER.format(table=table, verb="update", op="UPDATE"))


def upgrade():
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("oem_org_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "primary",
                "supplementary",
                name="claimkind",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "draft",
                "submitted",
                "under_review",
                "evidence_requested",
                "approved",
                "partially_approved",
                "rejected",
                name="claimstate",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", market.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", market.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_root", sa.String(length=64), nullable=True),
        sa.Column("covered_after", sa.BigInteger(), nullable=True),
        sa.Column("entry_seqs", sa.JSON(), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("rate", sa.Numeric(precision=8, scale=6), nullable=True),
        sa.Column("annual_cap", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("near_shore_total", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("baseline", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("baseline_source", sa.String(length=16), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=True),
        sa.Column("increment", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("subsidy", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("claimed_amount", market.database.Money(precision=18, scale=2), nullable=True),
        sa.Column("approved_amount", market.database.Money(precision=18, scale=2), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_claims_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["oem_org_id"], ["organizations.id"], name=op.f("fk_claims_oem_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["claims.id"], name=op.f("fk_claims_parent_id_claims")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_claims_created_by_id"), ["created_by_id"], unique=False
        )
        batch_op.create_index("ix_claims_oem_org_id_year", ["oem_org_id", "year"], unique=False)
        batch_op.create_index(batch_op.f("ix_claims_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(
            "uq_claims_open_oem_year",
            ["oem_org_id", "year"],
            unique=True,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )

    op.create_table(
        "claim_evidence_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column("purchase_ids", sa.JSON(), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_evidence_requests_claim_id_claims")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_claim_evidence_requests_requested_by_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_evidence_requests")),
    )
    with op.batch_alter_table("claim_evidence_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_claim_evidence_requests_claim_id"), ["claim_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_claim_evidence_requests_requested_by_id"),
            ["requested_by_id"],
            unique=False,
        )

    op.create_table(
        "claim_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column(
            "from_state",
            sa.Enum(
                "draft",
                "submitted",
                "under_review",
                "evidence_requested",
                "approved",
                "partially_approved",
                "rejected",
                name="fromclaimstate",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_state",
            sa.Enum(
                "draft",
                "submitted",
                "under_review",
                "evidence_requested",
                "approved",
                "partially_approved",
                "rejected",
                name="claimstate",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_claim_transitions_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_transitions_claim_id_claims")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_transitions")),
    )
    with op.batch_alter_table("claim_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_claim_transitions_actor_id"), ["actor_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_claim_transitions_claim_id"), ["claim_id"], unique=False
        )

    op.create_table(
        "claim_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "invoice",
                "purchase_order",
                "delivery_note",
                name="evidencekind",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("active_content", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", market.database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_evidence_claim_id_claims")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_claim_evidence_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["users.id"], name=op.f("fk_claim_evidence_uploaded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_evidence")),
    )
    with op.batch_alter_table("claim_evidence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claim_evidence_claim_id"), ["claim_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_claim_evidence_purchase_id"), ["purchase_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_claim_evidence_uploaded_by_id"), ["uploaded_by_id"], unique=False
        )

    op.create_table(
        "claim_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column("purchase_id", sa.Integer(), nullable=False),
        sa.Column("record_seq", sa.BigInteger(), nullable=False),
        sa.Column("amount", market.database.Money(precision=18, scale=2), nullable=False),
        sa.Column(
            "decision",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                name="linedecision",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", market.database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["claim_id"], ["claims.id"], name=op.f("fk_claim_lines_claim_id_claims")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_claim_lines_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_claim_lines_purchase_id_purchases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_lines")),
        sa.UniqueConstraint(
            "claim_id", "purchase_id", name=op.f("uq_claim_lines_claim_id_purchase_id")
        ),
    )
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_claim_lines_decided_by_id"), ["decided_by_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_claim_lines_purchase_id"), ["purchase_id"], unique=False
        )

    _append_only()


def downgrade():
    with op.batch_alter_table("claim_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_lines_purchase_id"))
        batch_op.drop_index(batch_op.f("ix_claim_lines_decided_by_id"))

    op.drop_table("claim_lines")
    with op.batch_alter_table("claim_evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_evidence_uploaded_by_id"))
        batch_op.drop_index(batch_op.f("ix_claim_evidence_purchase_id"))
        batch_op.drop_index(batch_op.f("ix_claim_evidence_claim_id"))

    op.drop_table("claim_evidence")
    with op.batch_alter_table("claim_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_transitions_claim_id"))
        batch_op.drop_index(batch_op.f("ix_claim_transitions_actor_id"))

    op.drop_table("claim_transitions")
    with op.batch_alter_table("claim_evidence_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claim_evidence_requests_requested_by_id"))
        batch_op.drop_index(batch_op.f("ix_claim_evidence_requests_claim_id"))

    op.drop_table("claim_evidence_requests")
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_claims_open_oem_year",
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )
        batch_op.drop_index(batch_op.f("ix_claims_parent_id"))
        batch_op.drop_index("ix_claims_oem_org_id_year")
        batch_op.drop_index(batch_op.f("ix_claims_created_by_id"))

    op.drop_table("claims")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS claim_history_append_only()")
