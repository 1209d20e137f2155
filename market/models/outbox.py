"""The transactional outbox: work for the workers, committed with the business rows."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxTopic(enum.StrEnum):
    LEDGER_RECORD = "ledger.record"
    LEDGER_REVERSE = "ledger.reverse"
    LEDGER_REBASE = "ledger.rebase"  # a declared baseline changed: aggregate = baseline row
    SEARCH_SYNC = "search.sync"
    EVENT_DISPATCH = "event.dispatch"  # a domain event to fan out (market/services/events.py)
    EMAIL_SEND = "email.send"  # one email to send through SMTP (or to instance/mail/)
    WEBHOOK_DELIVER = "webhook.deliver"  # one webhook message to one endpoint


class OutboxEvent(Model):
    """A unit of asynchronous work; the sweeper re-enqueues rows still pending after a while."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[OutboxTopic]
    aggregate_id: Mapped[int]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[OutboxStatus] = mapped_column(default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    worker_note: Mapped[str | None] = mapped_column(String(200))
