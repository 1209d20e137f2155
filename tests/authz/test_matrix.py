"""The authorization matrix: every route × every persona, generated from ``rules.py``.

Each rule names tenant A's object, so buyer_a/supplier_a act on their own object and
buyer_b/supplier_b on someone else's. Every signed-in persona is tried twice: with an API token
(``Authorization: Bearer``) and with a browser session cookie plus its CSRF token; both must
be judged alike. Separately, every cookie-authenticated write without the CSRF token is refused.

The world is built once per module inside an open transaction; each case runs in a savepoint
that is rolled back (the code's own commits are nested savepoints), so no case sees another's
writes, and rate-limit counters are reset between cases.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market.auth import CSRF_HEADER
from market.extensions import db
from market.permissions import PUBLIC
from tests.authz.rules import Rule, all_rules
from tests.authz.world import PERSONAS, World, build_world
from tests.isolation import begin_outer, bind_session, end_outer

# Routes of the framework itself, not of the product.
FRAMEWORK_ENDPOINTS = {
    "static",
    "api-docs.openapi_json",
    "docs.swagger_ui",
    "docs.swagger_asset",
    "docs.swagger_init",
}
DENIED_FOR_OTHERS = {403, 404}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# Routes that need no CSRF token even with a session cookie (they take no ambient credentials).
CSRF_EXEMPT_PATHS = {"/api/v1/auth/login"}
# Self-service routes every signed-in user may write to, auditors included; and the auditor's
# own decisions (DESIGN.md v2: releasing or rejecting a purchase held for a duplicate invoice).
# Claims: taking one into review, requesting evidence, deciding purchases and the claim.
AUDITOR_SELF_SERVICE = re.compile(
    r"^/api/v1/auth/|^/api/v1/purchases/[^/]+/review$"
    r"|^/api/v1/claims/[^/]+/(review|request-evidence|decisions|decide)$"
    r"|^/api/v1/notifications/"  # their own inbox: read marks and preferences
)

# Personas with credentials (the removed member's no longer work, but it tries them).
WITH_CREDENTIALS = frozenset(PERSONAS) - {"anonymous"}
# Personas whose credentials still work.
SIGNED_IN = WITH_CREDENTIALS - {"removed_member"}

# Every request comes from its own address, so per-IP rate limits never leak between cases.
_addresses = itertools.count(1)


def _route_key(method: str, path: str) -> tuple[str, str]:
    """Normalise ``/a/<int:x>/b`` and ``/a/{x_a}/b`` to one comparable shape."""
    return method, re.sub(r"<[^>]+>|\{[^}]+\}", "*", path)


def _product_rules(app: Any) -> list[Any]:
    return [
        url_rule
        for url_rule in app.url_map.iter_rules()
        if url_rule.endpoint not in FRAMEWORK_ENDPOINTS and not url_rule.endpoint.startswith("_")
    ]


def test_every_route_has_a_rule(app):
    ruled = {_route_key(r.method, r.path) for r in all_rules()}
    missing = []
    for url_rule in _product_rules(app):
        for method in sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if _route_key(method, url_rule.rule) not in ruled:
                missing.append(f"{method} {url_rule.rule}")
    assert not missing, f"routes without an authorization rule: {missing}"


def test_every_rule_names_a_route(app):
    routes = {
        _route_key(method, url_rule.rule)
        for url_rule in _product_rules(app)
        for method in (url_rule.methods or set())
    }
    stale = [
        f"{r.method} {r.path}" for r in all_rules() if _route_key(r.method, r.path) not in routes
    ]
    assert not stale, f"rules for routes the app does not have: {stale}"


def _audiences(view: Any) -> dict[str, Any]:
    """The declared audience of a view, per HTTP method for class-based (MethodView) views."""
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return {"*": getattr(view, "allowed_roles", None)}
    return {
        name.upper(): getattr(getattr(view_class, name), "allowed_roles", None)
        for name in HTTP_METHODS
        if inspect.isfunction(getattr(view_class, name, None))
    }


def test_every_view_declares_its_audience(app):
    undeclared = [
        f"{endpoint} {method}"
        for endpoint, view in app.view_functions.items()
        if endpoint not in FRAMEWORK_ENDPOINTS and not endpoint.startswith("_")
        for method, audience in _audiences(view).items()
        if audience is None
    ]
    assert not undeclared, f"views without @allow(...) or @public: {undeclared}"


def test_public_views_are_public_in_the_table(app):
    """A view declared @public must be open to everyone in the table, and vice versa."""
    rules = all_rules()
    mismatched = []
    for url_rule in _product_rules(app):
        audiences = _audiences(app.view_functions[url_rule.endpoint])
        for method in (url_rule.methods or set()) - {"HEAD", "OPTIONS"}:
            audience = audiences.get(method, audiences.get("*"))
            for rule in rules:
                if _route_key(rule.method, rule.path) != _route_key(method, url_rule.rule):
                    continue
                if (audience == PUBLIC) != ("anonymous" in rule.allowed):
                    mismatched.append(f"{method} {url_rule.rule}")
    assert not mismatched, f"@public and the table disagree: {sorted(set(mismatched))}"


def test_the_auditor_writes_only_its_own_decisions():
    writes = [
        f"{r.method} {r.path}"
        for r in all_rules()
        if r.method != "GET"
        and "auditor" in r.allowed - {"anonymous"}
        and "anonymous" not in r.allowed
        and not AUDITOR_SELF_SERVICE.match(r.path)
    ]
    assert not writes, f"the auditor may only read and decide, but these allow it: {writes}"


# --- the matrix ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_world(app: Flask) -> Iterator[tuple[Any, World]]:
    """The world, built once in a transaction that is rolled back after the module.

    No app context stays pushed while cases run: each request must get its own (and its own
    ``g``), exactly as in production.
    """
    original = db.session
    with app.app_context():
        connection = db.engine.connect()
        outer = begin_outer(connection)
        bind_session(connection)
        world = build_world()
        # Releases the session's savepoint into the outer transaction (never committed).
        db.session.commit()
        db.session.remove()
    try:
        yield connection, world
    finally:
        db.session = original
        end_outer(connection, outer)


@pytest.fixture
def world(app: Flask, shared_world: tuple[Any, World]) -> Iterator[World]:
    """The shared world for one case: a savepoint rolled back afterwards, fresh rate limits."""
    connection, built = shared_world
    original = db.session
    case = connection.begin_nested()
    with app.app_context():
        bind_session(connection)
    try:
        yield built
    finally:
        with app.app_context():
            db.session.remove()
        db.session = original
        if case.is_active:
            case.rollback()
        app.extensions["rate_limiter"].storage.reset()


@pytest.fixture
def world_client(app: Flask, world: World) -> FlaskClient:
    return app.test_client()


def _sign_in_by_cookie(client: FlaskClient, world: World, persona: str) -> dict[str, str]:
    """A browser session for ``persona``, as POST /auth/login leaves it; returns CSRF headers."""
    csrf_token = f"csrf-{persona}-{next(_addresses)}"
    with client.session_transaction() as session:
        session["_user_id"] = world.values[f"session_{persona}"]
        session["_sid"] = world.values[f"session_key_{persona}"]
        session["_fresh"] = True
        session["_csrf_token"] = csrf_token
    return {CSRF_HEADER: csrf_token}


def _call(client: FlaskClient, world: World, rule: Rule, headers: dict[str, str]) -> Any:
    url = world.path(rule.path + (f"?{rule.query}" if rule.query else ""))  # ids in queries too
    n = next(_addresses)
    return client.open(
        url,
        method=rule.method,
        json=world.body(rule.body) if rule.method != "GET" and rule.body is not None else None,
        headers=headers,
        environ_base={"REMOTE_ADDR": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"},
    )


def _check(rule: Rule, persona: str, via: str, response: Any, url: str) -> None:
    status = response.status_code
    body = response.get_data()[:300].decode("utf-8", "replace")  # XLSX exports are bytes
    assert status < 500, f"{rule.method} {url} as {persona} ({via}): {status} {body}"
    if persona == "removed_member":
        # Removal ended its session and revoked its token: it is anonymous now.
        persona = "anonymous"
    if persona in rule.allowed:
        assert status not in {401, 403, 404}, (
            f"{persona} ({via}) should pass authorization on {rule.method} {url}, "
            f"got {status}: {body}"
        )
    elif persona == "anonymous":
        assert status == 401, f"anonymous on {rule.method} {url}: {status} {body}"
    else:
        assert status in DENIED_FOR_OTHERS, (
            f"{persona} ({via}) should be denied on {rule.method} {url}, got {status}: {body}"
        )


CASES = [
    (rule, persona, via)
    for rule in all_rules()
    for persona in PERSONAS
    for via in (("bearer", "cookie") if persona in WITH_CREDENTIALS else ("none",))
]


@pytest.mark.parametrize(
    ("rule", "persona", "via"),
    CASES,
    ids=[f"{r.method} {r.path} as {p} by {v}" for r, p, v in CASES],
)
def test_authorization(world_client, world, rule: Rule, persona: str, via: str):
    client = world_client
    if via == "cookie":
        headers = _sign_in_by_cookie(client, world, persona)
    else:
        headers = world.headers[persona]
    response = _call(client, world, rule, headers)
    _check(rule, persona, via, response, world.path(rule.path))


UNSAFE_RULES = [
    rule
    for rule in all_rules()
    if rule.method != "GET" and rule.path not in CSRF_EXEMPT_PATHS and rule.allowed & SIGNED_IN
]


@pytest.mark.parametrize("rule", UNSAFE_RULES, ids=[f"{r.method} {r.path}" for r in UNSAFE_RULES])
def test_cookie_writes_without_the_csrf_token_are_refused(world_client, world, rule: Rule):
    client = world_client
    persona = next(p for p in PERSONAS if p in rule.allowed and p in SIGNED_IN)
    _sign_in_by_cookie(client, world, persona)
    response = _call(client, world, rule, {CSRF_HEADER: "forged"})
    assert response.status_code == 403, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "csrf_failed"
    response = _call(client, world, rule, {})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "csrf_failed"
