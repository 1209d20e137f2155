"""Search: a demand's ranked suppliers, and the supplier search box."""

from __future__ import annotations

from typing import Any

from flask.wrappers import Response
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import prebuilt_page
from market.models import Role
from market.permissions import actor, allow
from market.schemas.search import (
    MatchPageSchema,
    MatchQuerySchema,
    SupplierSearchPageSchema,
    SupplierSearchQuerySchema,
)
from market.services import search as services
from market.services.unit_of_work import reads_only

blp = Blueprint("search", __name__, description="Ranked matching and supplier search")


@blp.route("/demands/<int:demand_id>/matches")
@reads_only
@allow(Role.BUYER, Role.AUDITOR, Role.ADMIN)
@blp.arguments(MatchQuerySchema, location="query", unknown=RAISE)
@blp.response(200, MatchPageSchema)
@blp.alt_response(404, description="No such demand (or not yours)")
def demand_matches(args: dict[str, Any], demand_id: int) -> Response:
    """Suppliers ranked for a demand by distance and tier, each with its explanation.

    For the demand's buyers, auditors and admins. Each supplier comes with its distance (km, from
    its nearest eligible site), tier and the explanation of its score; both search backends rank
    identically.
    """
    return prebuilt_page(
        services.demand_matches(actor(), demand_id, args["page"], args["per_page"])
    )


@blp.route("/suppliers/search")
@reads_only
@allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
@blp.arguments(SupplierSearchQuerySchema, location="query", unknown=RAISE)
@blp.response(200, SupplierSearchPageSchema)
def supplier_search(args: dict[str, Any]) -> Response:
    """Search visible suppliers by text, place, category, certification, tier and city.

    Text is segmented into Chinese words and expanded with the trade's synonyms (刹车 finds 制动);
    results can be limited by a radius around a point, a category (with its descendants), a
    certificate standard, tier, city (code or name) and the 专精特新 flag, with the matched words
    highlighted.
    """
    return prebuilt_page(services.supplier_search(actor(), args))
