"""Organizations, their users, and API tokens."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
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


class OrgRole(enum.StrEnum):
    """A member's role inside their organisation (staff users have none)."""

    ADMIN = "admin"  # manages the organisation's members and invitations
    MEMBER = "member"


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
    # Delivery performance score in basis points (5000..10000) as of the last delivery
    # recorded; null: no deliveries (the ranking factor then counts it as neutral).
    performance_bp: Mapped[int | None]
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

    @property
    def members(self) -> list[User]:
        """Current members (removed ones stay as rows, for the audit log and the purchases)."""
        return [user for user in self.users if user.removed_at is None]

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
    # Inside the organisation: org admin or member (null for auditors and admins).
    org_role: Mapped[OrgRole | None]
    # Auditors only: the authority whose jurisdiction bounds what they see.
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"), index=True)
    # Set when an org admin removed the member (the row stays: the audit log names it).
    removed_at: Mapped[datetime | None]
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # The language of the email sent to them (zh-CN or en); the inbox follows Accept-Language.
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN", server_default="zh-CN")

    organization: Mapped[Organization | None] = relationship(back_populates="users")
    authority: Mapped[Authority | None] = relationship(back_populates="auditors")
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    # Flask-Login protocol.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_org_admin(self) -> bool:
        return self.org_role is OrgRole.ADMIN and self.removed_at is None

    @property
    def is_active(self) -> bool:
        """Disabled or removed users and users of a suspended organization cannot act."""
        if self.disabled or self.removed_at is not None:
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


class AuthSession(Model):
    """One signed-in browser session; the signed cookie carries its id.

    Kept server-side so that signing out ends *this* session for every copy of its cookie, and
    so that the idle timeout and the absolute lifetime are enforced by the server.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the random session id held in the cookie: a database dump opens no session.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(45))


class Authority(Model):
    """A government body whose auditors see only its jurisdiction (GB/T 2260 code prefixes).

    ``"44"`` is the whole province; ``"440100"`` is Guangzhou.
    """

    __tablename__ = "authorities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    city_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    auditors: Mapped[list[User]] = relationship(back_populates="authority", order_by="User.id")


class Invitation(Model):
    """A one-time link that lets a colleague join an organisation; only its SHA-256 is stored."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    org_role: Mapped[OrgRole]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    organization: Mapped[Organization] = relationship()

    @property
    def state(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "pending"


class AuditLogEntry(Model):
    """Who did what to which organisation, member, invitation, token, policy, baseline or claim.

    Append-only; ``organization_id`` is the organisation the action concerns (its org admins
    read it), null for platform-wide actions (admins only).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(String(80))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityEvent(Model):
    """Security-relevant events kept for admins (they are also logged as JSON)."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ip: Mapped[str | None] = mapped_column(String(45))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
