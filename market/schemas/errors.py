"""The error envelope, as documented in OpenAPI (``market.errors`` builds the bodies)."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorBodySchema(Schema):
    status = fields.Integer(metadata={"description": "The HTTP status code"})
    code = fields.String(metadata={"description": "A stable machine-readable error code"})
    message = fields.String(metadata={"description": "What went wrong, for people"})
    fields_ = fields.Dict(
        data_key="fields",
        metadata={"description": 'Messages per request field, e.g. {"amount": ["..."]}'},
    )
    request_id = fields.String(metadata={"description": "Quote it when reporting a problem"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)
