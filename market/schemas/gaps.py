"""Query and response schemas of the chain-gap views (per plant or city, province, the map)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from market import refdata
from market.http import MAX_ID
from market.schemas import StrictSchema
from market.schemas.search import CityField
from market.services import gaps

MAX_CERTS = 10


class CertListField(fields.String):
    """Standards as one comma-separated value (``certs=iatf-16949,iso-14001``); loads as a
    tuple of known standard ids."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        raw = super()._deserialize(value, attr, data, **kwargs)
        wanted = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
        if len(wanted) > MAX_CERTS:
            raise ValidationError(f"At most {MAX_CERTS} standards.")
        if any(c not in refdata.standards() for c in wanted):
            raise ValidationError("Unknown standard; see /api/v1/certifications.")
        return wanted


class GapOptionsSchema(StrictSchema):
    radius_km = fields.Float(
        load_default=gaps.DEFAULT_RADIUS_KM,
        allow_nan=False,
        validate=validate.Range(
            min=gaps.MIN_RADIUS_KM,
            max=gaps.MAX_RADIUS_KM,
            error=f"Must be from {gaps.MIN_RADIUS_KM} to {gaps.MAX_RADIUS_KM} km.",
        ),
        metadata={"description": "Count suppliers with an active site within this many km."},
    )
    depth = fields.Integer(
        load_default=gaps.DEFAULT_DEPTH,
        validate=validate.Range(
            min=1,
            max=gaps.max_depth(),
            error=f"Must be from 1 to {gaps.max_depth()} (the taxonomy's depth).",
        ),
        metadata={
            "description": "Taxonomy depth of the rows (1: the six key links; deeper branches "
            "that end early keep their leaf)."
        },
    )
    certs = CertListField(
        load_default=(),
        metadata={
            "description": "Comma-separated standard ids (GET /certifications); a supplier "
            "counts only with a valid active certificate of each, on the business date."
        },
    )

    @post_load
    def _as_options(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["options"] = gaps.GapOptions(
            radius_km=data.pop("radius_km"), depth=data.pop("depth"), certs=data.pop("certs")
        )
        return data


class _CenterQuery(GapOptionsSchema):
    plant = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "The OEM plant (site id) to measure from."},
    )
    city = CityField(
        metadata={
            "description": "Or a Guangdong city (code, 广州/广州市 or Guangzhou): measured from "
            "the city's seat."
        }
    )

    @validates_schema
    def _one_center(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("plant" in data) == ("city" in data):
            raise ValidationError("Give either plant or city.", field_name="plant")


class GapQuerySchema(_CenterQuery):
    export_format = fields.String(
        data_key="format",
        load_default="json",
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "json, or csv (UTF-8 with a BOM)."},
    )


class GapMapQuerySchema(_CenterQuery):
    pass


class ProvinceQuerySchema(GapOptionsSchema):
    export_format = fields.String(
        data_key="format",
        load_default="json",
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "json, or csv (UTF-8 with a BOM), one row per city × category."},
    )


# --- responses ----------------------------------------------------------------------------------


class GapRowSchema(Schema):
    category = fields.String(metadata={"description": "Taxonomy slug."})
    name_zh = fields.String()
    name_en = fields.String()
    suppliers = fields.Integer(metadata={"description": "Qualified suppliers within the radius."})
    nearest_km = fields.Float(
        allow_none=True, metadata={"description": "Distance to the nearest one; null: a gap."}
    )
    tier_mix = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": 'Suppliers per tier: {"1": n, "2": n, "3": n}.'},
    )
    open_demands = fields.Integer(metadata={"description": "Open demands in this category."})
    gap = fields.Boolean(metadata={"description": "No qualified supplier (补链)."})
    single_source = fields.Boolean(metadata={"description": "Exactly one (single-source risk)."})


class GapCenterSchema(Schema):
    kind = fields.String(metadata={"description": "plant | city"})
    plant_id = fields.Integer(allow_none=True)
    name = fields.String()
    city_code = fields.String()
    lat = fields.Float()
    lon = fields.Float()


class GapSummarySchema(Schema):
    categories = fields.Integer()
    gaps = fields.Integer()
    single_source = fields.Integer()
    suppliers = fields.Integer(metadata={"description": "Distinct suppliers counted."})


class GapSupplierSchema(Schema):
    id = fields.Integer()
    legal_name = fields.String()
    tier = fields.Integer(allow_none=True)
    lat = fields.Float(metadata={"description": "Its nearest active site."})
    lon = fields.Float()
    distance_km = fields.Float()
    categories = fields.List(fields.String())


class _OptionsEcho(Schema):
    radius_km = fields.Float()
    depth = fields.Integer()
    certs = fields.List(fields.String())
    on = fields.Date(metadata={"description": "The business date certificates are valid on."})


class GapResultSchema(_OptionsEcho):
    center = fields.Nested(GapCenterSchema)
    summary = fields.Nested(GapSummarySchema)
    categories = fields.List(fields.Nested(GapRowSchema))
    suppliers = fields.List(fields.Nested(GapSupplierSchema))


class ProvinceCitySchema(Schema):
    center = fields.Nested(GapCenterSchema)
    summary = fields.Nested(GapSummarySchema)
    categories = fields.List(fields.Nested(GapRowSchema))


class ProvinceResultSchema(_OptionsEcho):
    cities = fields.List(fields.Nested(ProvinceCitySchema))
