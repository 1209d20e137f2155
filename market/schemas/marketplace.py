"""Load and dump schemas of the marketplace: demands (RFQs), quotes, awards and purchases.

Load schemas are strict (unknown fields are refused, so ``state``, ``status`` or
``organization_id`` can never be mass-assigned) and validate everything that needs no database:
money as exact decimal strings, plain single-line text, dates against today, taxonomy and
standard ids. Ownership of the ids they carry is checked by the services.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar, cast

from flask import has_request_context
from flask_login import current_user
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from market import refdata
from market.clock import business_today as today
from market.database import CENT
from market.http import MAX_ID
from market.models import (
    Confirmation,
    DemandState,
    InvoiceReview,
    PurchaseParty,
    PurchaseSource,
    PurchaseStatus,
    QuoteStatus,
    Role,
)
from market.schemas import PageQuerySchema, StrictSchema
from market.schemas.fields import MAX_AMOUNT, Money
from market.schemas.ledger import LedgerStatusSchema, SubsidyPreviewSchema
from market.schemas.search import MatchSchema, search_words

MAX_UNIT_PRICE = Decimal("99999999.99")
MAX_QUANTITY = 10_000_000
MAX_REQUIRED_STANDARDS = 10
MAX_LEAD_TIME_DAYS = 730
MAX_NEED_BY_YEARS = 5
MAX_QUOTE_VALIDITY_DAYS = 366 * 2
DEFAULT_RADIUS_KM = 200
MAX_RADIUS_KM = 500

# Something that looks like an HTML/XML tag or comment; "<5 mm" or "a > b" are fine.
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!?][^>]*>")
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_/.\-]*$")
_UNIT = re.compile(r"^[^\s<>].*$")


# --- fields -------------------------------------------------------------------------------------


class PlainText(fields.String):
    """Trimmed plain text: not empty, bounded, no markup; single line unless ``multiline``."""

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(max=max_length), **kwargs)
        self.max_length = max_length
        self.multiline = multiline

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("May not be empty.")
        if len(text) > self.max_length:
            raise ValidationError(f"At most {self.max_length} characters.")
        if self.multiline:
            text = text.replace("\r\n", "\n")
        elif "\r" in text or "\n" in text:
            # A line break in a one-line field is how log lines get forged.
            raise ValidationError("Must be a single line (no line breaks).")
        if _MARKUP.search(text):
            raise ValidationError("Plain text only; markup such as HTML tags is not accepted.")
        return text


def Reference(**kwargs: Any) -> fields.String:
    """An invoice (发票号) or PO number: 1–64 letters, digits and ``- _ / .``; upper-cased."""
    return _Reference(
        validate=[
            validate.Length(min=1, max=64, error="Must be 1 to 64 characters."),
            validate.Regexp(
                _REFERENCE,
                error="Only letters, digits and - _ / . are allowed, "
                "starting with a letter or digit.",
            ),
        ],
        metadata={"example": "44001234-20260315-0001", **kwargs.pop("metadata", {})},
        **kwargs,
    )


class _Reference(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        # One invoice is one purchase whatever the case it is typed in.
        return super()._deserialize(value, attr, data, **kwargs).upper()


def Id(*, strict: bool = True, **kwargs: Any) -> fields.Integer:
    """A row id: a positive integer that fits the database's integer keys.

    Bodies must send a JSON integer (``strict``); query strings are text by nature.
    """
    return fields.Integer(
        strict=strict,
        validate=validate.Range(min=1, max=MAX_ID, error="Not a valid id."),
        **kwargs,
    )


def _category(slug: str) -> None:
    if slug not in refdata.categories():
        raise ValidationError("Not a category of the part taxonomy (see GET /api/v1/taxonomy).")


def _standard(standard_id: str) -> None:
    if standard_id not in refdata.standards():
        raise ValidationError("Not a certification standard (see GET /api/v1/certifications).")


class BoundedList(fields.List):
    """A list refused whole when longer than ``max_items`` (not one error per item)."""

    def __init__(self, cls_or_instance: Any, *, max_items: int, **kwargs: Any) -> None:
        super().__init__(
            cls_or_instance,
            validate=validate.Length(max=max_items, error=f"At most {max_items} items."),
            **kwargs,
        )
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) > self.max_items:
            raise ValidationError(f"At most {self.max_items} items.")
        return super()._deserialize(value, attr, data, **kwargs)


def sort_field(*columns: str, default: str) -> fields.String:
    """``sort=name`` ascending or ``sort=-name`` descending; ties are broken by id."""
    choices = [c for name in columns for c in (name, f"-{name}")]
    return fields.String(
        load_default=default,
        validate=validate.OneOf(choices),
        metadata={"description": f"One of {', '.join(choices)} (default {default})."},
    )


# --- demands ------------------------------------------------------------------------------------


class TierWeightsField(fields.Dict):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            keys=fields.String(
                validate=validate.OneOf(["1", "2", "3"], error="Tiers are 1, 2, 3.")
            ),
            values=fields.Float(
                allow_nan=False, validate=validate.Range(min=0, max=1, error="Between 0 and 1.")
            ),
            metadata={
                "description": 'Per-tier weights overriding {"1": 1.0, "2": 0.8, "3": 0.6}.',
                "example": {"1": 0.8, "2": 1.0, "3": 0.6},
            },
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) and len(value) > 3:
            # Refused whole: one message, not one per key of a huge object.
            raise ValidationError("Give weights for tiers 1, 2 and 3 only.")
        weights = super()._deserialize(value, attr, data, **kwargs)
        if weights is not None and not all(math.isfinite(w) for w in weights.values()):
            raise ValidationError("Weights must be finite numbers between 0 and 1.")
        return weights


class DemandCreateSchema(StrictSchema):
    plant_id = Id(required=True, metadata={"description": "A plant (site) of your organization."})
    category = fields.String(
        required=True, validate=_category, metadata={"example": "chassis.braking.foundation"}
    )
    title = PlainText(required=True, max_length=200)
    description = PlainText(max_length=5000, multiline=True, allow_none=True)
    quantity = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )
    unit = PlainText(required=True, max_length=24, metadata={"example": "pcs"})
    target_unit_price = Money(maximum=MAX_UNIT_PRICE, allow_none=True)
    required_standards = BoundedList(
        fields.String(validate=_standard),
        max_items=MAX_REQUIRED_STANDARDS,
        load_default=list,
        metadata={"example": ["iatf-16949"]},
    )
    need_by = fields.Date(required=True, metadata={"description": "Today or later."})
    radius_km = fields.Integer(
        load_default=DEFAULT_RADIUS_KM,
        strict=True,
        validate=validate.Range(min=1, max=MAX_RADIUS_KM),
    )
    tier_weights = TierWeightsField(allow_none=True)
    rank_by_performance = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Opt in: multiply each supplier's score by its delivery performance "
            "factor f_p (0.5 to 1.0; 0.75 without deliveries). Off: the default ranking."
        },
    )
    hide_target_price = fields.Boolean(
        metadata={
            "description": "true: suppliers never see target_unit_price (in demand views, "
            "lists, their feed and notifications); default false."
        }
    )

    @validates("required_standards")
    def _unique_standards(self, value: list[str], data_key: str) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("Each standard may be listed once.")

    @validates("need_by")
    def _need_by_ahead(self, value: date, data_key: str) -> None:
        if value < today():
            raise ValidationError("Must not be in the past.")
        if value > today() + timedelta(days=366 * MAX_NEED_BY_YEARS):
            raise ValidationError(f"Must be within {MAX_NEED_BY_YEARS} years.")


class DemandPatchSchema(DemandCreateSchema):
    """Any subset of the creation fields (only while the demand is a draft)."""


class DemandPlantSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    city_code = fields.String()
    lat = fields.Float()
    lon = fields.Float()


def demand_state_now(demand: Any) -> str:
    """An open demand whose need_by has passed is closed, even before the job closes it."""
    if demand.state is DemandState.OPEN and demand.need_by < today():
        return DemandState.CLOSED.value
    return str(demand.state.value)


def _viewer_role() -> Role | None:
    """The role of the user a response is for (None outside a signed-in request)."""
    if has_request_context() and current_user.is_authenticated:
        return cast(Role, current_user.role)
    return None


class DemandSchema(Schema):
    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if attr == "target_unit_price":  # hidden from suppliers when the buyer says so
            return obj.target_price_for(_viewer_role())
        return super().get_attribute(obj, attr, default)

    id = fields.Integer()
    organization_id = fields.Integer()
    oem_name = fields.String(attribute="organization.legal_name")
    plant_id = fields.Integer()
    plant = fields.Nested(DemandPlantSchema)
    category = fields.String()
    title = fields.String()
    description = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit = fields.String()
    target_unit_price = Money(
        maximum=MAX_UNIT_PRICE,
        allow_none=True,
        metadata={"description": "null for suppliers when hide_target_price is true."},
    )
    hide_target_price = fields.Boolean()
    required_standards = fields.List(fields.String())
    need_by = fields.Date()
    radius_km = fields.Integer()
    tier_weights = fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True)
    rank_by_performance = fields.Boolean()
    state = fields.Function(
        demand_state_now, metadata={"type": "string", "enum": [s.value for s in DemandState]}
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


class DemandQuerySchema(PageQuerySchema):
    state = fields.String(
        validate=validate.OneOf([s.value for s in DemandState]),
        metadata={
            "description": "Only demands in this state: draft, open, awarded, closed or cancelled."
        },
    )
    category = fields.String(
        validate=_category, metadata={"description": "This category and its sub-categories."}
    )
    plant_id = Id(strict=False, metadata={"description": "Only demands for this plant."})
    oem = Id(strict=False, metadata={"description": "The buying organization's id."})
    q = search_words("Words to find in the title or description")
    sort = sort_field("id", "created_at", "need_by", default="-id")


# --- quotes -------------------------------------------------------------------------------------


class QuoteCreateSchema(StrictSchema):
    unit_price = Money(required=True, maximum=MAX_UNIT_PRICE)
    quantity = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )
    lead_time_days = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=MAX_LEAD_TIME_DAYS)
    )
    site_id = Id(required=True, metadata={"description": "An active site of yours to ship from."})
    valid_until = fields.Date(required=True, metadata={"description": "Today or later."})
    note = PlainText(max_length=2000, multiline=True, allow_none=True)

    @validates("valid_until")
    def _valid_until_ahead(self, value: date, data_key: str) -> None:
        if value < today():
            raise ValidationError("Must not be in the past.")
        if value > today() + timedelta(days=MAX_QUOTE_VALIDITY_DAYS):
            raise ValidationError("A quote may be valid for at most two years.")

    @validates_schema
    def _total_in_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        price, quantity = data.get("unit_price"), data.get("quantity")
        if price is not None and quantity is not None and price * quantity > MAX_AMOUNT:
            raise ValidationError(f"unit_price × quantity may be at most {MAX_AMOUNT}.", "quantity")


def _quote_total(quote: Any) -> str:
    return str((quote.unit_price * quote.quantity).quantize(CENT))


class QuoteSchema(Schema):
    id = fields.Integer()
    demand_id = fields.Integer()
    organization_id = fields.Integer()
    supplier_name = fields.String(attribute="organization.legal_name")
    site_id = fields.Integer()
    unit_price = Money(maximum=MAX_UNIT_PRICE)
    quantity = fields.Integer()
    total = fields.Function(
        _quote_total, metadata={"type": "string", "description": "unit_price × quantity (CNY)."}
    )
    lead_time_days = fields.Integer()
    valid_until = fields.Date()
    expired = fields.Function(
        lambda quote: quote.valid_until < today(), metadata={"type": "boolean"}
    )
    note = fields.String(allow_none=True)
    status = fields.Enum(QuoteStatus, by_value=True)
    created_at = fields.DateTime()
    revision = fields.Integer(
        metadata={"description": "The current version: 1 as quoted, one more per revision."}
    )
    revised_at = fields.DateTime(allow_none=True, metadata={"description": "The last revision."})


class QuoteReviseSchema(StrictSchema):
    """A new version of a submitted quote: any subset of these (at least one must change)."""

    unit_price = Money(maximum=MAX_UNIT_PRICE, metadata={"description": "CNY per unit."})
    quantity = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_QUANTITY),
        metadata={"description": "Units offered."},
    )
    lead_time_days = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_LEAD_TIME_DAYS),
        metadata={"description": "Days from order to delivery."},
    )
    valid_until = fields.Date(metadata={"description": "Today or later, at most two years ahead."})
    note = PlainText(
        max_length=2000,
        multiline=True,
        allow_none=True,
        metadata={"description": "Free text for the buyer; null removes it."},
    )

    _valid_until_ahead = QuoteCreateSchema._valid_until_ahead
    _total_in_range = QuoteCreateSchema._total_in_range


class QuoteRevisionSchema(Schema):
    """One version of a quote as it was submitted."""

    revision = fields.Integer(metadata={"description": "1 as quoted, then one more each time."})
    site_id = fields.Integer()
    unit_price = Money(maximum=MAX_UNIT_PRICE)
    quantity = fields.Integer()
    total = fields.Function(
        _quote_total, metadata={"type": "string", "description": "unit_price × quantity (CNY)."}
    )
    lead_time_days = fields.Integer()
    valid_until = fields.Date()
    note = fields.String(allow_none=True)
    created_at = fields.DateTime(metadata={"description": "When this version was submitted."})


class QuoteRevisionQuerySchema(PageQuerySchema):
    sort = sort_field("revision", default="revision")


class QuoteQuerySchema(PageQuerySchema):
    status = fields.String(
        validate=validate.OneOf([s.value for s in QuoteStatus]),
        metadata={"description": "Only quotes in this state."},
    )
    sort = sort_field("id", "unit_price", "lead_time_days", "created_at", default="id")


def _in_purchase_window(value: date) -> None:
    """The current or the previous business year, and not in the future (DESIGN.md v2): an
    older purchase can no longer change a year's figures, a later one has not happened."""
    now = today()
    if value > now:
        raise ValidationError(
            f"Must not be in the future (today is {now.isoformat()}, Asia/Shanghai)."
        )
    if value.year < now.year - 1:
        raise ValidationError(
            f"Must be in {now.year - 1} or {now.year}: older purchases can no longer be recorded."
        )


