"""Sites (supplier plants and warehouses, OEM plants), capabilities and certifications."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model

if TYPE_CHECKING:
    from market.models.accounts import Organization


class SiteKind(enum.StrEnum):
    PLANT = "plant"
    WAREHOUSE = "warehouse"


class CertStatus(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class CertVerification(enum.StrEnum):
    """An admin's review of a certificate: only ``verified`` ones count for matching.

    A new certificate, and one whose stated facts change, is ``pending`` until an admin verifies
    or rejects it (with a reason); a declaration alone never makes a supplier eligible.
    """

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Site(Model):
    """A located place of an organization: WGS-84 coordinates, a GB/T 2260 city code."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    kind: Mapped[SiteKind] = mapped_column(default=SiteKind.PLANT)
    name: Mapped[str] = mapped_column(String(200))
    city_code: Mapped[str] = mapped_column(String(6))
    address: Mapped[str | None] = mapped_column(String(300))
    lat: Mapped[float]
    lon: Mapped[float]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="sites")


class Capability(Model):
    """A supplier can make parts of a taxonomy category (and so of its descendants' parent)."""

    __tablename__ = "capabilities"
    __table_args__ = (UniqueConstraint("organization_id", "category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    category: Mapped[str] = mapped_column(String(120), index=True)
    processes: Mapped[list[str]] = mapped_column(JSON, default=list)
    annual_capacity: Mapped[int | None]
    capacity_unit: Mapped[str | None] = mapped_column(String(24))
    # Chips designed and made by a domestic (PRC) company: only under ic.chips (the supplier
    # sets it); frozen onto purchases when they are created (Purchase.chip_domestic_origin).
    domestic_origin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="capabilities")


class Certification(Model):
    """A certificate or qualification; ``valid_until`` is null for ones without expiry (AEC-Q)."""

    __tablename__ = "certifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    standard: Mapped[str] = mapped_column(String(40), index=True)
    level: Mapped[str | None] = mapped_column(String(40))
    number: Mapped[str | None] = mapped_column(String(80))
    issuer: Mapped[str | None] = mapped_column(String(200))
    valid_from: Mapped[date]
    valid_until: Mapped[date | None]
    scope: Mapped[str | None] = mapped_column(Text)
    # Indexed: without it every deleted site scans all certifications (foreign-key check).
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    status: Mapped[CertStatus] = mapped_column(default=CertStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The admin review (see CertVerification); indexed for the review queue.
    verification: Mapped[CertVerification] = mapped_column(
        default=CertVerification.PENDING, index=True
    )
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None]
    review_reason: Mapped[str | None] = mapped_column(String(500))

    organization: Mapped[Organization] = relationship(back_populates="certifications")
    site: Mapped[Site | None] = relationship()

    def valid_through(self, start: date, end: date) -> bool:
        """Active, verified, already valid on ``start`` and still valid on ``end``."""
        return (
            self.status is CertStatus.ACTIVE
            and self.verification is CertVerification.VERIFIED
            and self.valid_from <= start
            and (self.valid_until is None or self.valid_until >= end)
        )
