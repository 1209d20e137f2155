"""Each person's inbox and notification preferences; what an event leaves in them.

:func:`deliver_event` is the inbox sink's work (``workers/notifications.py`` registers it): it
finds the event's recipients (the active members of the organisation told, or the members it
names), writes one inbox row per recipient who keeps this kind in the inbox, and an
``email.send`` outbox row per recipient who wants it by email. It runs in the dispatch job's
transaction and is idempotent per (user, event), so a redelivered event changes nothing.

A person only ever sees their own inbox; the routes take the signed-in user, never an id.
A saved choice is a row; a kind without one follows :data:`DEFAULTS` (inbox on for every kind,
email on for what asks the reader to act or warns of a loss), so a new event kind reaches
everyone without a data migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, select, update

from market.clock import utcnow
from market.errors import NotFound
from market.extensions import db
from market.models import (
    InboxNotification,
    NotificationPreference,
    OutboxTopic,
    User,
)
from market.services.events import Event, EventKind
from market.services.notification_texts import language_of, render
from market.services.pagination import Page, paginate
from market.services.unit_of_work import commit, emit

# Email by default where the reader must act or is about to lose something.
EMAIL_BY_DEFAULT = frozenset(
    {
        EventKind.CERTIFICATION_EXPIRING,
        EventKind.CERTIFICATION_EXPIRED,
        EventKind.CERTIFICATION_REJECTED,
        EventKind.PURCHASE_AWAITING_CONFIRMATION,
        EventKind.QUOTE_AWARDED,
        EventKind.CLAIM_EVIDENCE_REQUESTED,
        EventKind.WEBHOOK_ENDPOINT_DISABLED,
    }
)
LOCALES = ("zh-CN", "en")


@dataclass(frozen=True)
class Choice:
    inbox: bool
    email: bool


DEFAULTS: dict[str, Choice] = {
    kind.value: Choice(inbox=True, email=kind in EMAIL_BY_DEFAULT) for kind in EventKind
}


# --- mail configuration ------------------------------------------------------------------------


def mail_transport() -> str:
    """``smtp`` (MAIL_SMTP_HOST set), ``file`` (``.eml`` files: the embedded default) or
    ``none`` (no email: production without SMTP, tests unless they ask)."""
    config = current_app.config
    explicit = (config.get("MAIL_BACKEND") or "").lower()
    if explicit in ("smtp", "file", "none"):
        return explicit
    if config.get("MAIL_SMTP_HOST"):
        return "smtp"
    return "file" if config.get("NAME") == "embedded" else "none"


def mail_enabled() -> bool:
    return mail_transport() != "none"


# --- preferences -------------------------------------------------------------------------------


def choices_of(user_ids: list[int]) -> dict[int, dict[str, Choice]]:
    """Each user's saved choices (kinds without a row: the defaults)."""
    saved: dict[int, dict[str, Choice]] = {user_id: {} for user_id in user_ids}
    if not user_ids:
        return saved
    rows = db.session.execute(
        select(NotificationPreference).where(NotificationPreference.user_id.in_(user_ids))
    ).scalars()
    for row in rows:
        saved[row.user_id][row.kind] = Choice(row.inbox, row.email)
    return saved


def preferences_get(user: User) -> dict[str, Any]:
    """The user's language for email and their choice per event kind (every kind listed)."""
    saved = choices_of([user.id])[user.id]
    kinds = [
        {"kind": kind, "inbox": choice.inbox, "email": choice.email}
        for kind, default in DEFAULTS.items()
        for choice in [saved.get(kind, default)]
    ]
    return {"locale": user.locale, "kinds": kinds}


def preferences_set(user: User, data: dict[str, Any]) -> dict[str, Any]:
    """Change the language and the kinds listed (each with inbox and/or email); the others
    keep their choice. Returns every kind's choice."""
    if data.get("locale"):
        user.locale = data["locale"]
    saved = choices_of([user.id])[user.id]
    for item in data.get("kinds", []):
        kind = item["kind"]
        current = saved.get(kind, DEFAULTS[kind])
        choice = Choice(item.get("inbox", current.inbox), item.get("email", current.email))
        row = db.session.get(NotificationPreference, (user.id, kind))
        if row is None:
            row = NotificationPreference(user_id=user.id, kind=kind)
            db.session.add(row)
        row.inbox, row.email = choice.inbox, choice.email
        saved[kind] = choice
    commit()
    return preferences_get(user)


