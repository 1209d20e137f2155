"""Supplier profiles, sites, capabilities, certifications and OEM plants: load and dump schemas.

Load schemas check shapes and reference data (static, in memory); rules that need the database
or the stored row (a site of the same organization, a duplicate category, merged PATCH values)
live in the services.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from market import refdata
from market.models import CertStatus, CertVerification, SiteKind
from market.schemas import PageQuerySchema, StrictSchema

# Company size bands after the SME size thresholds for industry (工信部联企业〔2011〕300号):
# employees, and annual revenue in CNY.
EMPLOYEE_BANDS = ("1-19", "20-299", "300-999", "1000-4999", "5000+")
REVENUE_BANDS = ("0-3m", "3m-20m", "20m-400m", "400m-2b", "2b+")
TIERS = (1, 2, 3)

# GB/T 2260 division codes: six digits, the first two a province-level code.
DIVISION_CODE = re.compile(r"^[1-8][0-9]{5}$")
PROVINCE_CODES = frozenset(
    ("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
     "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
     "65", "71", "81", "82")
)  # fmt: skip
GUANGDONG_PREFIX = "44"
EARLIEST_DATE = date(1950, 1, 1)
LATEST_DATE = date(2100, 12, 31)


def city_code_errors(code: str) -> list[str]:
    """Messages for a GB/T 2260 code: any province's 6-digit code, Guangdong's from the list."""
    if not DIVISION_CODE.match(code) or code[:2] not in PROVINCE_CODES:
        return ["Must be a 6-digit GB/T 2260 division code, e.g. 440100."]
    if code.startswith(GUANGDONG_PREFIX) and code not in refdata.cities():
        return [
            "A Guangdong site must use one of the 21 prefecture-level city codes (GET /cities)."
        ]
    return []


# --- fields -------------------------------------------------------------------------------------


class Text(fields.String):
    """Trimmed text with a length limit; single-line unless ``multiline``.

    A blank optional value loads as ``None``; a blank required value is an error.
    """

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"maxLength": max_length, **kwargs["metadata"]}
        super().__init__(**kwargs)
        self.max_length = max_length
        self.multiline = multiline

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.strip()
        if self.multiline:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif any(ch in text for ch in "\r\n\t"):
            raise ValidationError("Must be a single line (no line breaks or tabs).")
        if len(text) > self.max_length:
            raise ValidationError(f"Must be at most {self.max_length} characters.")
        if not text:
            if self.required or not self.allow_none:
                raise ValidationError("Must not be blank.")
            return None
        return text


class StrictFloat(fields.Float):
    """A JSON number only (no strings, no booleans), finite."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        number = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(number):
            raise ValidationError("Must be a finite number.")
        return number


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only (no "yes", 1 or "true")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class BoundedList(fields.List):
    """A list whose length is checked before its items are loaded (no 100 000-item work)."""

    def __init__(self, cls_or_instance: Any, *, max_items: int, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"maxItems": max_items, **kwargs["metadata"]}
        super().__init__(cls_or_instance, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and len(value) > self.max_items:
            raise ValidationError(f"Must have at most {self.max_items} items.")
        return super()._deserialize(value, attr, data, **kwargs)


def _integer(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, **kwargs)


def _date(**kwargs: Any) -> fields.Date:
    return fields.Date(
        validate=validate.Range(
            min=EARLIEST_DATE, max=LATEST_DATE, error="Must be between 1950-01-01 and 2100-12-31."
        ),
        **kwargs,
    )


def _check_city_code(value: str) -> None:
    errors = city_code_errors(value)
    if errors:
        raise ValidationError(errors)


# --- supplier profile ---------------------------------------------------------------------------


class SupplierProfileSchema(StrictSchema):
    """PUT body: the whole editable profile, a full replacement. ``tier`` is required; an
    omitted optional field takes its default: ``description``, the size bands and
    ``english_name`` are cleared, ``specialized`` becomes false and ``listed`` true."""

    tier = _integer(
        required=True,
        validate=validate.OneOf(TIERS),
        metadata={"description": "Supply-chain tier 1, 2 or 3."},
    )
    description = Text(max_length=4000, multiline=True, load_default=None, allow_none=True)
    specialized = StrictBoolean(
        load_default=False,
        metadata={"description": "专精特新 (specialised and sophisticated SME)."},
    )
    employee_band = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(EMPLOYEE_BANDS)
    )
    revenue_band = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(REVENUE_BANDS),
        metadata={"description": "Annual revenue band in CNY."},
    )
    english_name = Text(max_length=200, load_default=None, allow_none=True)
    listed = StrictBoolean(
        load_default=True, metadata={"description": "false hides the supplier from search."}
    )


