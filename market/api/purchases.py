"""Purchases: recorded directly (honours Idempotency-Key) or from awards; cancel; list."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask.wrappers import Response
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import page_of
from market.models import Purchase, Role
from market.permissions import actor, allow
from market.schemas.marketplace import (
    PurchaseCancelSchema,
    PurchaseCreateSchema,
    PurchaseDetailSchema,
    PurchaseListItemSchema,
    PurchaseQuerySchema,
    PurchaseRecordedSchema,
    PurchaseSchema,
)
from market.services import idempotency, purchases
from market.services.purchases import PurchaseView

blp = Blueprint("purchases", __name__, description="Purchases of OEMs from suppliers (CNY)")

IDEMPOTENCY_HEADER_DOC = {
    "in": "header",
    "name": idempotency.HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    "description": "Retries with the same key and body get the first response again "
    "(no second purchase); the same key with another body is a 422.",
}


@blp.route("/purchases")
class Purchases(MethodView):
    @allow(Role.BUYER)
    @blp.arguments(PurchaseCreateSchema)
    @blp.response(201, PurchaseRecordedSchema)
    @blp.alt_response(403, description="Not a buyer of an active (verified) OEM organization")
    @blp.alt_response(409, description="This supplier's invoice is already recorded")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER_DOC])
    def post(self, data: dict[str, Any]) -> Response:
        """Record an off-platform purchase; the answer previews its subsidy effect.

        Send an Idempotency-Key to make retries safe.
        """
        return purchases.record_purchase(
            actor(), data, idempotency_key=request.headers.get(idempotency.HEADER)
        ).to_response()

    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.arguments(PurchaseQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(PurchaseListItemSchema))
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the purchases you may see (your organization's; all for auditors and admins)."""
        return purchases.purchase_list(actor(), query).as_dict()


@blp.route("/purchases/<int:purchase_id>")
class PurchaseById(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.response(200, PurchaseDetailSchema)
    @blp.alt_response(404, description="No such purchase, or not yours to see")
    def get(self, purchase_id: int) -> PurchaseView:
        """One purchase, with its ledger status and entries."""
        return purchases.purchase_get(actor(), purchase_id)


@blp.route("/purchases/<int:purchase_id>/cancel")
class PurchaseCancel(MethodView):
    @allow(Role.BUYER, Role.ADMIN)
    @blp.arguments(PurchaseCancelSchema)
    @blp.response(200, PurchaseSchema)
    @blp.alt_response(404, description="No such purchase of your organization")
    @blp.alt_response(409, description="Already cancelled")
    def post(self, data: dict[str, Any], purchase_id: int) -> Purchase:
        """Cancel a purchase (with a reason); the ledger records a reversal."""
        return purchases.purchase_cancel(actor(), purchase_id, data["reason"])
