"""Schemas shared by the whole API: the strict base schema and the pagination shape."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

MAX_PAGE_SIZE = 100


class StrictSchema(Schema):
    """Unknown fields are an error, so nobody can mass-assign what a schema does not name."""

    class Meta:
        unknown = RAISE
        ordered = True


class PageQuerySchema(StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class PageMetaSchema(Schema):
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()