class AwardSchema(StrictSchema):
    """What the award's purchase needs beyond the quote: its invoice and PO."""

    invoice_number = Reference(required=True, metadata={"description": "发票号"})
    po_number = Reference(allow_none=True)
    purchased_on = fields.Date(
        validate=_in_purchase_window,
        metadata={
            "description": "Defaults to today (Asia/Shanghai); in the current or the previous "
            "business year, not in the future."
        },
    )


# --- purchases ----------------------------------------------------------------------------------


class PurchaseCreateSchema(StrictSchema):
    """An off-platform purchase, created by either party; the other party confirms it."""

    supplier_org_id = Id(
        metadata={"description": "Buyers: the active supplier you bought from (required)."}
    )
    oem_org_id = Id(
        metadata={"description": "Suppliers: the active OEM that bought from you (required)."}
    )
    supplier_site_id = Id(
        required=True, metadata={"description": "An active site of the supplier (shipped from)."}
    )
    plant_id = Id(required=True, metadata={"description": "An active plant of the OEM."})
    category = fields.String(required=True, validate=_category)
    amount = Money(required=True)
    purchased_on = fields.Date(
        required=True,
        validate=_in_purchase_window,
        metadata={"description": "In the current or the previous business year (Asia/Shanghai)."},
    )
    invoice_number = Reference(required=True, metadata={"description": "发票号"})
    po_number = Reference(allow_none=True)


