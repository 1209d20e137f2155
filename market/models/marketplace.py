"""Demands (RFQs), quotes, purchases and idempotency records."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model
from market.models import search_tokens
from market.models.accounts import Organization
from market.models.suppliers import Site


class DemandState(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    AWARDED = "awarded"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class QuoteStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    AWARDED = "awarded"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"


class PurchaseSource(enum.StrEnum):
    AWARD = "award"
    DIRECT = "direct"


class PurchaseStatus(enum.StrEnum):
    RECORDED = "recorded"
    CANCELLED = "cancelled"


class Demand(Model):
    """A buyer's request for quotes for parts delivered to one of its plants."""

    __tablename__ = "demands"
    __table_args__ = (Index("ix_demands_state_need_by", "state", "need_by"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    plant_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    category: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    quantity: Mapped[int]
    unit: Mapped[str] = mapped_column(String(24))
    target_unit_price: Mapped[Decimal | None]
    required_standards: Mapped[list[str]] = mapped_column(JSON, default=list)
    need_by: Mapped[date]
    radius_km: Mapped[int] = mapped_column(default=200)
    # {"1": 1.0, "2": 0.8, "3": 0.6}; null means the default weights.
    tier_weights: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[DemandState] = mapped_column(default=DemandState.DRAFT)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # Search tokens of the title and description (search.text), kept by search_tokens.
    search_text: Mapped[str | None] = mapped_column(Text, default=search_tokens.demand_text_tokens)

    organization: Mapped[Organization] = relationship()
    plant: Mapped[Site] = relationship()
    quotes: Mapped[list[Quote]] = relationship(back_populates="demand", order_by="Quote.id")


class Quote(Model):
    """A supplier's offer on an open demand."""

    __tablename__ = "quotes"
    __table_args__ = (UniqueConstraint("demand_id", "organization_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    demand_id: Mapped[int] = mapped_column(ForeignKey("demands.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    unit_price: Mapped[Decimal]
    quantity: Mapped[int]
    lead_time_days: Mapped[int]
    valid_until: Mapped[date]
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[QuoteStatus] = mapped_column(default=QuoteStatus.SUBMITTED)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    demand: Mapped[Demand] = relationship(back_populates="quotes")
    organization: Mapped[Organization] = relationship()
    site: Mapped[Site] = relationship()


class Purchase(Model):
    """A purchase by an OEM from a supplier; immutable once recorded (cancel is its own action)."""

    __tablename__ = "purchases"
    __table_args__ = (
        # One invoice is one purchase: a repeated invoice would be counted for subsidy twice.
        UniqueConstraint("supplier_org_id", "invoice_number"),
        Index("ix_purchases_oem_purchased_on", "oem_org_id", "purchased_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    supplier_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    supplier_site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    plant_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    category: Mapped[str] = mapped_column(String(120))
    amount: Mapped[Decimal]
    purchased_on: Mapped[date]
    invoice_number: Mapped[str] = mapped_column(String(64))
    po_number: Mapped[str | None] = mapped_column(String(64))
    quote_id: Mapped[int | None] = mapped_column(ForeignKey("quotes.id"), unique=True)
    source: Mapped[PurchaseSource]
    status: Mapped[PurchaseStatus] = mapped_column(default=PurchaseStatus.RECORDED)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(500))

    oem: Mapped[Organization] = relationship(foreign_keys=[oem_org_id])
    supplier: Mapped[Organization] = relationship(foreign_keys=[supplier_org_id])
    supplier_site: Mapped[Site] = relationship(foreign_keys=[supplier_site_id])
    plant: Mapped[Site] = relationship(foreign_keys=[plant_id])


class IdempotencyRecord(Model):
    """The stored response to a request sent with an ``Idempotency-Key`` header."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(120))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int]
    response_body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
