"""Webhooks per organisation: endpoints, signing secrets, deliveries, retries and disabling.

Org admins manage their organisation's endpoints; its members may read them and the delivery
log (never a secret: it is shown once, when created or rotated). Events reach an endpoint
through the webhooks sink (``workers/webhooks.py``), which calls :func:`create_deliveries` in
the event's dispatch transaction: one :class:`WebhookDelivery` per (endpoint, event) and an
outbox row (``webhook.deliver``) for its first attempt. The worker sends it and calls
:func:`record_attempt`: a 2xx delivers it; anything else is logged and retried after
``WEBHOOK_RETRY_BASE_SECONDS × WEBHOOK_RETRY_FACTOR^(n-1)`` seconds (capped); after
``WEBHOOK_DISABLE_AFTER_FAILURES`` failed attempts of one message the endpoint is disabled and
the organisation is told (``webhook.endpoint_disabled``). Nothing is lost: a disabled endpoint's
undelivered messages are kept as ``failed`` and sent again, in event order, when it is
re-enabled; any delivery can be redelivered by hand.

A retry is an outbox row written *without* publishing it, whose ``enqueued_at`` lies
``OUTBOX_STALE_SECONDS`` before the attempt's due time: the outbox sweeper, which re-enqueues
rows pending for that long, takes it exactly when it is due. The outbox needs no new topic or
column for this, and the retry survives Redis and worker restarts like any outbox row.

Secrets are sealed at rest with a key derived from ``SECRET_KEY`` (Fernet); rotating issues a
new secret and keeps signing with the old one as well for ``WEBHOOK_SECRET_GRACE_HOURS``
(Standard Webhooks allows several signatures in one header), so receivers can switch over.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from standardwebhooks import Webhook

from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.models import (
    DeliveryStatus,
    OutboxEvent,
    OutboxTopic,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from market.permissions import OrgAdminRequired
from market.services import webhook_urls
from market.services.audit import audit
from market.services.events import Event, EventKind, emit_event
from market.services.pagination import Page, paginate
from market.services.unit_of_work import commit, emit

ALL_TOPICS = "*"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
EXCERPT_BYTES = 4096


# --- secrets -----------------------------------------------------------------------------------


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"strongchain webhook secrets"
    ).derive(str(current_app.config["SECRET_KEY"]).encode())
    return Fernet(base64.urlsafe_b64encode(key))


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    return _fernet().decrypt(sealed.encode()).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a message now: the current one, and the previous in its grace."""
    found = [unseal(endpoint.secret_sealed)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed and expires is not None and expires > now:
        found.append(unseal(endpoint.previous_secret_sealed))
    return found


def signature_header(secrets_: list[str], message_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(message_id, at, body.encode()) for secret in secrets_)


def message_id(delivery: WebhookDelivery) -> str:
    """The ``webhook-id``: the event's id, the same for every attempt and redelivery."""
    return f"evt_{delivery.event_id}"


# --- who may --------------------------------------------------------------------------------


def _own_endpoint(actor: User, endpoint_id: int, *, manage: bool) -> WebhookEndpoint:
    """An endpoint of the actor's organisation (404 for anyone else's); org admins to manage."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.organization_id != actor.organization_id:
        raise NotFound("No such webhook endpoint.")
    if manage and not actor.is_org_admin:
        raise OrgAdminRequired()
    return endpoint


def _organization_of(actor: User, *, manage: bool) -> int:
    if actor.organization_id is None:
        raise Forbidden("Only members of an organization have webhooks.")
    if manage and not actor.is_org_admin:
        raise OrgAdminRequired()
    return actor.organization_id


# --- endpoints -----------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """``url`` if a receiver may live there under this deployment's rules; else 422 on ``url``."""
    config = current_app.config
    try:
        webhook_urls.check(
            url,
            require_https=config["WEBHOOK_REQUIRE_HTTPS"],
            allow_private=config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"],
        )
    except webhook_urls.UnsafeUrl as exc:
        raise ValidationFailed(fields={"url": [str(exc)]}) from exc
    return url


def normalise_topics(topics: list[str]) -> list[str]:
    """Distinct topics in the order given; ``*`` alone when it is among them."""
    if ALL_TOPICS in topics:
        return [ALL_TOPICS]
    return list(dict.fromkeys(topics))


def endpoint_create(
    actor: User,
    *,
    url: str,
    topics: list[str],
    description: str | None = None,
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of the actor's organisation, and its secret (returned this once)."""
    organization_id = _organization_of(actor, manage=True)
    check_url(url)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        organization_id=organization_id,
        url=url,
        topics=normalise_topics(topics),
        description=description,
        enabled=enabled,
        secret_sealed=seal(secret),
        created_by_id=actor.id,
    )
    db.session.add(endpoint)
    db.session.flush()
    audit(
        "webhook_endpoint.created",
        f"webhook_endpoint:{endpoint.id}",
        {"url": url, "topics": endpoint.topics},
        organization_id=organization_id,
    )
    commit()
    return endpoint, secret


def endpoint_list(actor: User, *, page: int, per_page: int) -> Page:
    organization_id = _organization_of(actor, manage=False)
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == organization_id)
        .order_by(WebhookEndpoint.id)
    )
    return paginate(query, page, per_page)


