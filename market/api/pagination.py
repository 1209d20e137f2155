"""The paginated response schema shared by list endpoints, and pages sent as built."""

from __future__ import annotations

from typing import Any

import orjson
from flask import current_app
from flask.wrappers import Response
from marshmallow import Schema, fields

from market.schemas import PageMetaSchema, PageSchema, link_header, page_links


def page_of(item_schema: type[Schema]) -> type[Schema]:
    """``{"items": [item_schema], "meta": PageMeta, "links": PageLinks}`` as a named schema
    for OpenAPI (``links`` and the ``Link`` header come from :class:`PageSchema`)."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return PageSchema.from_dict(
        {"items": fields.List(fields.Nested(item_schema)), "meta": fields.Nested(PageMetaSchema)},
        name=name,
    )


def prebuilt_page(payload: dict[str, Any]) -> Response:
    """A page the service built in its documented shape, sent without a schema dump.

    For the hot read paths (ranked matches, supplier search): the dump of ~20 nested items
    through marshmallow cost more than the search itself. The view keeps its
    ``@blp.response(schema)`` for the OpenAPI document, and ``tests/test_search_api.py``
    holds every such payload to that schema (its dump changes nothing). Adds ``links`` and the
    ``Link`` header as :class:`PageSchema` does.
    """
    meta = payload["meta"]
    links = page_links(meta["page"], meta["pages"])
    response = current_app.response_class(
        orjson.dumps({**payload, "links": links}), mimetype="application/json"
    )
    response.headers["Link"] = link_header(links)
    return response
