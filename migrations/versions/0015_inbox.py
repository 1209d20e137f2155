"""inbox: per-user notifications, preferences, email deliveries, notice keys, users.locale

The organisation-level ``notifications`` table (certificate expiry notices, read by no route)
is replaced: each of its rows becomes an inbox row for every current member of its
organisation (kind ``certification.expiring``/``certification.expired``, the old English
message kept in ``data.message``, unread), and its ``dedupe_key``s move to ``notice_keys`` so
the expiry job does not announce those certificates a second time.

Revision ID: 0015_inbox
Revises: 0014_claims
"""

import sqlalchemy as sa
from alembic import op

import market.database

revision = "0015_inbox"
down_revision = "0014_claims"
branch_labels = None
depends_on = None

UTC_DATETIME = market.database.UTCDateTime(timezone=True)
OLD_KINDS = {
    "certification_expiring": "certification.expiring",
    "certification_expired": "certification.expired",
}


def _create_tables():
    op.create_table(
        "inbox_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("subject_type", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("read_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_inbox_notifications_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_inbox_notifications_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_notifications")),
        sa.UniqueConstraint("user_id", "event_id", name="uq_inbox_notifications_user_event"),
    )
    with op.batch_alter_table("inbox_notifications") as batch_op:
        batch_op.create_index("ix_inbox_notifications_user_id_id", ["user_id", "id"])
        batch_op.create_index(
            batch_op.f("ix_inbox_notifications_organization_id"), ["organization_id"]
        )
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("inbox", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_preferences_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "kind", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "notice_keys",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_notice_keys")),
    )
    op.create_table(
        "email_deliveries",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("sent_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_email_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_email_deliveries_message_id")),
    )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column("locale", sa.String(length=8), nullable=False, server_default="zh-CN")
        )


def _move_old_notifications():
    bind = op.get_bind()
    old = bind.execute(
        sa.text(
            "SELECT n.organization_id, n.kind, n.subject_type, n.subject_id, n.message, "
            "n.dedupe_key, n.created_at, u.id AS user_id FROM notifications n "
            "LEFT JOIN users u ON u.organization_id = n.organization_id "
            "AND u.removed_at IS NULL ORDER BY n.id, u.id"
        )
    ).all()
    inbox = sa.table(
        "inbox_notifications",
        sa.column("user_id", sa.Integer()),
        sa.column("organization_id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("subject_type", sa.String()),
        sa.column("subject_id", sa.Integer()),
        sa.column("data", sa.JSON()),
        sa.column("created_at", UTC_DATETIME),
    )
    keys = sa.table("notice_keys", sa.column("key", sa.String()), sa.column("created_at", UTC_DATETIME))
    seen: set[str] = set()
    key_rows, inbox_rows = [], []
    for row in old:
        if row.dedupe_key not in seen:
            seen.add(row.dedupe_key)
            key_rows.append({"key": row.dedupe_key, "created_at": row.created_at})
        if row.user_id is not None:
            inbox_rows.append(
                {
                    "user_id": row.user_id,
                    "organization_id": row.organization_id,
                    "kind": OLD_KINDS.get(row.kind, row.kind),
                    "subject_type": row.subject_type,
                    "subject_id": row.subject_id,
                    "data": {"message": row.message},
                    "created_at": row.created_at,
                }
            )
    if key_rows:
        op.bulk_insert(keys, key_rows)
    if inbox_rows:
        op.bulk_insert(inbox, inbox_rows)


def upgrade():
    _create_tables()
    _move_old_notifications()
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_organization_id"))
    op.drop_table("notifications")


def downgrade():
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "certification_expiring",
                "certification_expired",
                name="notificationkind",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("subject_type", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("read_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notifications_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_organization_id"), ["organization_id"])
    # The inbox rows are not turned back into organisation notices (a downgrade loses them).
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("locale")
    op.drop_table("email_deliveries")
    op.drop_table("notice_keys")
    op.drop_table("notification_preferences")
    with op.batch_alter_table("inbox_notifications") as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_notifications_organization_id"))
        batch_op.drop_index("ix_inbox_notifications_user_id_id")
    op.drop_table("inbox_notifications")
