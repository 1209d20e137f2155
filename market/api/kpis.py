"""Chain KPIs and their charts, declared vehicle output, delivery records and scorecards.

Every view answers JSON, or CSV (UTF-8 with a BOM) with ``format=csv``; the KPI charts are
SVG. Who sees what: an OEM's buyers their own organisation's figures; auditors their
jurisdiction (purchases delivered to plants in it); admins everything; suppliers no KPIs but
their own scorecard and their purchases' delivery records.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.insights import charts, export
from market.models import DeclaredVehicleOutput, Delivery, Role
from market.permissions import actor, allow
from market.schemas.kpis import (
    ChartQuerySchema,
    DeliveryCreateSchema,
    DeliveryListSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    KpiQuerySchema,
    KpiSchema,
    ScorecardQuerySchema,
    ScorecardSchema,
    VehicleOutputCreateSchema,
    VehicleOutputListSchema,
    VehicleOutputQuerySchema,
    VehicleOutputSchema,
)
from market.services import deliveries, kpis

blp = Blueprint(
    "kpis",
    __name__,
    description="Chain KPIs (near-shore ratio, 整零比, chip localisation), delivery records "
    "and supplier scorecards",
)

KPI_READERS = (Role.BUYER, Role.AUDITOR, Role.ADMIN)
CSV_DOC = {"description": "With format=csv: UTF-8 CSV with a BOM", "schema": {"type": "string"}}


def csv_alternative(view: Any) -> Any:
    return blp.alt_response(200, content_type="text/csv", **CSV_DOC)(view)


# --- KPIs --------------------------------------------------------------------------------------

KPI_COLUMNS = (
    "year",
    "by",
    "key",
    "label",
    "near_shore_ratio",
    "near_shore_amount",
    "total_amount",
    "near_shore_reason",
    "vehicle_ratio",
    "vehicle_ratio_display",
    "guangdong_parts_amount",
    "vehicle_output_value",
    "vehicle_ratio_target",
    "vehicle_ratio_reason",
    "chip_share",
    "chip_domestic_amount",
    "chips_amount",
    "chip_share_target",
    "chip_share_reason",
)


def _kpi_row(year: int, by: str, key: Any, label: str, figures: dict[str, Any]) -> dict[str, Any]:
    near, vehicle, chips = (
        figures["near_shore_ratio"],
        figures["vehicle_ratio"],
        figures["chip_share"],
    )
    return {
        "year": year,
        "by": by,
        "key": key,
        "label": label,
        "near_shore_ratio": near["value"],
        "near_shore_amount": near["near_shore_amount"],
        "total_amount": near["total_amount"],
        "near_shore_reason": near["reason"],
        "vehicle_ratio": vehicle["value"],
        "vehicle_ratio_display": vehicle["display"],
        "guangdong_parts_amount": vehicle["guangdong_parts_amount"],
        "vehicle_output_value": vehicle["vehicle_output_value"],
        "vehicle_ratio_target": vehicle["target"],
        "vehicle_ratio_reason": vehicle["reason"],
        "chip_share": chips["value"],
        "chip_domestic_amount": chips["domestic_amount"],
        "chips_amount": chips["chips_amount"],
        "chip_share_target": chips["target"],
        "chip_share_reason": chips["reason"],
    }


def kpi_csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per group, then the totals (key ``total``)."""
    year, by = result["year"], result["by"]
    rows = [_kpi_row(year, by, i["key"], i["label"], i) for i in result["items"]]
    rows.append(_kpi_row(year, by, "total", "合计 total", result["totals"]))
    return rows


@blp.route("/insights/kpis")
@allow(*KPI_READERS)
@blp.arguments(KpiQuerySchema, location="query", unknown=RAISE)
@blp.response(200, KpiSchema)
@csv_alternative
def kpi_view(args: dict[str, Any]) -> Any:
    """Near-shore ratio, 整零比 and chip localisation share for a year, grouped.

    Computed from the confirmed, not cancelled purchases the ledger counts (its record and
    reversal entries, with its near-shore verdicts), so the near-shore totals equal those of
    `GET /ledger/summary` for the same year to the cent. Ratios are decimal strings with 4
    places; a ratio with a zero denominator is null with a `reason` ("no data"), never 0.
    整零比 is 1:x with x = Guangdong parts purchases / the admin-declared vehicle output value,
    next to the target 1:0.9; chip share is against 20 %. Buyers see their own OEM, auditors
    the purchases delivered to plants in their jurisdiction, admins everything.
    """
    result = kpis.kpis(actor(), args.get("year"), args["by"], args.get("oem"))
    if args["export_format"] == "csv":
        name = f"kpis-{result['year']}-{result['by']}.csv"
        return export.csv_response(KPI_COLUMNS, kpi_csv_rows(result), name)
    return result


@blp.route("/insights/kpis/chart.svg")
@allow(*KPI_READERS)
@blp.arguments(ChartQuerySchema, location="query", unknown=RAISE)
@blp.doc(
    responses={
        "200": {
            "description": "An SVG bar chart",
            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
        }
    }
)
def kpi_chart(args: dict[str, Any]) -> Response:
    """One KPI as an SVG bar chart, with its target line.

    One bar per group (`by`, default oem) over the caller's scope (as `GET /insights/kpis`);
    the dashed line is the seed's target (整零比 1:0.9, chips 20 %) or, for the near-shore
    ratio, the overall ratio. Groups without data are labelled 无数据 (no data). The SVG is
    deterministic (fixed element ids, no date) and keeps its text as text (no font needed).
    """
    result = kpis.kpis(actor(), args.get("year"), args["by"], args.get("oem"))
    svg = charts.render(args["kind"], result)
    return Response(
        svg,
        headers={
            "Content-Type": "image/svg+xml; charset=utf-8",
            "Cache-Control": "private, max-age=60",
        },
    )


