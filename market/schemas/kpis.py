"""Schemas of the chain KPIs, declared vehicle output, delivery records and scorecards.

Ratios and money are exact decimal strings (a ratio with 4 places, "0.2500"); a ratio whose
denominator is 0 is null with a ``reason`` ("no data"), never 0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market.insights.charts import KINDS
from market.schemas import StrictSchema
from market.schemas.fields import Money
from market.services.kpis import GROUPINGS

MAX_OUTPUT = Decimal("99999999999999.99")  # NUMERIC(18, 2)
MAX_QTY = 2_000_000_000
_YEAR = validate.Range(min=2000, max=2200)
_ID = validate.Range(min=1, max=2**31 - 1)


def Ratio(description: str) -> fields.Decimal:
    return fields.Decimal(
        as_string=True,
        places=4,
        allow_none=True,
        metadata={"type": "string", "nullable": True, "description": description},
    )


def Amount(description: str, **kwargs: Any) -> fields.Decimal:
    return fields.Decimal(
        as_string=True,
        places=2,
        metadata={"type": "string", "description": description},
        **kwargs,
    )


def _format() -> fields.String:
    return fields.String(
        data_key="format",
        load_default="json",
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "json (default) or csv (UTF-8 with a BOM, for Excel)."},
    )


# --- KPIs ------------------------------------------------------------------------------------


class KpiQuerySchema(StrictSchema):
    year = fields.Integer(
        validate=_YEAR,
        metadata={"description": "The business year; defaults to the current one (Asia/Shanghai)."},
    )
    by = fields.String(
        load_default="oem",
        validate=validate.OneOf(GROUPINGS),
        metadata={
            "description": "Group by oem, plant, city (the plant's city) or category "
            "(top-level taxonomy category)."
        },
    )
    oem = fields.Integer(
        validate=_ID,
        metadata={"description": "Admins and auditors: one OEM only (buyers: always their own)."},
    )
    export_format = _format()


class ChartQuerySchema(StrictSchema):
    kind = fields.String(
        required=True,
        validate=validate.OneOf(KINDS),
        metadata={"description": "near_shore, vehicle_ratio (整零比) or chips (国产化率)."},
    )
    year = KpiQuerySchema().fields["year"]
    by = fields.String(
        load_default="oem",
        validate=validate.OneOf(GROUPINGS),
        metadata={"description": "One bar per oem (default), plant, city or category."},
    )
    oem = fields.Integer(
        validate=_ID,
        metadata={"description": "Admins and auditors: one OEM only (buyers: always their own)."},
    )


class NearShoreSchema(Schema):
    value = Ratio("near-shore amount / all confirmed amount; null: no data")
    reason = fields.String(allow_none=True, metadata={"description": "Why value is null."})
    near_shore_amount = Amount("Near-shore amount by the ledger's verdicts (CNY).")
    total_amount = Amount("All confirmed, not cancelled purchases (CNY).")


class VehicleRatioSchema(Schema):
    value = Ratio("x of 整零比 1:x = Guangdong parts purchases / declared vehicle output value")
    display = fields.String(allow_none=True, metadata={"description": 'e.g. "1:0.78"'})
    reason = fields.String(allow_none=True, metadata={"description": "Why value is null."})
    guangdong_parts_amount = Amount("Purchases from supplier sites in Guangdong (CNY).")
    vehicle_output_value = Amount("The declared vehicle output value (CNY).", allow_none=True)
    target = Ratio("The seed's target x (0.90)")
    target_display = fields.String(metadata={"description": '"1:0.9"'})
    target_met = fields.Boolean(allow_none=True)


class ChipShareSchema(Schema):
    value = Ratio("domestic-origin ic.chips amount / all ic.chips amount; null: no data")
    reason = fields.String(allow_none=True, metadata={"description": "Why value is null."})
    domestic_amount = Amount("ic.chips purchases from domestic-origin capabilities (CNY).")
    chips_amount = Amount("All ic.chips purchases (CNY).")
    target = Ratio("The seed's target (0.20)")
    target_met = fields.Boolean(allow_none=True)


class KpiFiguresSchema(Schema):
    near_shore_ratio = fields.Nested(NearShoreSchema)
    vehicle_ratio = fields.Nested(VehicleRatioSchema)
    chip_share = fields.Nested(ChipShareSchema)


class KpiItemSchema(KpiFiguresSchema):
    key = fields.String(
        metadata={"description": "OEM id, plant id (as text), city code or category slug"}
    )
    label = fields.String()


class KpiSchema(Schema):
    year = fields.Integer()
    by = fields.String()
    items = fields.List(fields.Nested(KpiItemSchema))
    totals = fields.Nested(KpiFiguresSchema)


# --- declared vehicle output ---------------------------------------------------------------


class VehicleOutputCreateSchema(StrictSchema):
    oem_org_id = fields.Integer(
        required=True, strict=True, validate=_ID, metadata={"description": "The OEM."}
    )
    year = fields.Integer(
        required=True,
        strict=True,
        validate=_YEAR,
        metadata={"description": "A year up to the current one."},
    )
    output_value = Money(
        maximum=MAX_OUTPUT,
        required=True,
        metadata={"description": "The OEM's vehicle output value of the year in CNY."},
    )
    vehicles = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_QTY),
        metadata={"description": "Number of vehicles built (optional, informative)."},
    )
    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Source of the figure (e.g. the annual report)."},
    )


class VehicleOutputQuerySchema(StrictSchema):
    oem = fields.Integer(validate=_ID, metadata={"description": "One OEM only."})
    year = fields.Integer(validate=_YEAR, metadata={"description": "One year only."})


class VehicleOutputSchema(Schema):
    id = fields.Integer()
    oem_org_id = fields.Integer()
    year = fields.Integer()
    output_value = Amount("CNY")
    vehicles = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    declared_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class VehicleOutputListSchema(Schema):
    items = fields.List(fields.Nested(VehicleOutputSchema))


# --- deliveries and scorecards ---------------------------------------------------------------


def _qty(description: str) -> fields.Integer:
    return fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_QTY),
        metadata={"description": description},
    )


class DeliveryCreateSchema(StrictSchema):
    promised_on = fields.Date(
        required=True, metadata={"description": "The promised delivery date (≥ purchased_on)."}
    )
    delivered_on = fields.Date(
        required=True,
        metadata={"description": "≥ purchased_on and not in the future (Asia/Shanghai)."},
    )
    accepted_qty = _qty("Quantity accepted at incoming inspection (≥ 0).")
    rejected_qty = _qty("Quantity rejected (≥ 0); accepted + rejected > 0.")
    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Free text (e.g. the delivery note number)."},
    )

    @validates_schema
    def _some_quantity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("accepted_qty", 1) + data.get("rejected_qty", 1) <= 0:
            raise ValidationError(
                "accepted_qty + rejected_qty must be more than 0.", field_name="accepted_qty"
            )


class DeliveryQuerySchema(StrictSchema):
    export_format = _format()


class DeliverySchema(Schema):
    id = fields.Integer()
    purchase_id = fields.Integer()
    supplier_org_id = fields.Integer()
    promised_on = fields.Date()
    delivered_on = fields.Date()
    on_time = fields.Function(
        lambda d: d.delivered_on <= d.promised_on,
        metadata={"type": "boolean", "description": "delivered_on ≤ promised_on"},
    )
    accepted_qty = fields.Integer()
    rejected_qty = fields.Integer()
    note = fields.String(allow_none=True)
    recorded_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))


class ScorecardQuerySchema(StrictSchema):
    export_format = _format()


class WindowSchema(Schema):
    rule = fields.String(
        metadata={
            "description": "last_90_days (at least 10 deliveries in them) or last_10_deliveries"
        }
    )
    deliveries = fields.Integer()
    first_delivered_on = fields.Date(allow_none=True)
    last_delivered_on = fields.Date(allow_none=True)


class OnTimeSchema(Schema):
    value = Ratio("on-time deliveries / deliveries; null: no data")
    reason = fields.String(allow_none=True)
    on_time = fields.Integer()
    deliveries = fields.Integer()


class QualitySchema(Schema):
    value = Ratio("accepted / (accepted + rejected); null: no data")
    reason = fields.String(allow_none=True)
    accepted = fields.Integer()
    rejected = fields.Integer()


class ScorecardSchema(Schema):
    supplier_org_id = fields.Integer()
    supplier_name = fields.String()
    as_of = fields.Date(metadata={"description": "Today in Asia/Shanghai."})
    window = fields.Nested(WindowSchema)
    on_time_rate = fields.Nested(OnTimeSchema)
    quality_rate = fields.Nested(QualitySchema)
    performance_score = Ratio("Stored f_p: 0.5 + 0.25 × on-time + 0.25 × quality; null: none")
    ranking_factor = Ratio("f_p as ranking uses it (0.75 without deliveries)")
