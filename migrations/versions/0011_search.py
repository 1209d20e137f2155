"""search: precomputed search tokens of organizations (names, description) and demands

Revision ID: 0011_search
Revises: 0010_teams
Create Date: 2026-12-04 16:50:00

The tokens are computed in Python (jieba segmentation, stemming: search.text) for the rows
already there; new and changed rows get them from the models (market.models.search_tokens).

"""

import sqlalchemy as sa
from alembic import op

revision = "0011_search"
down_revision = "0010_teams"
branch_labels = None
depends_on = None

_BATCH = 1000


def _backfill(table: str, columns: dict[str, tuple[str, ...]]) -> None:
    from search.text import index_tokens

    connection = op.get_bind()
    sources = sorted({name for fields in columns.values() for name in fields})
    rows = connection.execute(sa.text(f"SELECT id, {', '.join(sources)} FROM {table}")).mappings()
    updates = []
    statement = sa.text(
        f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in columns)} WHERE id = :id"
    )
    for row in rows.all():
        update = {"id": row["id"]}
        for column, fields in columns.items():
            update[column] = index_tokens(*(row[name] for name in fields))
        updates.append(update)
        if len(updates) == _BATCH:
            connection.execute(statement, updates)
            updates = []
    if updates:
        connection.execute(statement, updates)


def upgrade():
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_names", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    with op.batch_alter_table("demands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    _backfill(
        "organizations",
        {"search_names": ("legal_name", "english_name"), "search_text": ("description",)},
    )
    _backfill("demands", {"search_text": ("title", "description")})


def downgrade():
    with op.batch_alter_table("demands", schema=None) as batch_op:
        batch_op.drop_column("search_text")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("search_text")
        batch_op.drop_column("search_names")