class PurchaseCancelSchema(StrictSchema):
    reason = PlainText(required=True, max_length=500)


class PurchaseDisputeSchema(StrictSchema):
    reason = PlainText(
        required=True, max_length=500, metadata={"description": "Why this purchase is wrong."}
    )


class InvoiceReviewSchema(StrictSchema):
    decision = fields.String(
        required=True,
        validate=validate.OneOf(["release", "reject"]),
        metadata={"description": "release: genuine, the ledger may count it; reject: never."},
    )
    reason = PlainText(required=True, max_length=500)


class PurchaseSchema(Schema):
    """The one serialisation of a purchase row; the variants below add the ledger status
    or the subsidy preview."""

    id = fields.Integer()
    source = fields.Enum(PurchaseSource, by_value=True)
    status = fields.Enum(PurchaseStatus, by_value=True)
    created_by_party = fields.Enum(PurchaseParty, by_value=True)
    confirmation = fields.Enum(Confirmation, by_value=True, allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    disputed_at = fields.DateTime(allow_none=True)
    dispute_reason = fields.String(allow_none=True)
    review = fields.Method(
        "_review",
        allow_none=True,
        metadata={
            "type": "string",
            "nullable": True,
            "enum": [r.value for r in InvoiceReview],
            "description": "Invoice review of a confirmed purchase: pending (DUPLICATE_INVOICE, "
            "waits for an auditor), released or rejected; null if none.",
        },
    )
    site_city_code = fields.String(metadata={"description": "Frozen at creation."})
    site_lat = fields.Float(metadata={"description": "Frozen at creation (WGS-84)."})
    site_lon = fields.Float(metadata={"description": "Frozen at creation (WGS-84)."})
    plant_city_code = fields.String(metadata={"description": "Frozen at creation."})
    plant_lat = fields.Float(metadata={"description": "Frozen at creation (WGS-84)."})
    plant_lon = fields.Float(metadata={"description": "Frozen at creation (WGS-84)."})
    chip_domestic_origin = fields.Boolean(
        allow_none=True,
        metadata={
            "description": "Frozen at creation: under ic.chips, whether the supplier's "
            "capability was of domestic origin; null for other categories."
        },
    )
    oem_org_id = fields.Integer()
    oem_name = fields.String(attribute="oem.legal_name")
    supplier_org_id = fields.Integer()
    supplier_name = fields.String(attribute="supplier.legal_name")
    supplier_site_id = fields.Integer()
    plant_id = fields.Integer()
    category = fields.String()
    amount = Money()
    purchased_on = fields.Date()
    invoice_number = fields.String()
    po_number = fields.String(allow_none=True)
    quote_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)

    def _review(self, obj: Any) -> str | None:
        purchase = getattr(obj, "purchase", obj)  # a PurchaseView, or the row itself
        # Shown once both parties agree the purchase happened: an unconfirmed, one-sided record
        # must not tell its creator whether another OEM recorded the same invoice.
        if purchase.status is PurchaseStatus.PENDING_CONFIRMATION or purchase.review is None:
            return None
        return str(purchase.review.value)