class SupplierProfilePatchSchema(SupplierProfileSchema):
    """PATCH body: any subset of the profile's fields; the fields not sent are kept (load it
    with ``partial=True``). ``null`` clears a nullable field."""


# --- sites ----------------------------------------------------------------------------------------


class SiteCreateSchema(StrictSchema):
    name = Text(max_length=200, required=True)
    kind = fields.Enum(SiteKind, by_value=True, load_default=SiteKind.PLANT)
    city_code = fields.String(
        required=True,
        validate=_check_city_code,
        metadata={"description": "GB/T 2260 code; in Guangdong one of the 21 city codes."},
    )
    address = Text(max_length=300, load_default=None, allow_none=True)
    lat = StrictFloat(
        required=True,
        validate=validate.Range(min=-90, max=90),
        metadata={
            "description": "WGS-84 latitude; the point must lie inside the city's boundary or "
            "within 2 km of it (422 otherwise)."
        },
    )
    lon = StrictFloat(
        required=True,
        validate=validate.Range(min=-180, max=180),
        metadata={"description": "WGS-84 longitude (see lat)."},
    )


class SitePatchSchema(StrictSchema):
    """PATCH body: any subset of a site's fields; ``active: true`` reactivates it."""

    name = Text(max_length=200)
    kind = fields.Enum(SiteKind, by_value=True)
    city_code = fields.String(validate=_check_city_code)
    address = Text(max_length=300, allow_none=True)
    lat = StrictFloat(validate=validate.Range(min=-90, max=90))
    lon = StrictFloat(validate=validate.Range(min=-180, max=180))
    active = StrictBoolean()


class SiteListQuerySchema(PageQuerySchema):
    kind = fields.Enum(
        SiteKind,
        by_value=True,
        metadata={"description": "Only sites of this kind: plant or warehouse."},
    )
    city_code = fields.String(
        validate=validate.Regexp(DIVISION_CODE),
        metadata={"description": "Only sites in this city (GB/T 2260 code)."},
    )
    active = fields.Boolean(
        metadata={"description": "true: only active sites; false: only deactivated ones."}
    )


class SiteSchema(Schema):
    id = fields.Integer()
    organization_id = fields.Integer()
    kind = fields.Enum(SiteKind, by_value=True)
    name = fields.String()
    city_code = fields.String()
    address = fields.String(allow_none=True)
    lat = fields.Float()
    lon = fields.Float()
    active = fields.Boolean()
    created_at = fields.DateTime()


# --- capabilities ---------------------------------------------------------------------------------


def _check_category(value: str) -> None:
    if value not in refdata.categories():
        raise ValidationError("Unknown category; use a slug from GET /taxonomy.")


class CapabilityCreateSchema(StrictSchema):
    category = fields.String(
        required=True,
        validate=_check_category,
        metadata={"description": "A part-taxonomy slug, e.g. chassis.braking.foundation."},
    )
    processes = BoundedList(Text(max_length=60), max_items=20, load_default=list)
    annual_capacity = _integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=2_000_000_000)
    )
    capacity_unit = Text(max_length=24, load_default=None, allow_none=True)
    domestic_origin = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Chips designed and made by a domestic company (ic.chips.* only; "
            "422 on other categories). Frozen onto each purchase when it is created."
        },
    )

    @validates("processes")
    def _no_duplicate_processes(self, value: list[str], **kwargs: Any) -> None:
        if len({p.casefold() for p in value}) != len(value):
            raise ValidationError("Processes must not repeat.")


class CapabilityListQuerySchema(PageQuerySchema):
    category = fields.String(
        validate=validate.Length(max=120),
        metadata={"description": "This category and its descendants."},
    )


class CapabilityPatchSchema(StrictSchema):
    domestic_origin = fields.Boolean(
        required=True,
        metadata={
            "description": "Domestic-origin chips (ic.chips.* only). Purchases already "
            "recorded keep the value frozen when they were created."
        },
    )


class CapabilitySchema(Schema):
    id = fields.Integer()
    organization_id = fields.Integer()
    category = fields.String()
    processes = fields.List(fields.String())
    annual_capacity = fields.Integer(allow_none=True)
    capacity_unit = fields.String(allow_none=True)
    domestic_origin = fields.Boolean()
    created_at = fields.DateTime()


# --- certifications -------------------------------------------------------------------------------


def _check_standard(value: str) -> None:
    if value not in refdata.standards():
        raise ValidationError("Unknown standard; use an id from GET /certifications.")


