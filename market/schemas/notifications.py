"""Schemas of the inbox and the notification preferences."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market.schemas import PageQuerySchema, StrictSchema
from market.services.events import EventKind
from market.services.notifications import LOCALES

KINDS = [kind.value for kind in EventKind]


class StrictBoolean(fields.Boolean):
    """JSON true or false only (marshmallow's Boolean also takes 1, "yes", "on"...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class InboxQuerySchema(PageQuerySchema):
    unread = fields.Boolean(
        load_default=False,
        metadata={"description": "true: only the notifications not read yet."},
    )


class NotificationSchema(Schema):
    id = fields.Integer(metadata={"description": "The notification's id (yours only)."})
    kind = fields.String(metadata={"description": "The event kind, e.g. quote.awarded."})
    subject_type = fields.String(metadata={"description": "What it is about: purchase, quote..."})
    subject_id = fields.Integer(metadata={"description": "The id of what it is about."})
    data = fields.Dict(metadata={"description": "The event's facts (money as exact strings)."})
    title = fields.String(metadata={"description": "In the language of Accept-Language."})
    body = fields.String(metadata={"description": "In the language of Accept-Language."})
    created_at = fields.DateTime(metadata={"description": "When the event happened (UTC)."})
    read_at = fields.DateTime(
        allow_none=True, metadata={"description": "When you marked it read; null: unread."}
    )


class UnreadCountSchema(Schema):
    unread = fields.Integer(metadata={"description": "How many of your notifications are unread."})


class MarkedSchema(Schema):
    marked = fields.Integer(metadata={"description": "How many notifications were marked read."})


class KindChoiceSchema(StrictSchema):
    kind = fields.String(
        required=True,
        validate=validate.OneOf(KINDS),
        metadata={"description": "An event kind (every kind is listed by GET)."},
    )
    inbox = StrictBoolean(metadata={"description": "Keep this kind in your inbox."})
    email = StrictBoolean(metadata={"description": "Also send this kind to you by email."})


class PreferencesSchema(Schema):
    locale = fields.String(metadata={"description": "The language of your emails: zh-CN or en."})
    kinds = fields.List(
        fields.Nested(KindChoiceSchema),
        metadata={"description": "Your choice for every event kind."},
    )


class PreferencesUpdateSchema(StrictSchema):
    locale = fields.String(
        validate=validate.OneOf(LOCALES),
        metadata={"description": "The language of your emails: zh-CN (default) or en."},
    )
    kinds = fields.List(
        fields.Nested(KindChoiceSchema),
        validate=validate.Length(max=len(KINDS) * 2),
        metadata={
            "description": "The kinds to change (inbox and/or email); kinds not listed keep "
            "their choice."
        },
    )

    @validates_schema
    def _something_to_change(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "locale" not in data and "kinds" not in data:
            raise ValidationError(
                "Give locale and/or kinds (the kinds to change).", field_name="kinds"
            )
