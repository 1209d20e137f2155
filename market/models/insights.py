"""Chain intelligence facts: declared vehicle output (整零比's numerator) and delivery records.

Declared vehicle output is what an OEM built in a year, in CNY, as an admin declared it (the
platform never sees vehicle sales); the KPI divides the OEM's Guangdong parts purchases by it.
Delivery records are the buyer's account of how a purchase arrived (promised and delivered
dates, accepted and rejected quantities): the supplier scorecard and the optional ranking
factor are computed from them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class DeclaredVehicleOutput(Model):
    """An OEM's vehicle output of a year (value in CNY, optionally the number of vehicles),
    declared by an admin; a new declaration replaces the old one (the audit log keeps both)."""

    __tablename__ = "declared_vehicle_outputs"
    __table_args__ = (UniqueConstraint("oem_org_id", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    year: Mapped[int]
    output_value: Mapped[Decimal]
    vehicles: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(String(500))
    declared_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Model):
    """One delivery against a purchase, entered by the buyer (append-only: a correction is
    another record). ``supplier_org_id`` copies the purchase's supplier for the scorecard."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_supplier_delivered", "supplier_org_id", "delivered_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    supplier_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    promised_on: Mapped[date]
    delivered_on: Mapped[date]
    accepted_qty: Mapped[int]
    rejected_qty: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(500))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