class CertificationCreateSchema(StrictSchema):
    standard = fields.String(required=True, validate=_check_standard)
    level = Text(
        max_length=40,
        load_default=None,
        allow_none=True,
        metadata={"description": "Only for standards with levels, e.g. ASIL D for iso-26262."},
    )
    number = Text(max_length=80, load_default=None, allow_none=True)
    issuer = Text(max_length=200, load_default=None, allow_none=True)
    valid_from = _date(required=True)
    valid_until = _date(
        load_default=None,
        allow_none=True,
        metadata={"description": "Null only for standards without expiry (e.g. AEC-Q)."},
    )
    scope = Text(max_length=2000, multiline=True, load_default=None, allow_none=True)
    site_id = _integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1)
    )


class CertificationPatchSchema(StrictSchema):
    """PATCH body: correct the details, or set ``status`` to ``revoked`` (final)."""

    level = Text(max_length=40, allow_none=True)
    number = Text(max_length=80, allow_none=True)
    issuer = Text(max_length=200, allow_none=True)
    valid_from = _date()
    valid_until = _date(allow_none=True)
    scope = Text(max_length=2000, multiline=True, allow_none=True)
    site_id = _integer(allow_none=True, validate=validate.Range(min=1, max=2**31 - 1))
    status = fields.Enum(CertStatus, by_value=True)


class CertificationListQuerySchema(PageQuerySchema):
    standard = fields.String(
        validate=validate.Length(max=40),
        metadata={"description": "Only certificates of this standard."},
    )
    status = fields.Enum(
        CertStatus, by_value=True, metadata={"description": "Only certificates in this status."}
    )
    verification = fields.Enum(
        CertVerification,
        by_value=True,
        metadata={"description": "The admin review: pending, verified or rejected"},
    )


class CertificationReviewQuerySchema(PageQuerySchema):
    """``GET /admin/certifications``: the admins' review queue."""

    status = fields.Enum(
        CertVerification,
        by_value=True,
        load_default=CertVerification.PENDING,
        metadata={"description": "The review state to list (default pending: the queue)"},
    )
    standard = fields.String(
        validate=_check_standard, metadata={"description": "Only certificates of this standard"}
    )


class CertificationRejectSchema(StrictSchema):
    reason = Text(
        max_length=500,
        required=True,
        metadata={"description": "Why the certificate is refused; the supplier reads it."},
    )


class CertificationSchema(Schema):
    id = fields.Integer()
    organization_id = fields.Integer()
    standard = fields.String()
    level = fields.String(allow_none=True)
    number = fields.String(allow_none=True)
    issuer = fields.String(allow_none=True)
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    scope = fields.String(allow_none=True)
    site_id = fields.Integer(allow_none=True)
    status = fields.Enum(CertStatus, by_value=True)
    created_at = fields.DateTime()
    verification = fields.Enum(
        CertVerification,
        by_value=True,
        metadata={
            "description": "The admin review: pending, verified or rejected; only verified "
            "certificates count for matching"
        },
    )
    reviewed_at = fields.DateTime(allow_none=True)
    reviewed_by_id = fields.Integer(allow_none=True, metadata={"description": "The admin"})
    review_reason = fields.String(
        allow_none=True, metadata={"description": "Why it was rejected (or the admin's note)"}
    )


# --- the public profile ---------------------------------------------------------------------------


class SupplierSchema(Schema):
    id = fields.Integer()
    uscc = fields.String()
    legal_name = fields.String()
    english_name = fields.String(allow_none=True)
    city_code = fields.String()
    status = fields.String()
    tier = fields.Integer(allow_none=True)
    description = fields.String(allow_none=True)
    specialized = fields.Boolean()
    employee_band = fields.String(allow_none=True)
    revenue_band = fields.String(allow_none=True)
    listed = fields.Boolean()
    version = fields.Integer()
    verified_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()
    sites = fields.List(fields.Nested(SiteSchema))
    capabilities = fields.List(fields.Nested(CapabilitySchema))
    certifications = fields.List(fields.Nested(CertificationSchema))


# --- OEM plants -----------------------------------------------------------------------------------


class PlantCreateSchema(StrictSchema):
    organization_id = _integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Admins only: the OEM organization; buyers add to their own."},
    )
    name = Text(max_length=200, required=True)
    city_code = fields.String(required=True, validate=_check_city_code)
    address = Text(max_length=300, load_default=None, allow_none=True)
    lat = StrictFloat(required=True, validate=validate.Range(min=-90, max=90))
    lon = StrictFloat(required=True, validate=validate.Range(min=-180, max=180))


class PlantListQuerySchema(PageQuerySchema):
    organization_id = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Admins and auditors: one OEM's plants."},
    )
    city_code = fields.String(
        validate=validate.Regexp(DIVISION_CODE),
        metadata={"description": "Only plants in this city (GB/T 2260 code)."},
    )


class PlantSchema(SiteSchema):
    pass