class _PurchaseViewSchema(PurchaseSchema):
    """A purchase with more beside it (``market.services.purchases.PurchaseView``): the
    purchase's own fields are read from ``view.purchase``, the ``view_fields`` from the view."""

    view_fields: ClassVar[frozenset[str]] = frozenset()

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        source = obj if attr in self.view_fields else obj.purchase
        return super().get_attribute(source, attr, default)


LEDGER_STATUSES = ("not_counted", "pending", "failed", "recorded", "reversed")


class PurchaseListItemSchema(_PurchaseViewSchema):
    """A purchase in a list, with the compact ledger status."""

    view_fields = frozenset({"ledger_status"})
    ledger_status = fields.String(
        metadata={
            "enum": list(LEDGER_STATUSES),
            "description": "not_counted (not confirmed, disputed, in review or rejected), "
            "pending (confirmed, not recorded yet), failed (an admin must look), recorded, "
            "reversed (cancelled or held and negated); GET /purchases/{id} has the entries.",
        }
    )


class PurchaseDetailSchema(_PurchaseViewSchema):
    """One purchase with its place in the near-shore ledger."""

    view_fields = frozenset({"ledger"})
    ledger = fields.Nested(LedgerStatusSchema)


class PurchaseRecordedSchema(_PurchaseViewSchema):
    """A purchase just recorded, with the subsidy effect it is expected to have."""

    view_fields = frozenset({"subsidy_preview"})
    subsidy_preview = fields.Nested(
        SubsidyPreviewSchema,
        metadata={
            "description": "What this purchase would add to the ledger, computed against the "
            "ledger as it stood before it (nothing written): an estimate, as purchases still "
            "waiting for the ledger worker are not counted; the ledger entry is the figure that "
            "counts. A replay with the same Idempotency-Key returns it as first computed."
        },
    )


