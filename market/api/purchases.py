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
    InvoiceReviewSchema,
    PurchaseCancelSchema,
    PurchaseCreateSchema,
    PurchaseDetailSchema,
    PurchaseDisputeSchema,
    PurchaseListItemSchema,
    PurchaseQuerySchema,
    PurchaseRecordedSchema,
    PurchaseSchema,
)
from market.services import idempotency, purchases
from market.services.purchases import PurchaseRow, PurchaseView

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
    @allow(Role.BUYER, Role.SUPPLIER)
    @blp.arguments(PurchaseCreateSchema)
    @blp.response(201, PurchaseRecordedSchema)
    @blp.alt_response(403, description="Not a user of an active (verified) organization")
    @blp.alt_response(409, description="This invoice is already recorded between the two")
    @blp.doc(parameters=[IDEMPOTENCY_HEADER_DOC])
    def post(self, data: dict[str, Any]) -> Response:
        """Record an off-platform purchase (either party); the other party confirms it.

        Buyers name `supplier_org_id`, suppliers `oem_org_id`. The purchase is
        `pending_confirmation` until the other party confirms (only then does the ledger
        count it) or disputes it. A buyer's answer previews the subsidy effect of counting
        it. Send an Idempotency-Key to make retries safe.
        """
        return purchases.record_purchase(
            actor(), data, idempotency_key=request.headers.get(idempotency.HEADER)
        ).to_response()

    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.arguments(PurchaseQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(PurchaseListItemSchema))
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the purchases you may see (your organization's; all for auditors and admins).

        Buyers and suppliers see their organization's purchases, auditors those of plants in their
        jurisdiction, admins all. Filters: year, status, source (award or recorded), those awaiting
        your confirmation, those held for review.
        """
        return purchases.purchase_list(actor(), query).as_dict()


@blp.route("/purchases/<int:purchase_id>")
class PurchaseById(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.response(200, PurchaseDetailSchema)
    @blp.alt_response(404, description="No such purchase, or not yours to see")
    def get(self, purchase_id: int) -> PurchaseView:
        """One purchase, with its ledger status and entries.

        Shows the frozen facts the verdict was computed from (site and plant places, category,
        amount) and, once confirmed, its ledger entries with near-shore verdict and reason.
        Suppliers never see the OEM's subsidy figures.
        """
        return purchases.purchase_get(actor(), purchase_id)


@blp.route("/purchases/<int:purchase_id>/confirm")
class PurchaseConfirm(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER)
    @blp.response(200, PurchaseSchema)
    @blp.alt_response(403, description="Your organization recorded it: the other party confirms")
    @blp.alt_response(404, description="No such purchase of your organization")
    @blp.alt_response(409, description="Not waiting for a confirmation")
    def post(self, purchase_id: int) -> Purchase | PurchaseRow:
        """Confirm a purchase the other party recorded; the ledger then counts it.

        Only the party that did not record the purchase may confirm it; then a worker appends it to
        the ledger (exactly once, whatever the retries).
        """
        return purchases.purchase_confirm(actor(), purchase_id).purchase


@blp.route("/purchases/<int:purchase_id>/dispute")
class PurchaseDispute(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER)
    @blp.arguments(PurchaseDisputeSchema)
    @blp.response(200, PurchaseSchema)
    @blp.alt_response(403, description="Your organization recorded it: the other party disputes")
    @blp.alt_response(404, description="No such purchase of your organization")
    @blp.alt_response(409, description="Not waiting for a confirmation")
    def post(self, data: dict[str, Any], purchase_id: int) -> Purchase | PurchaseRow:
        """Dispute a purchase the other party recorded (with a reason); it is never counted.

        A disputed purchase never enters the ledger; the reason is kept for the record.
        """
        return purchases.purchase_dispute(actor(), purchase_id, data["reason"]).purchase


@blp.route("/purchases/<int:purchase_id>/review")
class PurchaseReview(MethodView):
    @allow(Role.AUDITOR, Role.ADMIN)
    @blp.arguments(InvoiceReviewSchema)
    @blp.response(200, PurchaseSchema)
    @blp.alt_response(404, description="No such purchase")
    @blp.alt_response(409, description="Not waiting for an invoice review")
    def post(self, data: dict[str, Any], purchase_id: int) -> Purchase | PurchaseRow:
        """Release or reject a purchase held for a duplicate invoice (DUPLICATE_INVOICE).

        For auditors and admins: the same (supplier, invoice number) was recorded by two OEMs, so
        neither entered the ledger. Releasing lets this one in; rejecting keeps it out for good.
        """
        return purchases.purchase_review(
            actor(), purchase_id, data["decision"], data["reason"]
        ).purchase


@blp.route("/purchases/<int:purchase_id>/cancel")
class PurchaseCancel(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER, Role.ADMIN)
    @blp.arguments(PurchaseCancelSchema)
    @blp.response(200, PurchaseSchema)
    @blp.alt_response(404, description="No such purchase of your organization")
    @blp.alt_response(403, description="A supplier may only withdraw its own unconfirmed one")
    @blp.alt_response(409, description="Already cancelled or disputed")
    def post(self, data: dict[str, Any], purchase_id: int) -> Purchase | PurchaseRow:
        """Cancel a purchase (with a reason); a counted one is reversed by the ledger.

        Buyers and admins may cancel any purchase of the OEM; a supplier may withdraw an
        unconfirmed purchase it recorded itself.
        """
        return purchases.purchase_cancel(actor(), purchase_id, data["reason"])
