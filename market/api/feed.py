"""The supplier's demand feed: open demands it is eligible for, with its rank and explanation."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import page_of
from market.models import Role
from market.permissions import actor, allow
from market.schemas.marketplace import FeedItemSchema, FeedQuerySchema
from market.services import feed

blp = Blueprint("feed", __name__, description="The supplier's feed of open demands it may quote on")


@blp.route("/feed/demands")
@allow(Role.SUPPLIER)
@blp.arguments(FeedQuerySchema, location="query", unknown=RAISE)
@blp.response(200, page_of(FeedItemSchema))
@blp.alt_response(403, description="Not a supplier of an active (verified) organization")
def demand_feed(query: dict[str, Any]) -> dict[str, Any]:
    """Open demands your organization is eligible to quote on, with your rank on each.

    The same eligibility as the buyer's ranked matches (a capability in the demand's category
    subtree, the required certifications valid through need_by, an active site within the
    radius, an active and listed profile), newest published first by default; each item
    carries your rank among the eligible suppliers and its explanation, exactly as
    GET /demands/{id}/matches ranks you. A target price the buyer hides is null.
    """
    return feed.demand_feed(actor(), query)
