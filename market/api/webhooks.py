"""Webhooks of the caller's organisation: endpoints, secrets, the delivery log, redelivery.

Org admins manage endpoints; every member may read them and their delivery log (which holds
no secret), so the people who run the receiving system can diagnose it without admin rights.
Staff (admins, auditors) have no organisation and so no webhooks.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from market.api.pagination import page_of
from market.models import Role, WebhookDelivery, WebhookEndpoint
from market.permissions import actor, allow
from market.schemas import PageQuerySchema
from market.schemas.webhooks import (
    WebhookDeliveryQuerySchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointCreateSchema,
    WebhookEndpointSchema,
    WebhookEndpointUpdateSchema,
)
from market.services import webhooks

blp = Blueprint("webhooks", __name__, description="Webhook endpoints and their delivery log")

MEMBERS = (Role.BUYER, Role.SUPPLIER)
ENDPOINTS = "/webhooks/endpoints"
ENDPOINT = ENDPOINTS + "/<int:endpoint_id>"
EndpointPageSchema = page_of(WebhookEndpointSchema)
DeliveryPageSchema = page_of(WebhookDeliverySchema)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    fields = {name: getattr(endpoint, name) for name in WebhookEndpointSchema().fields}
    return {**fields, "secret": secret}


@blp.route(ENDPOINTS)
class Endpoints(MethodView):
    @allow(*MEMBERS)
    @blp.arguments(WebhookEndpointCreateSchema)
    @blp.response(201, WebhookEndpointCreatedSchema)
    @blp.alt_response(403, description="Not an org admin")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Register a webhook endpoint (org admins).

        The answer carries the endpoint's signing secret (``whsec_...``) this once; keep it
        with the receiver to verify the ``webhook-signature`` header (Standard Webhooks).
        In production the URL must be https and resolve to public addresses only (422 on
        ``url`` otherwise).
        """
        endpoint, secret = webhooks.endpoint_create(actor(), **data)
        return _with_secret(endpoint, secret)

    @allow(*MEMBERS)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, EndpointPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The organization's webhook endpoints.

        Every member may read them; secrets are never shown here.
        """
        return webhooks.endpoint_list(actor(), **query).as_dict()


@blp.route(ENDPOINT)
class Endpoint(MethodView):
    @allow(*MEMBERS)
    @blp.response(200, WebhookEndpointSchema)
    @blp.alt_response(404, description="No such endpoint in your organization")
    def get(self, endpoint_id: int) -> WebhookEndpoint:
        """One webhook endpoint.

        Its topics, whether it is enabled (and why not), its failure streak.
        """
        return webhooks.endpoint_get(actor(), endpoint_id)

    @allow(*MEMBERS)
    @blp.arguments(WebhookEndpointUpdateSchema)
    @blp.response(200, WebhookEndpointSchema)
    @blp.alt_response(403, description="Not an org admin")
    @blp.alt_response(404, description="No such endpoint in your organization")
    def patch(self, data: dict[str, Any], endpoint_id: int) -> WebhookEndpoint:
        """Change a webhook endpoint (org admins).

        The URL, the topics, the description, or ``enabled``: setting it true re-enables a
        disabled endpoint and resends, oldest event first, the messages that failed.
        """
        return webhooks.endpoint_update(actor(), endpoint_id, data)

    @allow(*MEMBERS)
    @blp.response(204)
    @blp.alt_response(403, description="Not an org admin")
    @blp.alt_response(404, description="No such endpoint in your organization")
    def delete(self, endpoint_id: int) -> None:
        """Delete a webhook endpoint (org admins).

        Its delivery log goes with it; attempts still scheduled do nothing.
        """
        webhooks.endpoint_delete(actor(), endpoint_id)


@blp.route(ENDPOINT + "/rotate-secret", methods=["POST"])
@allow(*MEMBERS)
@blp.response(200, WebhookEndpointCreatedSchema)
@blp.alt_response(403, description="Not an org admin")
@blp.alt_response(404, description="No such endpoint in your organization")
def rotate_secret(endpoint_id: int) -> dict[str, Any]:
    """Issue a new signing secret (org admins).

    The new secret is shown this once. For ``WEBHOOK_SECRET_GRACE_HOURS`` (24 by default)
    each message carries two signatures, by the new and the old secret, so the receiver
    can switch over without losing a message.
    """
    endpoint, secret = webhooks.rotate_secret(actor(), endpoint_id)
    return _with_secret(endpoint, secret)


@blp.route(ENDPOINT + "/enable", methods=["POST"])
@allow(*MEMBERS)
@blp.response(200, WebhookEndpointSchema)
@blp.alt_response(403, description="Not an org admin")
@blp.alt_response(404, description="No such endpoint in your organization")
def enable(endpoint_id: int) -> WebhookEndpoint:
    """Re-enable a disabled webhook endpoint (org admins).

    Messages that failed while it was failing or disabled are sent again, oldest first;
    receivers can order them by ``data.event_id``.
    """
    return webhooks.enable(actor(), endpoint_id)


@blp.route(ENDPOINT + "/deliveries")
@allow(*MEMBERS)
@blp.arguments(WebhookDeliveryQuerySchema, location="query")
@blp.response(200, DeliveryPageSchema)
@blp.alt_response(404, description="No such endpoint in your organization")
def delivery_list(query: dict[str, Any], endpoint_id: int) -> dict[str, Any]:
    """The delivery log of an endpoint, newest event first.

    Each delivery with its status, next attempt and every attempt: status code, error,
    duration and the first 4 KB of the answer.
    """
    return webhooks.delivery_list(actor(), endpoint_id, **query).as_dict()


@blp.route("/webhooks/deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@allow(*MEMBERS)
@blp.response(202, WebhookDeliverySchema)
@blp.alt_response(403, description="Not an org admin")
@blp.alt_response(404, description="No such delivery in your organization")
@blp.alt_response(409, description="The endpoint is disabled")
def redeliver(delivery_id: int) -> WebhookDelivery:
    """Send a message again (org admins).

    Same ``webhook-id`` and body as before, so a receiver that already has it can tell;
    the attempt count starts afresh.
    """
    return webhooks.redeliver(actor(), delivery_id)