# --- declared vehicle output -------------------------------------------------------------------


@blp.route("/vehicle-outputs")
class VehicleOutputs(MethodView):
    @allow(*KPI_READERS)
    @blp.arguments(VehicleOutputQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, VehicleOutputListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Declared vehicle output values per OEM and year (整零比's denominator).

        Buyers see their own OEM's, auditors those of OEMs with a plant in their
        jurisdiction, admins all; filter by `oem` and `year`.
        """
        return {
            "items": kpis.vehicle_output_list(actor(), oem=args.get("oem"), year=args.get("year"))
        }

    @allow(Role.ADMIN)
    @blp.arguments(VehicleOutputCreateSchema)
    @blp.response(201, VehicleOutputSchema)
    def post(self, data: dict[str, Any]) -> DeclaredVehicleOutput:
        """Declare (or replace) an OEM's vehicle output value of a year.

        Admins only. The value is CNY as an exact decimal string; a second declaration for
        the same OEM and year replaces the first, and the audit log keeps both
        (`vehicle_output.declared`, with the value replaced).
        """
        return kpis.vehicle_output_declare(data, by=actor())


# --- deliveries and scorecards -----------------------------------------------------------------

DELIVERY_COLUMNS = (
    "id",
    "purchase_id",
    "supplier_org_id",
    "promised_on",
    "delivered_on",
    "on_time",
    "accepted_qty",
    "rejected_qty",
    "note",
    "recorded_by_id",
    "created_at",
)


def path_id(name: str, description: str) -> dict[str, Any]:
    return {"in": "path", "name": name, "description": description}


@blp.route(
    "/purchases/<int:purchase_id>/deliveries",
    parameters=[path_id("purchase_id", "The purchase (one you may see).")],
)
class Deliveries(MethodView):
    @allow(Role.BUYER)
    @blp.arguments(DeliveryCreateSchema)
    @blp.response(201, DeliverySchema)
    @blp.alt_response(409, description="The purchase is not confirmed.")
    def post(self, data: dict[str, Any], purchase_id: int) -> Delivery:
        """Record a delivery of a purchase (its buyer).

        Promised and delivered dates on or after the purchase date, the delivered date not in
        the future (Asia/Shanghai); accepted and rejected quantities ≥ 0, not both 0. Only
        confirmed purchases take deliveries (409 otherwise). The supplier's scorecard and its
        performance score (the opt-in ranking factor) follow at once.
        """
        return deliveries.delivery_record(actor(), purchase_id, data)

    @allow(Role.BUYER, Role.SUPPLIER, Role.AUDITOR, Role.ADMIN)
    @blp.arguments(DeliveryQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, DeliveryListSchema)
    @csv_alternative
    def get(self, args: dict[str, Any], purchase_id: int) -> Any:
        """A purchase's delivery records, oldest first.

        Whoever may see the purchase: its buyer's and its supplier's users, auditors of the
        plant's jurisdiction, admins.
        """
        items = deliveries.delivery_list(actor(), purchase_id)
        if args["export_format"] == "csv":
            rows = [DeliverySchema().dump(item) for item in items]
            return export.csv_response(
                DELIVERY_COLUMNS, rows, f"purchase-{purchase_id}-deliveries.csv"
            )
        return {"items": items}


SCORECARD_COLUMNS = (
    "supplier_org_id",
    "supplier_name",
    "as_of",
    "window_rule",
    "deliveries",
    "first_delivered_on",
    "last_delivered_on",
    "on_time_rate",
    "on_time",
    "quality_rate",
    "accepted",
    "rejected",
    "reason",
    "performance_score",
    "ranking_factor",
)


def _scorecard_row(card: dict[str, Any]) -> dict[str, Any]:
    window, on_time, quality = card["window"], card["on_time_rate"], card["quality_rate"]
    return {
        "supplier_org_id": card["supplier_org_id"],
        "supplier_name": card["supplier_name"],
        "as_of": card["as_of"],
        "window_rule": window["rule"],
        "deliveries": window["deliveries"],
        "first_delivered_on": window["first_delivered_on"],
        "last_delivered_on": window["last_delivered_on"],
        "on_time_rate": on_time["value"],
        "on_time": on_time["on_time"],
        "quality_rate": quality["value"],
        "accepted": quality["accepted"],
        "rejected": quality["rejected"],
        "reason": on_time["reason"],
        "performance_score": card["performance_score"],
        "ranking_factor": card["ranking_factor"],
    }


@blp.route(
    "/suppliers/<int:org_id>/scorecard",
    parameters=[path_id("org_id", "The supplier organization.")],
)
@allow(*Role)
@blp.arguments(ScorecardQuerySchema, location="query", unknown=RAISE)
@blp.response(200, ScorecardSchema)
@csv_alternative
@blp.alt_response(403, description="Your organization is pending, suspended or not an OEM.")
def scorecard(args: dict[str, Any], org_id: int) -> Any:
    """A supplier's on-time and quality rates, and its ranking factor.

    Over the deliveries of the last 90 days if there are at least 10, else over the 10 latest
    deliveries; on-time = delivered on or before the promised date, quality = accepted /
    (accepted + rejected). No deliveries: both rates are null with a reason ("no data").
    Visible to the supplier itself, buyers of active OEMs, auditors of the supplier's city and
    admins (404 for other suppliers).
    """
    card = deliveries.scorecard(actor(), org_id)
    if args["export_format"] == "csv":
        return export.csv_response(
            SCORECARD_COLUMNS, [_scorecard_row(card)], f"scorecard-{org_id}.csv"
        )
    return card
