"""Finding and deleting a previous demo world (``flask seed-demo --reset``).

The demo's organizations are found by their fictional USCCs (``names.DEMO_USCC_LIKE``), its users
by those organizations and the ``demo.test`` mail domain. Their rows go children first; rows of
other tables that point at them are found through the foreign keys (nullable references cleared,
the others deleted), so a table added later does not break ``--reset``.

The ledger is never deleted from, not even for a demo: its entries are append-only (the
application's database role may not DELETE them) and an auditor's checkpoints cover them; so
are a claim's history and evidence, and a quote's revisions. A demo world that such rows name
is not reset: ``--reset`` refuses and names ``--fresh``, which builds the demo in a new
database. A world seeded with ``--no-purchases`` has nothing in the ledger and can be reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Column, Table, delete, exists, func, or_, select, update

from market.database_roles import APPEND_ONLY_TABLES, INSERT_ONLY_TABLES
from market.demo.names import DEMO_EMAIL_DOMAIN, DEMO_USCC_LIKE
from market.errors import Conflict
from market.extensions import db
from market.models import (
    ApiToken,
    Capability,
    Certification,
    DeclaredBaseline,
    Demand,
    IdempotencyRecord,
    Organization,
    Purchase,
    Quote,
    SecurityEvent,
    Site,
    User,
)


def _demo_orgs() -> Any:
    return select(Organization.id).where(Organization.uscc.like(DEMO_USCC_LIKE))


def _demo_users() -> Any:
    return select(User.id).where(
        or_(
            User.organization_id.in_(_demo_orgs()),
            User.email.like(f"%@{DEMO_EMAIL_DOMAIN}"),
        )
    )


def demo_world_exists() -> bool:
    return bool(
        db.session.scalar(select(exists(_demo_orgs())))
        or db.session.scalar(select(exists(_demo_users())))
    )


def append_only_rows_of_demo() -> int:
    """How many rows of the append-only tables (the ledger, a claim's history and evidence, a
    quote's revisions) name a demo organization, user, site or quote."""
    conditions: dict[Table, list[Any]] = {}
    for table, column, demo_ids in _references(_demo_orgs(), _demo_users(), with_quotes=True):
        if table.name in PROTECTED_TABLES:
            conditions.setdefault(table, []).append(column.in_(demo_ids))
    return sum(
        db.session.scalar(select(func.count()).select_from(table).where(or_(*where))) or 0
        for table, where in conditions.items()
    )


def delete_demo_world() -> None:
    """Remove the previous demo world (children first); refused if append-only rows name it."""
    counted = append_only_rows_of_demo()
    if counted:
        raise Conflict(
            f"The ledger and other append-only histories hold {counted} rows of the demo world "
            "and are never deleted from: build a new demo database with --fresh instead of "
            "--reset."
        )
    for statement in _deletions(_demo_orgs(), _demo_users()):
        db.session.execute(statement.execution_options(synchronize_session=False))


def _deletions(orgs: Any, users: Any) -> list[Any]:
    """The statements that delete the demo world, in an order the foreign keys accept."""
    demands = select(Demand.id).where(Demand.organization_id.in_(orgs))
    quotes = select(Quote.id).where(
        or_(Quote.organization_id.in_(orgs), Quote.demand_id.in_(demands))
    )
    return [
        delete(IdempotencyRecord).where(IdempotencyRecord.user_id.in_(users)),
        delete(ApiToken).where(ApiToken.user_id.in_(users)),
        delete(SecurityEvent).where(SecurityEvent.user_id.in_(users)),
        delete(Purchase).where(
            or_(
                Purchase.oem_org_id.in_(orgs),
                Purchase.supplier_org_id.in_(orgs),
                Purchase.quote_id.in_(quotes),
            )
        ),
        delete(Quote).where(Quote.id.in_(quotes)),
        delete(Demand).where(Demand.id.in_(demands)),
        delete(Certification).where(Certification.organization_id.in_(orgs)),
        delete(Capability).where(Capability.organization_id.in_(orgs)),
        delete(Site).where(Site.organization_id.in_(orgs)),
        delete(DeclaredBaseline).where(DeclaredBaseline.oem_org_id.in_(orgs)),
        # Rows of real organizations that a demo user created stay, without the author.
        update(Demand).where(Demand.created_by_id.in_(users)).values(created_by_id=None),
        update(Quote).where(Quote.created_by_id.in_(users)).values(created_by_id=None),
        update(Purchase).where(Purchase.created_by_id.in_(users)).values(created_by_id=None),
        update(DeclaredBaseline)
        .where(DeclaredBaseline.declared_by_id.in_(users))
        .values(declared_by_id=None),
        *_other_references(orgs, users),
        delete(User).where(User.id.in_(users)),
        delete(Organization).where(Organization.id.in_(orgs)),
    ]


# Never UPDATE/DELETE (the application's role may not): the reset refuses if they name the demo.
PROTECTED_TABLES = frozenset(APPEND_ONLY_TABLES) | frozenset(INSERT_ONLY_TABLES)
HANDLED_TABLES = frozenset(
    {
        "organizations", "users", "sites", "capabilities", "certifications", "demands", "quotes",
        "purchases", "idempotency_records", "api_tokens", "security_events",
        "declared_baselines",
    }
)  # fmt: skip


def _references(
    orgs: Any, users: Any, *, with_quotes: bool = False
) -> Iterator[tuple[Table, Column[Any], Any]]:
    """(table, column, demo ids) of every foreign key of the tables not handled by name that
    points at organizations, users or sites (and quotes, ``with_quotes``)."""
    sites = select(Site.id).where(Site.organization_id.in_(orgs))
    targets = {"organizations": orgs, "users": users, "sites": sites}
    if with_quotes:
        demands = select(Demand.id).where(Demand.organization_id.in_(orgs))
        targets["quotes"] = select(Quote.id).where(
            or_(Quote.organization_id.in_(orgs), Quote.demand_id.in_(demands))
        )
    for table in db.metadata.sorted_tables:
        if table.name in HANDLED_TABLES:
            continue
        for key in table.foreign_keys:
            demo_ids = targets.get(key.column.table.name)
            if demo_ids is not None:
                yield table, key.parent, demo_ids


def _other_references(orgs: Any, users: Any) -> list[Any]:
    """Rows of other tables (e.g. notifications) that point at demo organizations, users or
    sites: nullable references are cleared, the other rows deleted, so the demo rows can go.
    Append-only tables are left alone (the reset was refused if they name the demo)."""
    statements: list[Any] = []
    for table, column, demo_ids in _references(orgs, users):
        if table.name in PROTECTED_TABLES:
            continue
        if column.nullable:
            statements.append(
                table.update().where(column.in_(demo_ids)).values({column.name: None})
            )
        else:
            statements.append(table.delete().where(column.in_(demo_ids)))
    return statements
