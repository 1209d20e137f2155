"""ledger: immutable ledger entries, the first subsidy policy, notifications

- PostgreSQL: a trigger refuses every UPDATE and DELETE on ledger_entries, so the application
  (whose role owns the table) can never change or remove an entry. SQLite (the embedded
  default): a trigger refuses UPDATE. (DELETE is left to the file's owner there: the test
  harness empties tables with DELETE on SQLite, with TRUNCATE on PostgreSQL, which row
  triggers do not see.)
- Seeds subsidy policy version 1, the programme's published terms: province prefix 44,
  200 km, rate 0.01, annual cap 2,000,000.00 CNY per OEM, in force from 2020-01-01.
- notifications: messages for organizations (certification expiry warnings).

Revision ID: 0005_ledger
Revises: 0001
"""
from datetime import date, datetime, timezone
from decimal import Decimal

from alembic import op
import sqlalchemy as sa

import market.database


# revision identifiers, used by Alembic.
revision = '0005_ledger'
down_revision = '0001'
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_entries_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only: % refused on ledger_entries', TG_OP;
END
$$
"""
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


def upgrade():
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('certification_expiring', 'certification_expired', name='notificationkind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('subject_type', sa.String(length=40), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=160), nullable=False),
    sa.Column('created_at', market.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read_at', market.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_notifications_organization_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_notifications_dedupe_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_organization_id'), ['organization_id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)

    policies = sa.table(
        'subsidy_policies',
        sa.column('version', sa.Integer()),
        sa.column('effective_from', sa.Date()),
        sa.column('effective_until', sa.Date()),
        sa.column('province_prefix', sa.String()),
        sa.column('max_distance_km', sa.Numeric(8, 3)),
        sa.column('rate', sa.Numeric(8, 6)),
        sa.column('annual_cap', market.database.Money()),
        sa.column('note', sa.String()),
        sa.column('created_at', market.database.UTCDateTime()),
    )
    if not bind.execute(sa.select(sa.func.count()).select_from(policies)).scalar():
        op.bulk_insert(policies, [{
            'version': 1,
            'effective_from': date(2020, 1, 1),
            'effective_until': None,
            'province_prefix': '44',
            'max_distance_km': Decimal('200.000'),
            'rate': Decimal('0.010000'),
            'annual_cap': Decimal('2000000.00'),
            'note': 'Programme terms v1: Guangdong (44), 200 km, 1%, cap 2,000,000.00 CNY',
            'created_at': datetime.now(timezone.utc),
        }])


def downgrade():
    bind = op.get_bind()
    op.execute('DROP TRIGGER IF EXISTS ledger_entries_immutable' + (' ON ledger_entries' if bind.dialect.name == 'postgresql' else ''))
    if bind.dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS ledger_entries_immutable()')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_organization_id'))
    op.drop_table('notifications')