# --- the inbox ---------------------------------------------------------------------------------


def _own(user: User) -> Select[Any]:
    return select(InboxNotification).where(InboxNotification.user_id == user.id)


def inbox_page(user: User, *, unread: bool, page: int, per_page: int) -> Page:
    """The user's notifications, newest first (only the unread ones with ``unread``)."""
    query = _own(user)
    if unread:
        query = query.where(InboxNotification.read_at.is_(None))
    return paginate(query.order_by(InboxNotification.id.desc()), page, per_page)


def unread_count(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count(InboxNotification.id)).where(
                InboxNotification.user_id == user.id, InboxNotification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(user: User, notification_id: int) -> InboxNotification:
    """Mark one of the user's notifications read (again: no change); another's is 404."""
    row = db.session.scalar(_own(user).where(InboxNotification.id == notification_id))
    if row is None:
        raise NotFound("No such notification.")
    if row.read_at is None:
        row.read_at = utcnow()
        commit()
    return row


def mark_all_read(user: User) -> int:
    """Mark every unread notification of the user read; returns how many."""
    result = db.session.execute(
        update(InboxNotification)
        .where(InboxNotification.user_id == user.id, InboxNotification.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    commit()
    return int(getattr(result, "rowcount", 0) or 0)


def rendered(row: InboxNotification, lang: str) -> dict[str, Any]:
    """An inbox row as the API shows it, with its title and body in ``lang``."""
    title, body = render(row.kind, row.subject_type, row.subject_id, row.data or {}, lang)
    return {
        "id": row.id,
        "kind": row.kind,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "data": row.data or {},
        "title": title,
        "body": body,
        "created_at": row.created_at,
        "read_at": row.read_at,
    }


# --- the sink's work ---------------------------------------------------------------------------


def recipients(event: Event) -> list[User]:
    """The organisation's active members (those the event names, if it names some)."""
    query = select(User).where(
        User.organization_id == event.organization_id,
        User.removed_at.is_(None),
        User.disabled.is_(False),
    )
    if event.user_ids is not None:
        query = query.where(User.id.in_(event.user_ids))
    return list(db.session.scalars(query.order_by(User.id)))


def deliver_event(event: Event) -> dict[str, int]:
    """Write the event to its recipients' inboxes and queue their emails (no commit)."""
    users = recipients(event)
    saved = choices_of([user.id for user in users])
    already = set(
        db.session.scalars(
            select(InboxNotification.user_id).where(InboxNotification.event_id == event.id)
        )
    )
    email = mail_enabled()
    written = emailed = 0
    for user in users:
        if user.id in already:
            continue  # this event reached them already (a redelivered job)
        choice = saved[user.id].get(event.kind.value, DEFAULTS[event.kind.value])
        if choice.inbox:
            db.session.add(_inbox_row(user, event))
            written += 1
        if choice.email and email:
            emit(OutboxTopic.EMAIL_SEND, user.id, event_email(user, event))
            emailed += 1
    return {"inbox": written, "email": emailed}


def _inbox_row(user: User, event: Event) -> InboxNotification:
    return InboxNotification(
        user_id=user.id,
        event_id=event.id,
        organization_id=event.organization_id,
        kind=event.kind.value,
        subject_type=event.subject_type,
        subject_id=event.subject_id,
        data=event.data,
        created_at=event.occurred_at,
    )


def event_email(user: User, event: Event) -> dict[str, Any]:
    """The ``email.send`` payload of an event for one recipient (rendered when sent)."""
    return {
        "template": "event",
        "to": user.email,
        "locale": language_of(user.locale),
        "event_id": event.id,
        "kind": event.kind.value,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "data": event.data,
    }


def invitation_email(
    *, to: str, organization: str, inviter: str, org_role: str, link: str, expires_at: datetime
) -> dict[str, Any]:
    """The ``email.send`` payload of an invitation (the invitee has no account: zh-CN)."""
    return {
        "template": "invitation",
        "to": to,
        "locale": "zh-CN",
        "facts": {
            "organization": organization,
            "inviter": inviter,
            "org_role": org_role,
            "link": link,
            "expires_at": expires_at.isoformat(timespec="minutes"),
        },
    }
