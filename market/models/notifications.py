"""Each person's inbox, their notification preferences, and the email deliveries made.

An inbox row is one event (``market.services.events``) for one user, unique per (user, event):
the dispatch job that writes it may run twice and the inbox still holds it once. The row keeps
the event's facts (``data``), not a rendered text, so the title and body are written in the
reader's language when they read it. ``NoticeKey`` keeps the scheduled jobs' one-off notices
one-off (a certificate's "expires in 30 days" is announced once, however often the job runs).
``EmailDelivery`` records an email as sent, so a retried ``email.send`` job does not send again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class InboxNotification(Model):
    """One event in one user's inbox; ``event_id`` is the event's outbox row id (null for the
    notices migrated from the old organisation-level table)."""

    __tablename__ = "inbox_notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "event_id", name="uq_inbox_notifications_user_event"),
        Index("ix_inbox_notifications_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    event_id: Mapped[int | None]
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(48))  # an EventKind value
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class NotificationPreference(Model):
    """A user's choice for one event kind; kinds without a row use the defaults in
    ``market.services.notifications``."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(48), primary_key=True)
    inbox: Mapped[bool]
    email: Mapped[bool]


class NoticeKey(Model):
    """A scheduled notice already announced (e.g. ``certification-expiring:<id>:<date>:30``)."""

    __tablename__ = "notice_keys"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailDelivery(Model):
    """An ``email.send`` outbox row whose message went out (SMTP accepted it, or the ``.eml``
    file was written); a retried job finds it and sends nothing."""

    __tablename__ = "email_deliveries"

    outbox_id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    transport: Mapped[str] = mapped_column(String(8))  # "smtp" or "file"
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
