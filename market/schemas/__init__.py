"""Schemas shared by the whole API: the strict base schema and the pagination shape."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import after_this_request, has_request_context, request
from flask.wrappers import Response
from marshmallow import RAISE, Schema, fields, post_dump, validate

MAX_PAGE_SIZE = 100


class StrictSchema(Schema):
    """Unknown fields are an error, so nobody can mass-assign what a schema does not name."""

    class Meta:
        unknown = RAISE
        ordered = True


class PageQuerySchema(StrictSchema):
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "The page to return, from 1."},
    )
    per_page = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": "Items per page (at most 100; default 20)."},
    )


class PageMetaSchema(Schema):
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()


class PageLinksSchema(Schema):
    self = fields.String(metadata={"description": "This page"})
    next = fields.String(
        allow_none=True, metadata={"description": "The next page; null on the last"}
    )
    prev = fields.String(
        allow_none=True, metadata={"description": "The previous page; null on the first"}
    )


class PageSchema(Schema):
    """The list envelope ``{"items", "meta", "links"}``; every paginated response dumps through
    it, which adds ``links`` and the same links as an RFC 8288 ``Link`` header."""

    links = fields.Nested(
        PageLinksSchema,
        dump_only=True,
        metadata={"description": "This, the next and the previous page (also in the Link header)"},
    )

    @post_dump
    def add_links(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        meta = data.get("meta")
        if not meta or not has_request_context():
            return data
        links = page_links(meta["page"], meta["pages"])
        data["links"] = links

        @after_this_request
        def add_link_header(response: Response) -> Response:
            response.headers["Link"] = link_header(links)
            return response

        return data


def link_header(links: dict[str, str | None]) -> str:
    """The RFC 8288 ``Link`` header of a page's links."""
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items() if url is not None)


def page_links(page: int, pages: int) -> dict[str, str | None]:
    """Absolute URLs of this request for ``page`` and its neighbours (other arguments kept)."""

    def url_for_page(number: int) -> str:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
        return f"{request.base_url}?{urlencode([*args, ('page', number)])}"

    return {
        "self": url_for_page(page),
        "next": url_for_page(page + 1) if page < pages else None,
        # A page past the end points back to the last one that exists.
        "prev": url_for_page(min(page - 1, pages)) if page > 1 and pages else None,
    }
