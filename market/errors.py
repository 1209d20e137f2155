"""Domain exceptions and the one error envelope every failure is answered with.

Every error body has the shape::

    {"error": {"status": 422, "code": "validation_error", "message": "...",
               "fields": {"amount": ["Must be greater than 0."]}, "request_id": "..."}}

Services raise the exceptions below; nothing else in the code builds an error response.
Messages are written in English and sent in the client's language (``market.i18n``).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify
from flask.wrappers import Response
from werkzeug.exceptions import HTTPException

from market.i18n import response_language, translate, translate_messages

log = logging.getLogger(__name__)

FieldErrors = dict[str, Any]


class DomainError(Exception):
    """Base of the errors a use case may raise; each maps to one HTTP status."""

    status = 400
    code = "bad_request"
    message = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: FieldErrors | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields
        self.headers = headers or {}


class ValidationFailed(DomainError):
    status = 422
    code = "validation_error"
    message = "The request has invalid fields."


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    message = "Authentication is required."


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(DomainError):
    status = 404
    code = "not_found"
    message = "Not found."


class Conflict(DomainError):
    status = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"
    message = "Too many requests; try again later."


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    message = "A service this request needs is unavailable; try again shortly."


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def flatten_webargs_messages(messages: Any) -> FieldErrors:
    """webargs nests messages by location ({"json": {...}, "query": {...}}); clients want fields."""
    if not isinstance(messages, dict):
        return {"_request": messages}
    fields: FieldErrors = {}
    for location, errors in messages.items():
        if location in {"json", "query", "form", "headers", "files", "view_args"} and isinstance(
            errors, dict
        ):
            for name, value in errors.items():
                fields["_body" if name == "_schema" else name] = value
        else:
            fields[location] = errors
    return fields


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    fields: FieldErrors | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    # The messages in the client's language (market.i18n); the code never changes.
    body: dict[str, Any] = {
        "status": status,
        "code": code or _HTTP_CODES.get(status, "error"),
        "message": translate(message),
    }
    if fields:
        body["fields"] = translate_messages(fields)
    body["request_id"] = g.get("request_id")
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers["Content-Language"] = response_language()
    response.vary.add("Accept-Language")
    return response


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    fields = None
    if "errors" in data:
        fields = flatten_webargs_messages(data["errors"])
    elif "messages" in data:
        fields = flatten_webargs_messages(data["messages"])
    message = data.get("message")
    if not message:
        message = (
            "The request has invalid fields."
            if status == 422
            else (error.description or error.name)
        )
    if status >= 500:
        message = "An unexpected error occurred; it has been logged."
    # Keep the headers the exception carries (Allow on a 405, as RFC 9110 requires; Location
    # on a redirect), but not its HTML Content-Type.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    return error_response(status, message, fields=fields, headers=headers)


def handle_domain_error(error: DomainError) -> Response:
    return error_response(
        error.status, error.message, code=error.code, fields=error.fields, headers=error.headers
    )


def handle_unexpected(error: Exception) -> Response:
    """Last resort: log the trace server-side; the client never sees internals."""
    if _is_unavailable(error):
        log.warning("backing service unavailable: %s", type(error).__name__)
        return error_response(
            503, "A backing service is unavailable; try again shortly.", code="service_unavailable"
        )
    log.exception("unhandled error")
    return error_response(500, "An unexpected error occurred; it has been logged.")


def _is_unavailable(error: Exception) -> bool:
    """Lost connections to PostgreSQL or Redis are outages (503), not bugs (500)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(error, RedisConnectionError | RedisTimeoutError | OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(Exception, handle_unexpected)
