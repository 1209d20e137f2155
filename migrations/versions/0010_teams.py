"""teams: org roles, invitations, authorities with jurisdictions, server-side sessions, audit log

Each organisation's existing users become its org admins; API tokens that never expired now
expire 90 days after this migration (the new default lifetime).

Revision ID: 0010_teams
Revises: 0009_subsidy_v2
Create Date: 2026-12-04 16:40:00

"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0010_teams"
down_revision = "0009_subsidy_v2"
branch_labels = None
depends_on = None

UTC_DATETIME = market.database.UTCDateTime(timezone=True)


def _org_role() -> sa.Enum:
    return sa.Enum(
        "admin", "member", name="orgrole", native_enum=False, create_constraint=True, length=24
    )


def upgrade():
    op.create_table(
        "authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("city_codes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorities")),
        sa.UniqueConstraint("name", name=op.f("uq_authorities_name")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("org_role", _org_role(), nullable=True))
        batch_op.add_column(sa.Column("authority_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("removed_at", UTC_DATETIME, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_users_authority_id_authorities"), "authorities", ["authority_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_users_authority_id"), ["authority_id"], unique=False)
    # Until now an organisation had one user: it becomes the organisation's admin.
    op.execute("UPDATE users SET org_role = 'admin' WHERE organization_id IS NOT NULL")
    # Tokens used to default to no expiry; give them the new default lifetime from today.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE api_tokens SET expires_at = now() + interval '90 days' "
            "WHERE expires_at IS NULL AND revoked_at IS NULL"
        )
    else:
        op.execute(
            "UPDATE api_tokens SET expires_at = datetime('now', '+90 days') "
            "WHERE expires_at IS NULL AND revoked_at IS NULL"
        )

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("ended_at", UTC_DATETIME, nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_auth_sessions_key_hash")),
    )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("org_role", _org_role(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("accepted_at", UTC_DATETIME, nullable=True),
        sa.Column("accepted_user_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_invitations_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(["invited_by_id"], ["users.id"], name=op.f("fk_invitations_invited_by_id_users")),
        sa.ForeignKeyConstraint(
            ["accepted_user_id"], ["users.id"], name=op.f("fk_invitations_accepted_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invitations_invited_by_id"), ["invited_by_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_audit_log_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_audit_log_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)


def downgrade():
    op.drop_table("audit_log")
    op.drop_table("invitations")
    op.drop_table("auth_sessions")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_authority_id"))
        batch_op.drop_constraint(batch_op.f("fk_users_authority_id_authorities"), type_="foreignkey")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("authority_id")
        batch_op.drop_column("org_role")
    op.drop_table("authorities")
