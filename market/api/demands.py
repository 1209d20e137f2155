"""Demands (RFQs): post, edit while draft, publish, close, cancel, list."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import page_of
from market.models import Demand, Role
from market.permissions import actor, allow
from market.schemas.marketplace import (
    DemandCreateSchema,
    DemandPatchSchema,
    DemandQuerySchema,
    DemandSchema,
)
from market.services import demands

blp = Blueprint(
    "demands",
    __name__,
    description="Demands (RFQs) for parts at an OEM plant: draft → open → awarded | closed | "
    "cancelled",
)

READERS = (Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)


@blp.route("/demands")
class Demands(MethodView):
    @allow(Role.BUYER)
    @blp.arguments(DemandCreateSchema)
    @blp.response(201, DemandSchema)
    @blp.alt_response(403, description="Not a buyer of an active (verified) OEM organization")
    def post(self, data: dict[str, Any]) -> Demand:
        """Draft a demand for one of your plants.

        A draft is invisible to suppliers until published. ``need_by`` is a business date
        (Asia/Shanghai) not in the past; ``radius_km`` bounds matching and awards.
        """
        return demands.demand_create(actor(), data)

    @allow(*READERS)
    @blp.arguments(DemandQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(DemandSchema))
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the demands you may see: your organization's, or open ones for suppliers.

        Buyers see their organization's demands in every state; suppliers see open demands and
        those they quoted on; auditors and admins see all. Filters: state, plant, text (``q``,
        Chinese words segmented).
        """
        return demands.demand_list(actor(), query).as_dict()


@blp.route("/demands/<int:demand_id>")
class DemandById(MethodView):
    @allow(*READERS)
    @blp.response(200, DemandSchema)
    @blp.alt_response(404, description="No such demand, or not yours to see")
    def get(self, demand_id: int) -> Demand:
        """One demand.

        An open demand whose ``need_by`` has passed shows as closed.
        """
        return demands.demand_get(actor(), demand_id)

    @allow(Role.BUYER)
    @blp.arguments(DemandPatchSchema(partial=True))
    @blp.response(200, DemandSchema)
    @blp.alt_response(404, description="No such demand, or not yours")
    @blp.alt_response(409, description="Only drafts can be edited")
    def patch(self, data: dict[str, Any], demand_id: int) -> Demand:
        """Change a draft demand (any subset of its fields).

        Only drafts change; a published demand is a 409. Fields not given keep their value.
        """
        return demands.demand_update(actor(), demand_id, data)


@blp.route("/demands/<int:demand_id>/publish")
class DemandPublish(MethodView):
    @allow(Role.BUYER)
    @blp.response(200, DemandSchema)
    @blp.alt_response(404, description="No such demand, or not yours")
    @blp.alt_response(409, description="Only a draft can be published")
    def post(self, demand_id: int) -> Demand:
        """Open a draft demand to quotes.

        Suppliers can see and quote on it until it is closed, awarded, cancelled or its ``need_by``
        passes.
        """
        return demands.demand_publish(actor(), demand_id)


@blp.route("/demands/<int:demand_id>/close")
class DemandClose(MethodView):
    @allow(Role.BUYER, Role.ADMIN)
    @blp.response(200, DemandSchema)
    @blp.alt_response(404, description="No such demand, or not yours")
    @blp.alt_response(409, description="Only an open demand can be closed")
    def post(self, demand_id: int) -> Demand:
        """Stop taking quotes without an award.

        Submitted quotes stay as they are; no purchase is made.
        """
        return demands.demand_close(actor(), demand_id)


@blp.route("/demands/<int:demand_id>/cancel")
class DemandCancel(MethodView):
    @allow(Role.BUYER, Role.ADMIN)
    @blp.response(200, DemandSchema)
    @blp.alt_response(404, description="No such demand, or not yours")
    @blp.alt_response(409, description="Only a draft or open demand can be cancelled")
    def post(self, demand_id: int) -> Demand:
        """Cancel a draft or open demand.

        A cancelled demand takes no quotes and cannot be awarded.
        """
        return demands.demand_cancel(actor(), demand_id)
