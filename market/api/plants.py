"""OEM plants: the delivery sites of vehicle makers."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.openapi import error_responses
from market.api.pagination import page_of
from market.models import Role, Site
from market.permissions import actor, allow
from market.schemas.suppliers import PlantCreateSchema, PlantListQuerySchema, PlantSchema
from market.services import plants as services
from market.services.pagination import Page

blp = Blueprint("plants", __name__, description="OEM plants (sites of vehicle makers)")


def errors(*statuses: int) -> Any:
    """Document error responses of a view (the bodies are the API's one error envelope)."""
    return error_responses(blp, *statuses)


@blp.route("/plants")
class Plants(MethodView):
    @allow(Role.BUYER, Role.ADMIN)
    @blp.arguments(PlantCreateSchema)
    @blp.response(201, PlantSchema)
    @errors(401, 403)
    def post(self, data: dict[str, Any]) -> Site:
        """Add a plant to your OEM organization (admins give ``organization_id``).

        The coordinates must lie inside the declared city. A purchase freezes the plant's place
        when it is recorded.
        """
        return services.plant_create(actor(), data)

    @allow(Role.BUYER, Role.AUDITOR, Role.ADMIN)
    @blp.arguments(PlantListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, page_of(PlantSchema))
    @errors(401, 403, 404)
    def get(self, **query: Any) -> Page:
        """Your organization's plants; admins and auditors see all (filter: organization_id).

        Plants are the delivery points of demands and purchases; distances for matching and for the
        near-shore verdict are measured from them.
        """
        return services.plant_list(actor(), **query)


@blp.route("/plants/<int:plant_id>")
class PlantItem(MethodView):
    @allow(Role.BUYER, Role.AUDITOR, Role.ADMIN)
    @blp.response(200, PlantSchema)
    @errors(401, 403, 404)
    def get(self, plant_id: int) -> Site:
        """One OEM plant.

        Its city, coordinates and organization.
        """
        return services.plant_get(actor(), plant_id)
