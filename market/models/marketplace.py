"""Demands (RFQs), quotes, purchases and idempotency records."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model
from market.models import search_tokens
from market.models.accounts import Organization, Role
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
    """``pending_confirmation`` until the other party confirms (``confirmed``, the only state
    the ledger counts) or disputes it (``disputed``, final); ``cancelled`` by its buyer."""

    PENDING_CONFIRMATION = "pending_confirmation"
    CONFIRMED = "confirmed"
    DISPUTED = "disputed"
    CANCELLED = "cancelled"


class PurchaseParty(enum.StrEnum):
    """Which side of a purchase created it (the other side confirms it)."""

    OEM = "oem"
    SUPPLIER = "supplier"


class Confirmation(enum.StrEnum):
    """How a purchase came to be confirmed."""

    COUNTERPARTY = "counterparty"  # the other party confirmed it
    AWARD = "award"  # an award of the supplier's own quote
    LEGACY_V1 = "legacy_v1"  # recorded before v2 by the buyer alone (migration 0009)


class InvoiceReview(enum.StrEnum):
    """The review of a (supplier, invoice number) that two OEMs recorded."""

    PENDING = "pending"  # DUPLICATE_INVOICE: waits for an auditor
    RELEASED = "released"  # an auditor found it genuine: the ledger may count it
    REJECTED = "rejected"  # an auditor refused it: never counted


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
    # Suppliers never see the target price when set (buyers, auditors and admins do).
    hide_target_price: Mapped[bool] = mapped_column(default=False)
    required_standards: Mapped[list[str]] = mapped_column(JSON, default=list)
    need_by: Mapped[date]
    radius_km: Mapped[int] = mapped_column(default=200)
    # {"1": 1.0, "2": 0.8, "3": 0.6}; null means the default weights.
    tier_weights: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Opt-in: multiply the score by the supplier's delivery performance factor (f_p).
    rank_by_performance: Mapped[bool] = mapped_column(default=False)
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

    def target_price_for(self, role: Role | None) -> Decimal | None:
        """The target unit price as a user of ``role`` may see it (None: unknown viewer)."""
        if self.hide_target_price and role in (None, Role.SUPPLIER):
            return None
        return self.target_unit_price


# A quote that still counts: one per (demand, supplier); a withdrawn or rejected one does not.
ACTIVE_QUOTE_STATUSES = ("submitted", "awarded")


class Quote(Model):
    """A supplier's offer on an open demand."""

    __tablename__ = "quotes"
    __table_args__ = (
        # One active quote per supplier and demand; after a withdrawal it may quote again.
        Index(
            "uq_quotes_active_demand_id_organization_id",
            "demand_id",
            "organization_id",
            unique=True,
            postgresql_where=text(f"status IN {ACTIVE_QUOTE_STATUSES!r}"),
            sqlite_where=text(f"status IN {ACTIVE_QUOTE_STATUSES!r}"),
        ),
    )

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
    # The current version's number (1 when quoted; each revision adds one) and when it was made.
    revision: Mapped[int] = mapped_column(default=1)
    revised_at: Mapped[datetime | None]

    demand: Mapped[Demand] = relationship(back_populates="quotes")
    organization: Mapped[Organization] = relationship()
    site: Mapped[Site] = relationship()


class QuoteRevision(Model):
    """One version of a quote as it was submitted: the first and every revision, never changed
    (the application's database role may only read and insert these rows)."""

    __tablename__ = "quote_revisions"
    __table_args__ = (UniqueConstraint("quote_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    quote_id: Mapped[int] = mapped_column(ForeignKey("quotes.id"), index=True)
    revision: Mapped[int]
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    unit_price: Mapped[Decimal]
    quantity: Mapped[int]
    lead_time_days: Mapped[int]
    valid_until: Mapped[date]
    note: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Purchase(Model):
    """A purchase by an OEM from a supplier, with the facts its verdict depends on frozen.

    ``site_*`` and ``plant_*`` copy the supplier site's city code and coordinates and the
    plant's when the purchase is created: editing or moving a site later never changes what
    the ledger decides. Amount, category and date never change; confirming, disputing,
    cancelling and the invoice review are the only transitions.
    """

    __tablename__ = "purchases"
    __table_args__ = (
        # One invoice is one purchase per (OEM, supplier); the same supplier invoice recorded
        # by another OEM is accepted but held for an auditor (``review``).
        UniqueConstraint("oem_org_id", "supplier_org_id", "invoice_number"),
        Index("ix_purchases_supplier_invoice", "supplier_org_id", "invoice_number"),
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
    status: Mapped[PurchaseStatus] = mapped_column(default=PurchaseStatus.PENDING_CONFIRMATION)
    created_by_party: Mapped[PurchaseParty] = mapped_column(default=PurchaseParty.OEM)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The frozen facts (see the class docstring).
    site_city_code: Mapped[str] = mapped_column(String(6))
    site_lat: Mapped[float]
    site_lon: Mapped[float]
    plant_city_code: Mapped[str] = mapped_column(String(6))
    plant_lat: Mapped[float]
    plant_lon: Mapped[float]
    # Under ic.chips: whether the supplier's capability was of domestic origin when the
    # purchase was created (null for other categories); the chip-localisation KPI reads it.
    chip_domestic_origin: Mapped[bool | None]
    confirmation: Mapped[Confirmation | None]
    confirmed_at: Mapped[datetime | None]
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    disputed_at: Mapped[datetime | None]
    disputed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    dispute_reason: Mapped[str | None] = mapped_column(String(500))
    review: Mapped[InvoiceReview | None]
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(500))

    @property
    def countable(self) -> bool:
        """Whether the ledger counts this purchase now: confirmed, not cancelled, and not
        held or rejected by an invoice review."""
        return self.status is PurchaseStatus.CONFIRMED and self.review in (
            None,
            InvoiceReview.RELEASED,
        )

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
