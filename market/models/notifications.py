"""Notifications kept for an organization (certification expiry warnings, for now)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class NotificationKind(enum.StrEnum):
    CERTIFICATION_EXPIRING = "certification_expiring"
    CERTIFICATION_EXPIRED = "certification_expired"


class Notification(Model):
    """A message for an organization. ``dedupe_key`` makes a scheduled job's notice one-off:
    running the job twice (or on two schedulers) never notifies twice."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    kind: Mapped[NotificationKind]
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[int]
    message: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]
