"""Webhook endpoints of an organisation, one delivery per (endpoint, event), and its attempts.

An endpoint is an organisation's HTTPS receiver subscribed to some event kinds. The webhooks
sink (``workers/webhooks.py``) writes a :class:`WebhookDelivery` for each subscribed endpoint
when an event is dispatched; the delivery keeps the exact body it sends (so retries and
redeliveries are byte-identical and carry the same ``webhook-id``) and the outbox row of its
next attempt. Each try is a :class:`WebhookAttempt`: the delivery log the organisation reads.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.database import utcnow
from market.extensions import Model


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # an attempt is due now or later
    DELIVERED = "delivered"  # a receiver answered 2xx
    FAILED = "failed"  # given up for now: the endpoint was disabled (re-enabling retries it)


class WebhookEndpoint(Model):
    """A receiver URL of one organisation, its topics and its signing secrets (sealed)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)  # EventKind values or "*"
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    disabled_at: Mapped[datetime | None]
    # Sealed with a key derived from SECRET_KEY (market.services.webhooks); never returned.
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    failure_streak: Mapped[int] = mapped_column(default=0)  # failed attempts since a success
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Model):
    """One event for one endpoint: the body to send and where its attempts stand."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int]  # the event's outbox id: the webhook-id and the sequence number
    event_kind: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent, every time
    status: Mapped[DeliveryStatus] = mapped_column(default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)  # failed tries in a row (this round)
    next_attempt_at: Mapped[datetime | None]
    outbox_id: Mapped[int | None]  # the outbox row of the next attempt (others are stale)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    endpoint: Mapped[WebhookEndpoint] = relationship()
    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookAttempt(Model):
    """One HTTP request of a delivery and what came back (the first 4 KB at most)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded: Mapped[bool]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