def endpoint_get(actor: User, endpoint_id: int) -> WebhookEndpoint:
    return _own_endpoint(actor, endpoint_id, manage=False)


def endpoint_update(actor: User, endpoint_id: int, changes: dict[str, Any]) -> WebhookEndpoint:
    """Change the URL, topics, description or ``enabled`` (true re-enables: see :func:`enable`)."""
    endpoint = _own_endpoint(actor, endpoint_id, manage=True)
    if "url" in changes:
        endpoint.url = check_url(changes["url"])
    if "topics" in changes:
        endpoint.topics = normalise_topics(changes["topics"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if changes.get("enabled") is True and not endpoint.enabled:
        _enable(endpoint)
    elif changes.get("enabled") is False and endpoint.enabled:
        _disable(endpoint, "Disabled by an org admin.", announce=False)
    endpoint.updated_at = utcnow()
    audit(
        "webhook_endpoint.updated",
        f"webhook_endpoint:{endpoint.id}",
        {name: changes[name] for name in sorted(changes)},
        organization_id=endpoint.organization_id,
    )
    commit()
    return endpoint


def endpoint_delete(actor: User, endpoint_id: int) -> None:
    """Delete an endpoint with its delivery log; its pending attempts become no-ops."""
    endpoint = _own_endpoint(actor, endpoint_id, manage=True)
    audit(
        "webhook_endpoint.deleted",
        f"webhook_endpoint:{endpoint.id}",
        {"url": endpoint.url},
        organization_id=endpoint.organization_id,
    )
    for delivery in db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    ):
        db.session.delete(delivery)  # SQLite enforces no ON DELETE CASCADE by default
    db.session.delete(endpoint)
    commit()


def rotate_secret(actor: User, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    """A new secret; the old one keeps signing (as a second signature) for the grace period."""
    endpoint = _own_endpoint(actor, endpoint_id, manage=True)
    secret = new_secret()
    hours = current_app.config["WEBHOOK_SECRET_GRACE_HOURS"]
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_secret_expires_at = utcnow() + timedelta(hours=hours)
    endpoint.secret_sealed = seal(secret)
    endpoint.updated_at = utcnow()
    audit(
        "webhook_endpoint.secret_rotated",
        f"webhook_endpoint:{endpoint.id}",
        {"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()},
        organization_id=endpoint.organization_id,
    )
    commit()
    return endpoint, secret


def enable(actor: User, endpoint_id: int) -> WebhookEndpoint:
    """Re-enable an endpoint: its failed messages are sent again, oldest event first."""
    return endpoint_update(actor, endpoint_id, {"enabled": True})


def _enable(endpoint: WebhookEndpoint) -> None:
    endpoint.enabled = True
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    endpoint.failure_streak = 0
    failed = db.session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.FAILED,
        )
        .order_by(WebhookDelivery.event_id)
    )
    for delivery in failed:
        _queue_now(delivery)


def _disable(endpoint: WebhookEndpoint, reason: str, *, announce: bool) -> None:
    endpoint.enabled = False
    endpoint.disabled_at = utcnow()
    endpoint.disabled_reason = reason[:300]
    if announce:
        emit_event(
            EventKind.WEBHOOK_ENDPOINT_DISABLED,
            organization_id=endpoint.organization_id,
            subject_type="webhook_endpoint",
            subject_id=endpoint.id,
            data={"url": endpoint.url, "reason": endpoint.disabled_reason},
        )


# --- deliveries ----------------------------------------------------------------------------------


def _queue_now(delivery: WebhookDelivery) -> None:
    """Make ``delivery`` pending with a fresh count, its attempt published after the commit."""
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    row = emit(OutboxTopic.WEBHOOK_DELIVER, delivery.id, {"event_id": delivery.event_id})
    db.session.flush()
    delivery.outbox_id = row.id


def _queue_at(delivery: WebhookDelivery, due: datetime) -> None:
    """An outbox row the sweeper takes at ``due`` (not published now; see the module doc).

    It carries the last attempt's error, so the admins' outbox listing says why it waits.
    """
    stale = timedelta(seconds=current_app.config["OUTBOX_STALE_SECONDS"])
    row = OutboxEvent(
        topic=OutboxTopic.WEBHOOK_DELIVER,
        aggregate_id=delivery.id,
        payload={"event_id": delivery.event_id},
        enqueued_at=due - stale,
        last_error=f"attempt {delivery.attempts} failed: {delivery.last_error}"[:2000],
        worker_note=f"webhook retry due at {due.isoformat(timespec='seconds')}",
    )
    db.session.add(row)
    db.session.flush()
    delivery.next_attempt_at = due
    delivery.outbox_id = row.id


def subscribed(endpoint: WebhookEndpoint, kind: str) -> bool:
    return ALL_TOPICS in endpoint.topics or kind in endpoint.topics


def body_of(event: Event) -> str:
    """The message: Standard Webhooks' ``type``/``timestamp``/``data``; ``data.event_id`` is
    the sequence number (increasing in commit order) a receiver can order messages by."""
    data = {
        **event.data,
        "event_id": event.id,
        "organization_id": event.organization_id,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
    }
    message = {"type": str(event.kind), "timestamp": event.occurred_at.isoformat(), "data": data}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)


