"""Query and response schemas of matching and the supplier search box."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market import refdata
from market.schemas import PageMetaSchema, PageQuerySchema, PageSchema
from search import spec, text

MAX_QUERY_LENGTH = 200
MAX_TERMS = 10
MAX_STANDARDS = 10


def _known_category(value: str) -> None:
    if value not in refdata.categories():
        raise ValidationError("Unknown category; see /api/v1/taxonomy.")


def _known_standard(value: str) -> None:
    if value not in refdata.standards():
        raise ValidationError("Unknown certification standard; see /api/v1/certifications.")


class CityField(fields.String):
    """A Guangdong city by GB/T 2260 code, Chinese name (广州市 or 广州) or English name
    (Guangzhou, any case); loads as the code."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        code = refdata.city_code_for(name)
        if code is None:
            raise ValidationError(
                "Unknown city; give a code, 广州/广州市 or Guangzhou (see /api/v1/cities)."
            )
        return code


def _few_words(value: str) -> None:
    """Not too many words after segmentation (each is one more condition of the query).

    A query without any word (punctuation, emoji) is no text filter, like an empty box.
    """
    if len(value) > MAX_QUERY_LENGTH:
        return  # refused by the length check; not worth segmenting
    count = text.word_count(value)
    if count > MAX_TERMS:
        raise ValidationError(f"At most {MAX_TERMS} words (this query has {count}).")


def search_words(description: str) -> fields.String:
    """The ``q`` parameter of a text search: segmented, synonyms expanded (search.text)."""
    return fields.String(
        validate=validate.And(validate.Length(max=MAX_QUERY_LENGTH), _few_words),
        metadata={
            "description": f"{description} (Chinese is segmented into words; synonyms of the "
            "trade and English word forms match; every word must match)"
        },
    )


class MatchQuerySchema(PageQuerySchema):
    """``?page=&per_page=`` of a demand's ranked suppliers."""


class SupplierSearchQuerySchema(PageQuerySchema):
    q = search_words(
        "Words to find in the names, the description or the names of the supplier's categories"
    )
    lat = fields.Float(
        validate=validate.Range(min=-90, max=90),
        allow_nan=False,
        metadata={"description": "Latitude (WGS-84) to measure from; give lon and radius_km too."},
    )
    lon = fields.Float(
        validate=validate.Range(min=-180, max=180),
        allow_nan=False,
        metadata={"description": "Longitude (WGS-84) of the point to measure distances from."},
    )
    radius_km = fields.Float(
        validate=validate.Range(min=0, max=spec.MAX_RADIUS_KM, min_inclusive=False),
        allow_nan=False,
        metadata={"description": f"With lat/lon; default {spec.DEFAULT_RADIUS_KM}"},
    )
    category = fields.String(
        validate=_known_category, metadata={"description": "A category slug (and its subtree)"}
    )
    cert = fields.List(
        fields.String(validate=_known_standard),
        validate=validate.Length(max=MAX_STANDARDS),
        metadata={
            "description": "Standards with a certification valid today (repeatable); declared "
            "(pending or verified) ones, or verified ones only with verified_only=true"
        },
    )
    tier = fields.Integer(
        validate=validate.Range(min=1, max=3),
        metadata={"description": "Only suppliers of this supply-chain tier (1, 2 or 3)."},
    )
    city = CityField(
        metadata={"description": "GB/T 2260 code, or the Chinese or English name of the city"}
    )
    specialized = fields.Boolean(
        metadata={"description": "true: only 专精特新 suppliers; false: only the others"}
    )
    verified_only = fields.Boolean(
        load_default=False,
        metadata={
            "description": "true: cert= and the certification facet count only certificates "
            "an admin has verified; false (default): declared ones too (pending review). "
            "Rejected certificates never count."
        },
    )

    @validates_schema
    def _point_is_complete(self, data: dict[str, Any], **_: Any) -> None:
        has_lat, has_lon = "lat" in data, "lon" in data
        if has_lat != has_lon:
            missing = "lon" if has_lat else "lat"
            raise ValidationError("lat and lon go together.", field_name=missing)
        if "radius_km" in data and not has_lat:
            raise ValidationError("radius_km needs lat and lon.", field_name="radius_km")