class PurchaseQuerySchema(PageQuerySchema):
    year = fields.Integer(
        strict=False,
        validate=validate.Range(min=2000, max=2100),
        metadata={"description": "Only purchases of this business year (Asia/Shanghai)."},
    )
    supplier = Id(strict=False, metadata={"description": "Supplier organization id."})
    oem = Id(strict=False, metadata={"description": "Buying (OEM) organization id."})
    status = fields.String(
        validate=validate.OneOf([s.value for s in PurchaseStatus]),
        metadata={
            "description": "Only purchases in this status (pending_confirmation, confirmed, ...)."
        },
    )
    awaiting = fields.String(
        validate=validate.OneOf(["me"]),
        metadata={"description": "me: purchases waiting for your organization's confirmation."},
    )
    review = fields.String(
        validate=validate.OneOf([r.value for r in InvoiceReview]),
        metadata={"description": "Auditors and admins: purchases by invoice review state."},
    )
    source = fields.String(
        validate=validate.OneOf([s.value for s in PurchaseSource]),
        metadata={"description": "award (from a quote) or recorded (an off-platform purchase)."},
    )
    sort = sort_field("id", "purchased_on", "amount", default="-id")


# --- the supplier's demand feed -----------------------------------------------------------------


class FeedQuerySchema(PageQuerySchema):
    q = search_words("Words to find in the demand's title or description")
    sort = sort_field("id", "published_at", "need_by", "distance_km", default="-published_at")


class FeedItemSchema(Schema):
    demand = fields.Nested(
        DemandSchema, metadata={"description": "As GET /demands/{id} shows it to you."}
    )
    match = fields.Nested(
        MatchSchema,
        metadata={
            "description": "Your entry in the demand's ranking, as GET /demands/{id}/matches "
            "shows it to the buyer: your rank and its explanation."
        },
    )
    eligible_suppliers = fields.Integer(
        metadata={"description": "How many suppliers are eligible (you rank among them)."}
    )
    quote_id = fields.Integer(
        allow_none=True, metadata={"description": "Your active (submitted or awarded) quote."}
    )
