"""The chain-gap views: per plant or city, province-wide, and the map (JSON, CSV, SVG).

Buyers see their own organization's plants (another's is 404) and any city, counting only their
own open demands; auditors their jurisdiction's plants and cities; admins everything; suppliers
are refused (403). See ``market.services.gaps`` for what counts.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.insights import gapmap
from market.models import Role
from market.permissions import actor, allow
from market.schemas.gaps import (
    GapMapQuerySchema,
    GapQuerySchema,
    GapResultSchema,
    ProvinceQuerySchema,
    ProvinceResultSchema,
)
from market.services import gaps

blp = Blueprint(
    "gaps",
    __name__,
    # Swagger UI (/docs) renders this as the tag's text, with the link to the pictures.
    description="Chain-gap maps: qualified suppliers per category near a plant or city. "
    "The map, the gap table and the KPI charts are on the "
    "[产业链洞察 insights page](/insights).",
)

READERS = (Role.BUYER, Role.AUDITOR, Role.ADMIN)
# The map is a picture with inline styles and no script; the insights page embeds it.
MAP_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


def _center_result(args: dict[str, Any]) -> dict[str, Any]:
    user = actor()
    if "plant" in args:
        center = gaps.plant_center(user, args["plant"])
    else:
        center = gaps.city_center(user, args["city"])
    return gaps.center_gaps(user, center, args["options"])


@blp.route("/insights/gaps")
@allow(*READERS)
@blp.arguments(GapQuerySchema, location="query", unknown=RAISE)
@blp.response(200, GapResultSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(
    200,
    description="With format=csv: UTF-8 CSV with a BOM, one row per category",
    schema={"type": "string"},
    content_type="text/csv",
)
def gap_table(args: dict[str, Any]) -> Any:
    """Chain gaps around a plant or a city: per category, suppliers within r km.

    For each taxonomy category at the chosen depth: the qualified suppliers with an active site
    within ``radius_km`` of the plant (or of the city's seat), the nearest one's distance, the
    tier mix and the open demands there; ``gap`` when there is none, ``single_source`` when
    there is exactly one. Give either ``plant`` or ``city``. With ``certs``, a supplier counts
    only if it holds each standard, valid today.
    """
    result = _center_result(args)
    if args["export_format"] == "csv":
        center = result["center"]
        if center["plant_id"]:
            name = f"gaps-plant-{center['plant_id']}.csv"
        else:
            name = f"gaps-city-{center['city_code']}.csv"
        return _csv(gaps.gaps_csv(result), name)
    return result


@blp.route("/insights/gaps/province")
@allow(*READERS)
@blp.arguments(ProvinceQuerySchema, location="query", unknown=RAISE)
@blp.response(200, ProvinceResultSchema)
@blp.alt_response(
    200,
    description="With format=csv: UTF-8 CSV with a BOM, one row per city × category",
    schema={"type": "string"},
    content_type="text/csv",
)
def province_table(args: dict[str, Any]) -> Any:
    """Chain gaps province-wide: each Guangdong city × each category.

    The plant view's question asked from each city's seat: qualified suppliers within
    ``radius_km``, nearest distance, tier mix, open demands at plants in the city, gap and
    single-source flags. Auditors get their jurisdiction's cities only.
    """
    result = gaps.province_gaps(actor(), args["options"])
    if args["export_format"] == "csv":
        return _csv(gaps.province_csv(result), "gaps-province.csv")
    return result


@blp.route("/insights/gaps/map.svg")
@allow(*READERS)
@blp.arguments(GapMapQuerySchema, location="query", unknown=RAISE)
@blp.response(200, description="The map as SVG", content_type="image/svg+xml")
@blp.alt_response(404, response="NOT_FOUND")
def gap_map(args: dict[str, Any]) -> Response:
    """The gap map: Guangdong's cities, the centre, the radius and every supplier counted.

    Rendered on the server (matplotlib, SVG): the real city boundaries, the plant (or city
    seat), the radius circle, one marker per supplier counted (class ``supplier-marker``, its
    tier in ``data-tier``) and the gap and single-source categories beside the map. The same
    query always gives the same bytes.
    """
    svg = gapmap.render(_center_result(args))
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = MAP_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
