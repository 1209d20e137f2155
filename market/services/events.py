"""Domain events: what happened to whom, fanned out after commit to inboxes, email and webhooks.

A service function that causes something people should hear of calls :func:`emit_event` in its
transaction, next to its business rows. The event is an outbox row (topic ``event.dispatch``),
so it commits or rolls back with them and a down Redis, SMTP server or webhook receiver never
fails the write. The ``event.dispatch`` handler (``workers/events.py``) gives the event to every
registered *sink* (the inbox and email, the webhooks) in the handler's one transaction, so each
sink sees each event exactly once; a sink's slow or failing delivery is its own outbox work.

The outbox row's id is the event's id: stable across retries, increasing in commit order per
database, usable as a webhook message id and a sequence number.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from market.clock import utcnow
from market.models import OutboxTopic
from market.services.unit_of_work import emit


class EventKind(enum.StrEnum):
    """Every event the product announces (inbox, email and webhook topics use these names)."""

    CERTIFICATION_EXPIRING = "certification.expiring"
    CERTIFICATION_EXPIRED = "certification.expired"
    CERTIFICATION_VERIFIED = "certification.verified"
    CERTIFICATION_REJECTED = "certification.rejected"
    DEMAND_PUBLISHED = "demand.published"  # to the eligible suppliers (top N by rank)
    QUOTE_RECEIVED = "quote.received"
    QUOTE_REVISED = "quote.revised"
    QUOTE_AWARDED = "quote.awarded"
    QUOTE_NOT_AWARDED = "quote.not_awarded"
    PURCHASE_AWAITING_CONFIRMATION = "purchase.awaiting_confirmation"
    PURCHASE_RECORDED = "purchase.recorded"  # entered the ledger, with its verdict
    CLAIM_STATE_CHANGED = "claim.state_changed"
    CLAIM_EVIDENCE_REQUESTED = "claim.evidence_requested"
    WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled"


@dataclass(frozen=True)
class Event:
    """An event as the sinks get it (plain values)."""

    id: int
    kind: EventKind
    organization_id: int  # the organisation told; its members are the inbox's recipients
    subject_type: str  # e.g. "purchase", "quote", "claim"
    subject_id: int
    data: dict[str, Any]  # JSON-ready facts for the message (money as strings)
    user_ids: tuple[int, ...] | None  # only these members (None: every member)
    occurred_at: datetime


Sink = Callable[[Event], None]

_SINKS: dict[str, Sink] = {}


def sink(name: str) -> Callable[[Sink], Sink]:
    """Register a sink; it runs in the dispatch transaction and must not do network I/O (it
    writes rows and emits its own outbox work instead)."""

    def register(func: Sink) -> Sink:
        _SINKS[name] = func
        return func

    return register


def sinks() -> dict[str, Sink]:
    return dict(_SINKS)


def emit_event(
    kind: EventKind,
    *,
    organization_id: int,
    subject_type: str,
    subject_id: int,
    data: dict[str, Any] | None = None,
    user_ids: Iterable[int] | None = None,
) -> None:
    """Announce ``kind`` to ``organization_id`` (or to some of its members) after the commit."""
    emit(
        OutboxTopic.EVENT_DISPATCH,
        organization_id,
        event_payload(kind, subject_type, subject_id, data, user_ids),
    )


def event_payload(
    kind: EventKind,
    subject_type: str,
    subject_id: int,
    data: dict[str, Any] | None = None,
    user_ids: Iterable[int] | None = None,
) -> dict[str, Any]:
    """The outbox payload of an ``event.dispatch`` row (for a use case inserting it itself)."""
    return {
        "kind": str(kind),
        "subject_type": subject_type,
        "subject_id": subject_id,
        "data": data or {},
        "user_ids": sorted(set(user_ids)) if user_ids is not None else None,
        "occurred_at": utcnow().isoformat(),
    }


def event_of(outbox_id: int, organization_id: int, payload: dict[str, Any]) -> Event:
    user_ids = payload.get("user_ids")
    return Event(
        id=outbox_id,
        kind=EventKind(payload["kind"]),
        organization_id=organization_id,
        subject_type=payload["subject_type"],
        subject_id=int(payload["subject_id"]),
        data=dict(payload.get("data") or {}),
        user_ids=tuple(user_ids) if user_ids is not None else None,
        occurred_at=datetime.fromisoformat(payload["occurred_at"]),
    )
