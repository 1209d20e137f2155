"""events: outbox topics for domain events, email and webhook deliveries

Revision ID: 0013_events
Revises: 0012_checkpoints
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_events"
down_revision = "0012_checkpoints"
branch_labels = None
depends_on = None

OLD = ("ledger.record", "ledger.reverse", "ledger.rebase", "search.sync")
NEW = (*OLD, "event.dispatch", "email.send", "webhook.deliver")


def _topic(values):
    return sa.Enum(*values, name="outboxtopic", native_enum=False, create_constraint=True, length=24)


def upgrade():
    with op.batch_alter_table("outbox_events") as batch:
        batch.alter_column("topic", type_=_topic(NEW), existing_type=_topic(OLD))


def downgrade():
    with op.batch_alter_table("outbox_events") as batch:
        batch.alter_column("topic", type_=_topic(OLD), existing_type=_topic(NEW))
