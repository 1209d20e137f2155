"""Organizations, their users, and API tokens."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model
from market.models import search_tokens

if TYPE_CHECKING:
    from market.models.suppliers import Capability, Certification, Site


class OrgKind(enum.StrEnum):
    OEM = "oem"
    SUPPLIER = "supplier"


class OrgStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Role(enum.StrEnum):
    BUYER = "buyer"
    SUPPLIER = "supplier"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Organization(Model):
    """An OEM or a supplier, identified by its unified social credit code (USCC)."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OrgKind]
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    legal_name: Mapped[str] = mapped_column(String(200))
    english_name: Mapped[str | None] = mapped_column(String(200))
    city_code: Mapped[str] = mapped_column(String(6))
    status: Mapped[OrgStatus] = mapped_column(default=OrgStatus.PENDING)
    # Supplier profile (null for OEMs).
    tier: Mapped[int | None]
    description: Mapped[str | None] = mapped_column(Text)
    specialized: Mapped[bool] = mapped_column(default=False)  # 专精特新 ("little giant") flag
    employee_band: Mapped[str | None] = mapped_column(String(24))
    revenue_band: Mapped[str | None] = mapped_column(String(24))
    # A supplier may hide its profile from search without being suspended.
    listed: Mapped[bool] = mapped_column(default=True)
    # Bumped on every change to indexed data; Elasticsearch documents carry it as external version.
    version: Mapped[int] = mapped_column(default=1)
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Search tokens of the names and of the description (search.text), kept by search_tokens.
    search_names: Mapped[str | None] = mapped_column(
        Text, default=search_tokens.organization_name_tokens
    )
    search_text: Mapped[str | None] = mapped_column(
        Text, default=search_tokens.organization_text_tokens
    )

    users: Mapped[list[User]] = relationship(back_populates="organization")
    sites: Mapped[list[Site]] = relationship(
        back_populates="organization", order_by="Site.id", cascade="all, delete-orphan"
    )
    capabilities: Mapped[list[Capability]] = relationship(
        back_populates="organization", order_by="Capability.id", cascade="all, delete-orphan"
    )
    certifications: Mapped[list[Certification]] = relationship(
        back_populates="organization", order_by="Certification.id", cascade="all, delete-orphan"
    )

    @property
    def is_active(self) -> bool:
        return self.status is OrgStatus.ACTIVE

    def bump_version(self) -> None:
        """Mark indexed data as changed; the search sync compares versions."""
        self.version = (self.version or 0) + 1


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


class User(Model):
    """A person who logs in. ``session_token`` is the Flask-Login id: rotating it ends sessions."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[Role]
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    organization: Mapped[Organization | None] = relationship(back_populates="users")
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    # Flask-Login protocol.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Disabled users and users of a suspended organization cannot act."""
        if self.disabled:
            return False
        org = self.organization
        return org is None or org.status is not OrgStatus.SUSPENDED

    def get_id(self) -> str:
        return self.session_token

    def rotate_session_token(self) -> None:
        """End every session that was started with the previous token."""
        self.session_token = new_session_token()


class ApiToken(Model):
    """A bearer token for machine clients; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")


class SecurityEvent(Model):
    """Security-relevant events kept for admins (they are also logged as JSON)."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ip: Mapped[str | None] = mapped_column(String(45))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