# --- responses --------------------------------------------------------------------------------


class SupplierSummarySchema(Schema):
    id = fields.Integer()
    legal_name = fields.String()
    english_name = fields.String(allow_none=True)
    city_code = fields.String()
    tier = fields.Integer(allow_none=True)
    capabilities = fields.List(fields.String())


class SiteRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    city_code = fields.String()


class CertificationRefSchema(Schema):
    id = fields.Integer()
    standard = fields.String()
    valid_until = fields.String(allow_none=True, metadata={"description": "null: no expiry"})


class MatchSchema(Schema):
    rank = fields.Integer(metadata={"description": "1-based position in the whole ranking"})
    supplier = fields.Nested(SupplierSummarySchema)
    distance_km = fields.Float(metadata={"description": "Great-circle km to the nearest site"})
    nearest_site = fields.Nested(SiteRefSchema)
    distance_factor = fields.Float(metadata={"description": "gauss decay f_d"})
    tier_factor = fields.Float(metadata={"description": "the demand's weight of the tier f_t"})
    performance_factor = fields.Float(
        metadata={
            "description": "f_p: the supplier's delivery performance score when the demand "
            "ranks by performance (0.75 without deliveries), else 1"
        }
    )
    score = fields.Float(metadata={"description": "f_d × f_t × f_p"})
    matched_certifications = fields.List(fields.Nested(CertificationRefSchema))


class MatchPageSchema(PageSchema):
    items = fields.List(fields.Nested(MatchSchema))
    meta = fields.Nested(PageMetaSchema)
    degraded = fields.Boolean(
        metadata={"description": "true: Elasticsearch was unavailable; the database answered"}
    )


class HighlightSchema(Schema):
    field = fields.String(
        metadata={"description": "legal_name, english_name, description or category"}
    )
    text = fields.String(metadata={"description": "The text, or an excerpt of the description"})
    spans = fields.List(
        fields.List(fields.Integer()),
        metadata={"description": "[start, end) character offsets of the matched words in text"},
    )


class SupplierHitSchema(Schema):
    supplier = fields.Nested(SupplierSummarySchema)
    highlights = fields.List(
        fields.Nested(HighlightSchema),
        metadata={"description": "Where the query's words (or synonyms) were found"},
    )
    certifications = fields.List(
        fields.String(),
        metadata={
            "description": "Standards with a certification valid today (declared ones, or "
            "verified ones only with verified_only=true)"
        },
    )
    verified_certifications = fields.List(
        fields.String(),
        metadata={"description": "Standards with a verified certification valid today"},
    )
    distance_km = fields.Float(allow_none=True)
    nearest_site = fields.Nested(SiteRefSchema, allow_none=True)


class FacetBucketSchema(Schema):
    value = fields.String()
    count = fields.Integer()


class TierBucketSchema(Schema):
    value = fields.Integer()
    count = fields.Integer()


class FlagBucketSchema(Schema):
    value = fields.Boolean()
    count = fields.Integer()


class FacetsSchema(Schema):
    city = fields.List(fields.Nested(FacetBucketSchema))
    tier = fields.List(fields.Nested(TierBucketSchema))
    certification = fields.List(fields.Nested(FacetBucketSchema))
    specialized = fields.List(fields.Nested(FlagBucketSchema))


class SupplierSearchPageSchema(PageSchema):
    items = fields.List(fields.Nested(SupplierHitSchema))
    meta = fields.Nested(PageMetaSchema)
    facets = fields.Nested(FacetsSchema)
    degraded = fields.Boolean()
