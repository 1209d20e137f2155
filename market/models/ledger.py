"""The near-shore ledger: subsidy policy versions, declared baselines, hash-chained entries."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model


class EntryKind(enum.StrEnum):
    RECORD = "record"  # a purchase confirmed: its amount enters T
    REVERSAL = "reversal"  # a counted purchase cancelled or held: its amount leaves T
    ADJUSTMENT = "adjustment"  # B changed (or a legacy position was settled): amount 0


class SubsidyPolicy(Model):
    """One version of the subsidy rules, in force from ``effective_from`` to ``effective_until``."""

    __tablename__ = "subsidy_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    effective_from: Mapped[date]
    effective_until: Mapped[date | None]  # inclusive; null = open-ended
    province_prefix: Mapped[str] = mapped_column(String(6))
    max_distance_km: Mapped[Decimal] = mapped_column(Numeric(8, 3))
    rate: Mapped[Decimal] = mapped_column(Numeric(8, 6))
    annual_cap: Mapped[Decimal]
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeclaredBaseline(Model):
    """An admin-declared near-shore total of an OEM for a year before the platform's data."""

    __tablename__ = "declared_baselines"
    __table_args__ = (UniqueConstraint("oem_org_id", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    year: Mapped[int]
    amount: Mapped[Decimal]
    note: Mapped[str | None] = mapped_column(String(500))
    declared_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Model):
    """One append-only, hash-chained entry: a record, a reversal or an adjustment.

    ``cause`` is unique (``record:<purchase>:<n>``, ``reversal:<purchase>:<n>``,
    ``adjust:<what changed B>``), so an effect is appended exactly once whatever the number of
    job deliveries; ``seq`` is unique, so two appenders can never fork the chain. ``format``
    names the hashed fields: 1 for entries written before the v2 rule, 2 after.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_purchase_id", "purchase_id"),
        # Covering on PostgreSQL: a year's totals (every subsidy preview and ledger batch
        # reads them) come from an index-only scan, without visiting the table.
        Index(
            "ix_ledger_entries_oem_year",
            "oem_org_id",
            "year",
            postgresql_include=["near_shore", "amount", "subsidy"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)
    format: Mapped[int] = mapped_column(default=2)
    cause: Mapped[str] = mapped_column(String(64), unique=True)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    kind: Mapped[EntryKind]
    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    supplier_org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    supplier_city_code: Mapped[str | None] = mapped_column(String(6))
    plant_city_code: Mapped[str | None] = mapped_column(String(6))
    year: Mapped[int]
    purchased_on: Mapped[date | None]
    amount: Mapped[Decimal]
    near_shore: Mapped[bool]
    reason_code: Mapped[str] = mapped_column(String(32))
    distance_km: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    policy_version: Mapped[int]
    # B(o, Y) as this entry left it; None while it is missing (the year's subsidy is held).
    baseline: Mapped[Decimal | None]
    baseline_source: Mapped[str | None] = mapped_column(String(16))
    held: Mapped[bool | None]
    near_shore_total_before: Mapped[Decimal]
    # T, I* and S* of (oem, year) after this entry (format 2).
    near_shore_total: Mapped[Decimal | None]
    increment_total: Mapped[Decimal | None]
    subsidy_total: Mapped[Decimal | None]
    # The change this entry causes: I*_after − I*_before and S*_after − S*_before.
    increment: Mapped[Decimal]
    subsidy: Mapped[Decimal]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)

    purchase = relationship("Purchase")


class LedgerTotal(Model):
    """An OEM's near-shore and subsidy totals for a year, as of the ledger's last entry.

    Written by the ledger worker in the transaction that appends the entries (under the ledger
    lock), so it always equals the sums over ``ledger_entries``; subsidy previews read it instead
    of summing a year of entries on every request. The entries stay the record: the worker
    computes new entries from their sums, never from this table.
    """

    __tablename__ = "ledger_totals"

    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    near_shore_total: Mapped[Decimal]
    increment_total: Mapped[Decimal] = mapped_column(default=Decimal("0.00"))
    subsidy_total: Mapped[Decimal]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
