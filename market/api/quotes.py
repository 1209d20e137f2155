"""Quotes on open demands, their withdrawal, and the award that makes a purchase."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import page_of
from market.models import Quote, Role
from market.permissions import actor, allow
from market.schemas.marketplace import (
    AwardSchema,
    PurchaseRecordedSchema,
    QuoteCreateSchema,
    QuoteQuerySchema,
    QuoteReviseSchema,
    QuoteRevisionQuerySchema,
    QuoteRevisionSchema,
    QuoteSchema,
)
from market.services import quotes
from market.services.purchases import PurchaseView

blp = Blueprint("quotes", __name__, description="Suppliers' quotes on demands, and awards")


@blp.route("/demands/<int:demand_id>/quotes")
class DemandQuotes(MethodView):
    @allow(Role.SUPPLIER)
    @blp.arguments(QuoteCreateSchema)
    @blp.response(201, QuoteSchema)
    @blp.alt_response(403, description="Not an active supplier eligible for this demand")
    @blp.alt_response(404, description="No such demand, or not open to you")
    @blp.alt_response(
        409, description="The demand is not open, or you have an active quote on it already"
    )
    def post(self, data: dict[str, Any], demand_id: int) -> Quote:
        """Quote on an open demand you are eligible for (one active quote per supplier).

        After withdrawing a quote you may quote again; to change a submitted quote, revise it
        (PATCH /quotes/{id}). The demand's buyers are told (quote.received).
        """
        return quotes.quote_create(actor(), demand_id, data)

    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.arguments(QuoteQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(QuoteSchema))
    @blp.alt_response(404, description="No such demand, or not yours to see")
    def get(self, query: dict[str, Any], demand_id: int) -> dict[str, Any]:
        """A demand's quotes: all of them for its buyer; a supplier sees only its own.

        Quotes with price, lead time, validity and state (submitted, withdrawn, awarded, not
        awarded).
        """
        return quotes.quote_list(actor(), demand_id, query).as_dict()


@blp.route("/quotes/<int:quote_id>/withdraw")
class QuoteWithdraw(MethodView):
    @allow(Role.SUPPLIER)
    @blp.response(200, QuoteSchema)
    @blp.alt_response(404, description="No such quote of yours")
    @blp.alt_response(409, description="Only a submitted quote can be withdrawn")
    def post(self, quote_id: int) -> Quote:
        """Withdraw your submitted quote.

        A withdrawn quote cannot be awarded.
        """
        return quotes.quote_withdraw(actor(), quote_id)


@blp.route("/quotes/<int:quote_id>/award")
class QuoteAward(MethodView):
    @allow(Role.BUYER)
    @blp.arguments(AwardSchema)
    @blp.response(201, PurchaseRecordedSchema)
    @blp.alt_response(404, description="No such quote on a demand of yours")
    @blp.alt_response(
        409,
        description="The demand is not open, the quote is not submitted or has expired, "
        "or the invoice is already recorded",
    )
    def post(self, data: dict[str, Any], quote_id: int) -> PurchaseView:
        """Award a quote: the demand is awarded and the purchase recorded, in one transaction.

        The answer previews the purchase's subsidy effect.
        """
        return quotes.quote_award(actor(), quote_id, data)


@blp.route("/quotes/<int:quote_id>")
class QuoteById(MethodView):
    @allow(Role.SUPPLIER)
    @blp.arguments(QuoteReviseSchema)
    @blp.response(200, QuoteSchema)
    @blp.alt_response(403, description="Not a supplier of an active (verified) organization")
    @blp.alt_response(404, description="No such quote of yours")
    @blp.alt_response(
        409,
        description="The quote is not submitted (withdrawn, awarded, rejected) or the "
        "demand is no longer open",
    )
    def patch(self, data: dict[str, Any], quote_id: int) -> Quote:
        """Revise your submitted quote while its demand is open.

        Send any of unit_price, quantity, lead_time_days, valid_until and note; the quote
        becomes the new version (revision + 1) and every earlier version stays readable at
        GET /quotes/{id}/revisions. The demand's buyers are told (quote.revised).
        """
        return quotes.quote_revise(actor(), quote_id, data)


@blp.route("/quotes/<int:quote_id>/revisions")
class QuoteRevisions(MethodView):
    @allow(Role.BUYER, Role.SUPPLIER)
    @blp.arguments(QuoteRevisionQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(QuoteRevisionSchema))
    @blp.alt_response(404, description="No such quote on a demand of yours, or of yours")
    def get(self, query: dict[str, Any], quote_id: int) -> dict[str, Any]:
        """A quote's history: every version as it was submitted.

        Revision 1 is the quote as first submitted; each revision adds one. Only the demand's
        buyers and the quoting supplier may read it.
        """
        return quotes.quote_revisions(actor(), quote_id, query).as_dict()
