"""The paginated response schema shared by list endpoints."""

from __future__ import annotations

from marshmallow import Schema, fields

from market.schemas import PageMetaSchema, PageSchema


def page_of(item_schema: type[Schema]) -> type[Schema]:
    """``{"items": [item_schema], "meta": PageMeta, "links": PageLinks}`` as a named schema
    for OpenAPI (``links`` and the ``Link`` header come from :class:`PageSchema`)."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return PageSchema.from_dict(
        {"items": fields.List(fields.Nested(item_schema)), "meta": fields.Nested(PageMetaSchema)},
        name=name,
    )
