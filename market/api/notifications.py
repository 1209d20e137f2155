"""Your inbox: the events that concern you, read state, and what reaches you how.

Every route acts on the signed-in user's own notifications and preferences; no route takes a
user id, so nobody can read or mark another person's notifications (another's id is 404).
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import Blueprint

from market.api.pagination import page_of
from market.i18n import response_language
from market.permissions import ALL_ROLES, actor, allow
from market.schemas.notifications import (
    InboxQuerySchema,
    MarkedSchema,
    NotificationSchema,
    PreferencesSchema,
    PreferencesUpdateSchema,
    UnreadCountSchema,
)
from market.services import notifications

blp = Blueprint("notifications", __name__, description="Your inbox and notification preferences")

NotificationPageSchema = page_of(NotificationSchema)


def _reader_language() -> str:
    """Accept-Language when the client sends one (as error messages do), else the user's own
    language preference."""
    if request.headers.get("Accept-Language"):
        return response_language()
    return actor().locale


@blp.route("/notifications")
@allow(*ALL_ROLES)
@blp.arguments(InboxQuerySchema, location="query")
@blp.response(200, NotificationPageSchema)
def notification_list(query: dict[str, Any]) -> dict[str, Any]:
    """Your notifications, newest first.

    Each has its title and body in your language (Accept-Language; without it, your email
    language). ``unread=true`` lists only those not read yet.
    """
    page = notifications.inbox_page(
        actor(), unread=query["unread"], page=query["page"], per_page=query["per_page"]
    )
    lang = _reader_language()
    page.items = [notifications.rendered(row, lang) for row in page.items]
    return page.as_dict()


@blp.route("/notifications/unread-count")
@allow(*ALL_ROLES)
@blp.response(200, UnreadCountSchema)
def unread_count() -> dict[str, int]:
    """How many of your notifications are unread.

    Cheap enough to poll: one count over your own unread rows.
    """
    return {"unread": notifications.unread_count(actor())}


@blp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@allow(*ALL_ROLES)
@blp.response(200, NotificationSchema)
@blp.alt_response(404, description="Not one of your notifications")
def mark_read(notification_id: int) -> dict[str, Any]:
    """Mark one of your notifications read.

    Marking it again changes nothing (the first read time stays). Another person's
    notification does not exist for you (404).
    """
    row = notifications.mark_read(actor(), notification_id)
    return notifications.rendered(row, _reader_language())


@blp.route("/notifications/read-all", methods=["POST"])
@allow(*ALL_ROLES)
@blp.response(200, MarkedSchema)
def mark_all_read() -> dict[str, int]:
    """Mark all your unread notifications read.

    Returns how many were unread; notifications arriving afterwards stay unread.
    """
    return {"marked": notifications.mark_all_read(actor())}


@blp.route("/notifications/preferences", methods=["GET"])
@allow(*ALL_ROLES)
@blp.response(200, PreferencesSchema)
def preferences_get() -> dict[str, Any]:
    """Your notification preferences.

    Your email language and, for every event kind, whether it goes to your inbox and whether
    it is also emailed to you (defaults: inbox for all; email for what asks you to act).
    """
    return notifications.preferences_get(actor())


@blp.route("/notifications/preferences", methods=["PUT"])
@allow(*ALL_ROLES)
@blp.arguments(PreferencesUpdateSchema)
@blp.response(200, PreferencesSchema)
def preferences_put(data: dict[str, Any]) -> dict[str, Any]:
    """Change your notification preferences.

    The kinds listed take the inbox/email values given (a value left out keeps its choice);
    kinds not listed are unchanged. An unknown kind or language is a 422 naming the field.
    """
    return notifications.preferences_set(actor(), data)
