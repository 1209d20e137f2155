"""Schemas of the ledger API: entries, summaries, the chain check, policies, baselines, outbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market.models import EntryKind, OutboxStatus, OutboxTopic
from market.schemas import PageQuerySchema, StrictSchema
from market.schemas.fields import DecimalString, Money, Rate

# Bounds of the admins' inputs (CNY), well inside the ledger's NUMERIC(18, 2).
MAX_ANNUAL_CAP = Decimal(10**12)
MAX_BASELINE = Decimal(10**13)


def SignedMoney(**kwargs: Any) -> Money:
    """Money in ledger responses: a reversal negates its entry, and a year's totals may pass
    the bound of one purchase."""
    return Money(minimum=None, maximum=None, **kwargs)


def _exact(places: int) -> dict[str, Any]:
    """OpenAPI for decimals answered as strings (distances, rates)."""
    return {"metadata": {"type": "string", "format": "decimal"}, "places": places}


# --- the ledger --------------------------------------------------------------------------------


class LedgerQuerySchema(PageQuerySchema):
    year = fields.Integer(
        validate=validate.Range(min=1990, max=2200),
        metadata={"description": "Only entries of purchases of this business year."},
    )
    oem = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Only entries of this OEM organization."},
    )
    supplier = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Only entries of purchases from this supplier organization."},
    )
    city = fields.String(
        validate=validate.Regexp(r"^\d{6}$", error="A 6-digit GB/T 2260 city code."),
        metadata={"description": "Only entries of plants in this city (GB/T 2260 code)."},
    )
    near_shore = fields.Boolean(
        metadata={"description": "true: only near-shore entries; false: only the others."}
    )
    kind = fields.Enum(
        EntryKind,
        by_value=True,
        metadata={"description": "Only entries of this kind: record, reversal or adjustment."},
    )
    date_from = fields.Date(
        metadata={"description": "Only purchases made on or after this business date."}
    )
    date_to = fields.Date(
        metadata={"description": "Only purchases made on or before this business date."}
    )
    export_format = fields.String(
        data_key="format",
        load_default="json",
        validate=validate.OneOf(["json", "csv"]),
        metadata={
            "description": "json (pages, the default) or csv (all rows, streamed, UTF-8 with BOM)."
        },
    )

    @validates_schema
    def _dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_to"] < data["date_from"]:
            raise ValidationError("Must be on or after date_from.", field_name="date_to")


class LedgerEntrySchema(Schema):
    """One entry: the same columns, in the same order, as the CSV export."""

    seq = fields.Integer()
    format = fields.Integer(metadata={"description": "1: written under the v1 rule; 2: v2"})
    cause = fields.String(metadata={"description": "What appended it (unique)."})
    kind = fields.Enum(EntryKind, by_value=True)
    purchase_id = fields.Integer(allow_none=True)
    invoice_number = fields.String(allow_none=True)
    purchased_on = fields.Date(allow_none=True)
    year = fields.Integer()
    oem_org_id = fields.Integer()
    oem_uscc = fields.String(allow_none=True)
    oem_name = fields.String(allow_none=True)
    plant_city_code = fields.String(allow_none=True)
    supplier_org_id = fields.Integer(allow_none=True)
    supplier_uscc = fields.String(allow_none=True)
    supplier_name = fields.String(allow_none=True)
    supplier_city_code = fields.String(allow_none=True)
    amount = SignedMoney()
    near_shore = fields.Boolean()
    reason_code = fields.String()
    distance_km = fields.Decimal(as_string=True, allow_none=True, **_exact(3))
    policy_version = fields.Integer()
    baseline = SignedMoney(allow_none=True, metadata={"description": "null: missing (held)"})
    baseline_source = fields.String(
        allow_none=True, metadata={"description": "declared | platform | missing"}
    )
    held = fields.Boolean(allow_none=True)
    near_shore_total_before = SignedMoney()
    near_shore_total = SignedMoney(allow_none=True, metadata={"description": "T after it"})
    increment_total = SignedMoney(allow_none=True, metadata={"description": "I* after it"})
    subsidy_total = SignedMoney(allow_none=True, metadata={"description": "S* after it"})
    increment = SignedMoney(metadata={"description": "The change of I* it causes."})
    subsidy = SignedMoney(metadata={"description": "The change of S* it causes."})
    recorded_at = fields.DateTime()
    prev_hash = fields.String()
    entry_hash = fields.String()


class SummaryQuerySchema(StrictSchema):
    year = fields.Integer(
        validate=validate.Range(min=1990, max=2200),
        metadata={"description": "Defaults to the current business year (Asia/Shanghai)."},
    )
    oem = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Only the figures of this OEM organization."},
    )


class PositionSchema(Schema):
    """Where an OEM stands in a year under the v2 rule."""

    near_shore_total = SignedMoney(metadata={"description": "T"})
    baseline = SignedMoney(allow_none=True, metadata={"description": "B; null while missing"})
    baseline_source = fields.String(metadata={"description": "declared | platform | missing"})
    increment = SignedMoney(metadata={"description": "I* = max(0, T − B)"})
    subsidy = SignedMoney(metadata={"description": "S* = min(cap, I* × rate, half-up)"})
    held = fields.Boolean(metadata={"description": "B is missing: nothing is granted yet"})
    increment_if_declared = SignedMoney(
        metadata={"description": "While held: against the platform's own record of Y−1."}
    )
    subsidy_if_declared = SignedMoney()
    annual_cap = SignedMoney()
    cap_left = SignedMoney()
    cap_reached = fields.Boolean()
    policy_version = fields.Integer()


class OemSummarySchema(PositionSchema):
    oem_org_id = fields.Integer()
    oem_name = fields.String(allow_none=True)
    oem_uscc = fields.String(allow_none=True)
    entries = fields.Integer()
    total_amount = SignedMoney()
    consistent = fields.Boolean(
        metadata={"description": "The entries' sums equal the rule recomputed (always true)."}
    )


class OemPositionSchema(PositionSchema):
    oem_org_id = fields.Integer()
    year = fields.Integer()


class SummaryTotalsSchema(Schema):
    total_amount = SignedMoney()
    near_shore_total = SignedMoney()
    increment = SignedMoney()
    subsidy = SignedMoney()


class SummarySchema(Schema):
    year = fields.Integer()
    policy_version = fields.Integer()
    items = fields.List(fields.Nested(OemSummarySchema))
    totals = fields.Nested(SummaryTotalsSchema)


class ChainReportSchema(Schema):
    ok = fields.Boolean()
    entries = fields.Integer()
    head_hash = fields.String(allow_none=True)
    broken_at = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)


class LedgerEntryStatusSchema(Schema):
    """An entry of one purchase; suppliers get the verdict only (no baseline or subsidy)."""

    seq = fields.Integer()
    entry_hash = fields.String()
    recorded_at = fields.DateTime()
    near_shore = fields.Boolean()
    reason_code = fields.String()
    distance_km = fields.Decimal(as_string=True, allow_none=True, **_exact(3))
    policy_version = fields.Integer()
    baseline = SignedMoney(allow_none=True)
    baseline_source = fields.String(allow_none=True)
    held = fields.Boolean(allow_none=True)
    increment = SignedMoney()
    subsidy = SignedMoney()


class LedgerStatusSchema(Schema):
    """``market.ledger.ledger_status``: for ``GET /purchases/{id}``."""

    status = fields.String(
        metadata={"description": "not_counted | pending | failed | recorded | reversed"}
    )
    entry = fields.Nested(LedgerEntryStatusSchema, allow_none=True)
    reversal = fields.Nested(LedgerEntryStatusSchema, allow_none=True)


class SubsidyPreviewSchema(Schema):
    """``market.ledger.preview``: what counting a purchase would change (buyers only)."""

    near_shore = fields.Boolean()
    reason_code = fields.String()
    distance_km = fields.Decimal(as_string=True, **_exact(3))
    policy_version = fields.Integer()
    year = fields.Integer()
    baseline = SignedMoney(allow_none=True)
    baseline_source = fields.String()
    held = fields.Boolean()
    near_shore_total_before = SignedMoney()
    near_shore_total_after = SignedMoney()
    increment = SignedMoney()
    subsidy = SignedMoney()
    message = fields.String()


# --- policies and baselines --------------------------------------------------------------------


class PolicyCreateSchema(StrictSchema):
    effective_from = fields.Date(required=True)
    effective_until = fields.Date(load_default=None, allow_none=True)
    province_prefix = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^\d{2}(\d{2}){0,2}$", error="2, 4 or 6 digits of a GB/T 2260 division code."
        ),
    )
    max_distance_km = DecimalString(
        places=3, maximum=2000, noun="distance", example="200", subject="Kilometres", required=True
    )
    rate = Rate(required=True)
    annual_cap = Money(maximum=MAX_ANNUAL_CAP, required=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class PolicySchema(Schema):
    version = fields.Integer()
    effective_from = fields.Date()
    effective_until = fields.Date(allow_none=True)
    province_prefix = fields.String()
    max_distance_km = fields.Decimal(as_string=True, **_exact(3))
    rate = fields.Decimal(as_string=True, **_exact(6))
    annual_cap = SignedMoney()
    note = fields.String(allow_none=True)
    created_at = fields.DateTime()


class PolicyListSchema(Schema):
    items = fields.List(fields.Nested(PolicySchema))


class BaselineCreateSchema(StrictSchema):
    oem_org_id = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1)
    )
    year = fields.Integer(required=True, strict=True, validate=validate.Range(min=1990, max=2200))
    # A year with no near-shore purchasing at all is a real, declarable total.
    amount = Money(exclusive_minimum=False, maximum=MAX_BASELINE, required=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class BaselineQuerySchema(StrictSchema):
    oem = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Only baselines of this OEM organization."},
    )
    year = fields.Integer(
        validate=validate.Range(min=1990, max=2200),
        metadata={"description": "Only baselines declared for this year."},
    )


class BaselineSchema(Schema):
    id = fields.Integer()
    oem_org_id = fields.Integer()
    year = fields.Integer()
    amount = SignedMoney()
    note = fields.String(allow_none=True)
    declared_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class BaselineListSchema(Schema):
    items = fields.List(fields.Nested(BaselineSchema))


# --- the outbox (admins) -----------------------------------------------------------------------


class OutboxQuerySchema(PageQuerySchema):
    status = fields.List(
        fields.Enum(OutboxStatus, by_value=True),
        load_default=lambda: [OutboxStatus.DEAD, OutboxStatus.PENDING],
        metadata={
            "description": "Rows in these states (repeat the parameter); default: dead and pending."
        },
    )
    topic = fields.Enum(
        OutboxTopic,
        by_value=True,
        metadata={"description": "Only rows of this topic, e.g. ledger.record or search.sync."},
    )


class OutboxEventSchema(Schema):
    id = fields.Integer()
    topic = fields.String()
    aggregate_id = fields.Integer()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    enqueued_at = fields.DateTime(allow_none=True)
    processed_at = fields.DateTime(allow_none=True)