def create_deliveries(event: Event) -> int:
    """The sink's work: a delivery per enabled, subscribed endpoint (once per endpoint)."""
    endpoints = db.session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.organization_id == event.organization_id,
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookEndpoint.id)
    )
    created = 0
    for endpoint in endpoints:
        if not subscribed(endpoint, str(event.kind)):
            continue
        exists = db.session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == event.id
            )
        )
        if exists is not None:
            continue
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id,
            event_id=event.id,
            event_kind=str(event.kind),
            body=body_of(event),
        )
        db.session.add(delivery)
        db.session.flush()
        _queue_now(delivery)
        created += 1
    return created


@dataclass(frozen=True)
class Outcome:
    """What one HTTP attempt came to."""

    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    excerpt: str | None


def retry_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones (exponential, capped)."""
    config = current_app.config
    delay = config["WEBHOOK_RETRY_BASE_SECONDS"] * config["WEBHOOK_RETRY_FACTOR"] ** (failures - 1)
    return float(min(delay, config["WEBHOOK_RETRY_MAX_SECONDS"]))


def record_attempt(delivery: WebhookDelivery, outcome: Outcome) -> None:
    """Log an attempt; deliver, schedule the next try, or give up and disable the endpoint."""
    now = utcnow()
    # Locked, and read afresh, only now that the request is over: attempts of one endpoint in
    # parallel jobs count its streak exactly and disable (and announce) it once.
    endpoint = db.session.get(
        WebhookEndpoint, delivery.endpoint_id, with_for_update=True, populate_existing=True
    )
    if endpoint is None:  # deleted while the request was under way: its log went with it
        return
    db.session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            succeeded=outcome.succeeded,
            status_code=outcome.status_code,
            error=outcome.error[:500] if outcome.error else None,
            duration_ms=outcome.duration_ms,
            response_excerpt=outcome.excerpt,
        )
    )
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error[:500] if outcome.error else None
    if outcome.succeeded:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        endpoint.failure_streak = 0
        return
    delivery.attempts += 1
    endpoint.failure_streak += 1
    if not endpoint.enabled:  # disabled while this attempt was under way
        give_up(delivery)
        return
    limit = current_app.config["WEBHOOK_DISABLE_AFTER_FAILURES"]
    if delivery.attempts >= limit:
        give_up(delivery)
        _disable(
            endpoint, f"{limit} failed attempts in a row; last: {outcome.error}", announce=True
        )
        return
    _queue_at(delivery, now + timedelta(seconds=retry_delay(delivery.attempts)))


def give_up(delivery: WebhookDelivery) -> None:
    """Keep the message as ``failed``: re-enabling its endpoint or a redelivery sends it."""
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = None


def delivery_list(
    actor: User, endpoint_id: int, *, status: DeliveryStatus | None, page: int, per_page: int
) -> Page:
    """An endpoint's deliveries, newest event first, each with its attempts."""
    endpoint = _own_endpoint(actor, endpoint_id, manage=False)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .options(selectinload(WebhookDelivery.attempt_log))
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return paginate(query.order_by(WebhookDelivery.event_id.desc()), page, per_page)


def redeliver(actor: User, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now (same webhook-id and body), whatever its status (org admins)."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint.organization_id != actor.organization_id:
        raise NotFound("No such webhook delivery.")
    if not actor.is_org_admin:
        raise OrgAdminRequired()
    if not delivery.endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it first (its failed messages follow).")
    _queue_now(delivery)
    audit(
        "webhook_delivery.redelivered",
        f"webhook_delivery:{delivery.id}",
        {"endpoint": delivery.endpoint_id, "event_id": delivery.event_id},
        organization_id=delivery.endpoint.organization_id,
    )
    commit()
    return delivery
