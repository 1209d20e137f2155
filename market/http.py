"""Request and response rules for the whole API: JSON bodies only, clean text, safe headers.

One narrow exception: a view marked with :func:`accepts_upload` (a claim's evidence upload)
takes ``multipart/form-data`` up to :data:`UPLOAD_MAX_REQUEST` bytes instead of JSON; its text
fields get the same check for control and bidirectional characters, and the view judges the
file by its bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask.wrappers import Response
from werkzeug.routing import IntegerConverter, Map

from market.errors import DomainError, NotFound, ValidationFailed

MAX_JSON_DEPTH = 32
# An upload request: a 10 MB document plus the form's fields and multipart framing.
UPLOAD_MAX_REQUEST = 10 * 1024 * 1024 + 64 * 1024
F = TypeVar("F", bound=Callable[..., Any])
# The largest value of a primary key (INTEGER on PostgreSQL). A larger id in a path names no
# object (404); passed on, it would fail in the database as an out-of-range parameter (500).
MAX_ID = 2**31 - 1

# NUL and other C0 controls (tab, LF and CR are handled per field), lone surrogates, and the
# bidirectional overrides/isolates used to disguise text (U+202A–U+202E, U+2066–U+2069).
_FORBIDDEN_TEXT = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)


def check_id(object_id: int, what: str) -> None:
    """Ids beyond the database's integer range name nothing: 404, not a driver error."""
    if not 1 <= object_id <= MAX_ID:
        raise NotFound(f"{what} not found.")


BAD_TEXT = "Contains control, surrogate or bidirectional-override characters."


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"
    message = "Request bodies must be JSON (Content-Type: application/json)."


class MalformedJson(DomainError):
    status = 400
    code = "malformed_json"
    message = "The request body is not valid UTF-8 JSON."


def find_bad_text(value: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first string (or key) holding forbidden characters, as ``(path, reason)``."""
    if depth > MAX_JSON_DEPTH:
        return path or "_body", f"Nesting deeper than {MAX_JSON_DEPTH} levels is not accepted."
    if isinstance(value, str):
        if _FORBIDDEN_TEXT.search(value):
            return (
                path or "_body",
                BAD_TEXT,
            )
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _FORBIDDEN_TEXT.search(str(key)):
                return here, "Field names may not contain control characters."
            found = find_bad_text(item, here, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_bad_text(item, f"{path}.{index}" if path else str(index), depth + 1)
            if found:
                return found
    return None


class UploadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    message = "The upload is too large."


def accepts_upload(view: F) -> F:
    """Mark a view that takes ``multipart/form-data`` (an upload) instead of a JSON body."""
    view.accepts_upload = True  # type: ignore[attr-defined]
    return view


def _is_upload_view() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:  # a MethodView: the method's handler carries the mark
        view = getattr(view_class, request.method.lower(), None)
    return bool(getattr(view, "accepts_upload", False))


def _check_upload_body() -> None:
    """multipart/form-data within the upload limit, with clean text fields."""
    request.max_content_length = UPLOAD_MAX_REQUEST
    if not request.content_length and not request.headers.get("Transfer-Encoding"):
        return  # no body: the view says which fields are missing, after authorization
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "This upload takes multipart/form-data (e.g. curl -F file=@invoice.pdf)."
        )
    if request.content_length and request.content_length > UPLOAD_MAX_REQUEST:
        raise UploadTooLarge(fields={"file": ["The file is larger than 10 MB."]})
    for name, value in request.form.items(multi=True):
        if _FORBIDDEN_TEXT.search(value) or _FORBIDDEN_TEXT.search(name):
            raise ValidationFailed(fields={name: [BAD_TEXT]})


class IdConverter(IntegerConverter):
    """``<int:...>`` in routes: a non-negative id within the primary keys' range."""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _check_request_body() -> None:
    # An unknown route or method is answered by routing (404/405), not by a body check.
    if request.routing_exception is not None or request.method not in {"POST", "PUT", "PATCH"}:
        return
    if _is_upload_view():
        _check_upload_body()
        return
    raw = request.get_data(cache=True)
    if not raw:
        return
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedJson() from exc
    found = find_bad_text(body)
    if found:
        field, reason = found
        raise ValidationFailed(fields={field: [reason]})


def _check_query_string() -> None:
    for name, value in request.args.items(multi=True):
        if _FORBIDDEN_TEXT.search(value) or _FORBIDDEN_TEXT.search(name):
            raise ValidationFailed(fields={name: [BAD_TEXT]})


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
}
# The API answers plain JSON: nothing may load or run.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # The docs blueprint (market.docs) sets its own, a little wider, policy first.
    response.headers.setdefault("Content-Security-Policy", API_CSP)
    if request.is_secure:
        response.headers.setdefault(
            "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
        )
    return response


def init_http_rules(app: Flask) -> None:
    # Before any blueprint is registered: their rules pick the converter up when added.
    app.url_map.converters["int"] = IdConverter
    app.before_request(_check_query_string)
    app.before_request(_check_request_body)
    app.after_request(_secure_headers)
