"""What the API's global rules add to every operation, documented in one place.

Authentication and some failures come from rules that apply to the whole API rather than to
one view, so the views do not (and need not) document them one by one:

- ``market.auth``: a view with ``@allow`` roles takes an API token (``Authorization: Bearer``)
  or the session cookie from ``POST /auth/login``; ``@public`` views take neither;

- ``@allow`` roles: 401 without credentials; 403 for another role, and for a cookie-authenticated
  write without its CSRF token;
- a path with ids: 404 for an id that does not exist or belongs to another tenant;
- ``market.http``: a write body that is not JSON (415), malformed (400), too large (413) or
  holding forbidden characters (422); a query string with forbidden characters (422);
- ``market.errors``: 503 when a backing service the request needs is unreachable.

:class:`ApiConventions` adds those to each operation of the OpenAPI document: its security
requirement, and the error responses (keeping any response a view documents itself), all with
the API's one error envelope; an error response a view documents with a description only
(``@blp.alt_response(409, description=...)``) gets the envelope as its body schema too.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask

WRITE_METHODS = frozenset({"post", "put", "patch"})
UNSAFE_METHODS = WRITE_METHODS | {"delete"}
# Every request: the query-string check of market.http (422), and the answer when the database
# (or another service the operation needs) is unreachable (503, market.errors).
ALWAYS = (HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.SERVICE_UNAVAILABLE)
BODY_ERRORS = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    HTTPStatus.UNPROCESSABLE_ENTITY,
)


BEARER = "bearerToken"
SESSION = "sessionCookie"
LINK_HEADER = {
    "description": 'RFC 8288 links to this, the next and the previous page (rel="self", '
    '"next", "prev"); the same URLs as the body\'s ``links``.',
    "schema": {"type": "string"},
}


class ApiConventions(BasePlugin):
    """An apispec plugin documenting the API-wide security and error responses of operations."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.spec: APISpec | None = None

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec
        spec.components.security_scheme(
            BEARER,
            {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from POST /api/v1/auth/tokens (machine clients).",
            },
        )
        spec.components.security_scheme(
            SESSION,
            {
                "type": "apiKey",
                "in": "cookie",
                "name": self.app.config.get("SESSION_COOKIE_NAME", "session"),
                "description": "The session from POST /api/v1/auth/login (browsers); writes "
                "also need its CSRF token in the X-CSRF-Token header.",
            },
        )

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or self.spec is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            handler = _handler(view, method)
            if _signed_in_only(handler):
                operation.setdefault("security", [{BEARER: []}, {SESSION: []}])
            responses = operation.setdefault("responses", {})
            if _is_page(responses.get("200") or responses.get(200)):
                ok = responses.get("200") or responses[200]
                ok.setdefault("headers", {})["Link"] = LINK_HEADER
            for code, response in responses.items():
                if _is_error(code) and _without_body(response):
                    response["content"] = self._error_content()
            documented = {str(code) for code in responses}
            for status in common_statuses(handler, method, bool(rule.arguments)):
                if str(int(status)) not in documented:
                    responses[str(int(status))] = self.spec.components.get_ref(
                        "response", status.name
                    )
                    documented.add(str(int(status)))

    def _error_content(self) -> dict[str, Any]:
        assert self.spec is not None
        return {"application/json": {"schema": self.spec.components.get_ref("schema", "Error")}}


def _is_error(code: Any) -> bool:
    return str(code).isdigit() and int(code) >= 400


def _is_page(response: Any) -> bool:
    """Whether a response's body is a list envelope (``market.schemas.PageSchema``)."""
    from market.schemas import PageSchema

    if not isinstance(response, dict):
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if isinstance(schema, dict):  # already resolved to a reference: pages are named "...Page"
        return str(schema.get("$ref", "")).endswith("Page")
    schema_class = schema if isinstance(schema, type) else type(schema)
    return issubclass(schema_class, PageSchema)


def _without_body(response: Any) -> bool:
    return isinstance(response, dict) and "$ref" not in response and "content" not in response


def _handler(view: Any, method: str) -> Any:
    """The function that handles ``method`` (a MethodView's method, or the view itself)."""
    view_class = getattr(view, "view_class", None)
    return getattr(view_class, method, None) if view_class is not None else view


def _signed_in_only(handler: Any) -> bool:
    # Imported here: market.permissions imports the models, which import market.extensions.
    from market.permissions import PUBLIC

    roles = getattr(handler, "allowed_roles", None)
    return roles is not None and roles != PUBLIC


def common_statuses(handler: Any, method: str, has_ids: bool) -> list[HTTPStatus]:
    """The API-wide error statuses of one operation, in ascending order."""
    from market.permissions import ALL_ROLES

    statuses: set[HTTPStatus] = set(ALWAYS)
    if _signed_in_only(handler):
        statuses.add(HTTPStatus.UNAUTHORIZED)
        # market.auth.csrf_exempt marks the views that take no ambient credentials.
        needs_csrf = method in UNSAFE_METHODS and not getattr(handler, "csrf_exempt", False)
        if needs_csrf or frozenset(handler.allowed_roles) != frozenset(ALL_ROLES):
            statuses.add(HTTPStatus.FORBIDDEN)
    if has_ids:
        statuses.add(HTTPStatus.NOT_FOUND)
    if method in WRITE_METHODS:
        statuses.update(BODY_ERRORS)
    return sorted(statuses)


def error_responses(blueprint: Any, *statuses: int) -> Any:
    """A decorator documenting a view's error responses on ``blueprint`` (the bodies are the
    API's one error envelope, ``ErrorSchema``, by the status's name)."""

    def decorate(view: Any) -> Any:
        for status in statuses:
            view = blueprint.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorate
