"""Webhook endpoints and their delivery log as the API reads and writes them (no secrets,
except the one-time ``secret`` of a creation or rotation)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from market.models import DeliveryStatus
from market.schemas import PageQuerySchema, StrictSchema
from market.services.events import EventKind
from market.services.webhook_urls import MAX_URL_LENGTH

TOPIC_CHOICES = ["*", *(kind.value for kind in EventKind)]


def _url_field(required: bool) -> fields.String:
    # A 10 kB URL is refused by the service with its own message; this bound only keeps
    # absurd bodies out (the request body limit is 256 kB).
    return fields.String(
        required=required,
        validate=validate.Length(min=1, max=4 * MAX_URL_LENGTH),
        metadata={
            "description": "Where to POST the messages. Production: https, no credentials, a "
            "host with public addresses only; at most 2048 characters."
        },
    )


def _topics_field(required: bool) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(TOPIC_CHOICES)),
        required=required,
        validate=validate.Length(min=1, max=len(TOPIC_CHOICES)),
        metadata={"description": 'Event kinds to receive, or ["*"] for all of them.'},
    )


def _description_field() -> fields.String:
    return fields.String(
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "A note for people (what receives these messages)."},
    )


class WebhookEndpointCreateSchema(StrictSchema):
    url = _url_field(required=True)
    topics = _topics_field(required=True)
    description = _description_field()
    enabled = fields.Boolean(
        load_default=True, metadata={"description": "Deliver to it now (default true)."}
    )


class WebhookEndpointUpdateSchema(StrictSchema):
    url = _url_field(required=False)
    topics = _topics_field(required=False)
    description = _description_field()
    enabled = fields.Boolean(
        metadata={
            "description": "false disables it; true re-enables it and resends the messages "
            "that failed while it was disabled, oldest first."
        }
    )


class WebhookEndpointSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    topics = fields.List(fields.String())
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    disabled_reason = fields.String(
        allow_none=True, metadata={"description": "Why it was disabled (null when enabled)."}
    )
    disabled_at = fields.DateTime(allow_none=True)
    failure_streak = fields.Integer(
        metadata={"description": "Failed attempts since its last successful delivery."}
    )
    previous_secret_expires_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "Until then the rotated-out secret signs too (a 2nd signature)."},
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookEndpointCreatedSchema(WebhookEndpointSchema):
    secret = fields.String(
        metadata={"description": "The signing secret (whsec_...); shown this once only."}
    )


class WebhookAttemptSchema(Schema):
    attempted_at = fields.DateTime()
    succeeded = fields.Boolean()
    status_code = fields.Integer(allow_none=True, metadata={"description": "null: no answer."})
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()
    response_excerpt = fields.String(
        allow_none=True, metadata={"description": "The answer's first 4 KB at most."}
    )


class WebhookDeliverySchema(Schema):
    id = fields.Integer()
    endpoint_id = fields.Integer()
    event_id = fields.Integer(
        metadata={"description": "The event's sequence number; webhook-id is evt_<event_id>."}
    )
    event_kind = fields.String()
    status = fields.Enum(DeliveryStatus, by_value=True)
    attempts = fields.Integer(metadata={"description": "Failed attempts in a row (this round)."})
    next_attempt_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    attempt_log = fields.List(
        fields.Nested(WebhookAttemptSchema),
        metadata={"description": "Every attempt, oldest first."},
    )


class WebhookDeliveryQuerySchema(PageQuerySchema):
    status = fields.Enum(
        DeliveryStatus,
        by_value=True,
        load_default=None,
        metadata={"description": "Only deliveries in this state (pending, delivered, failed)."},
    )
