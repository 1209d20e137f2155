"""The authorization matrix: every route × every persona, generated from ``rules.py``."""

from __future__ import annotations

import re

import pytest

from tests.authz.rules import Rule, all_rules
from tests.authz.world import PERSONAS, build_world

# Routes of the framework itself, not of the product.
FRAMEWORK_ENDPOINTS = {
    "static",
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "api-docs.openapi_redoc",
}
DENIED_FOR_OTHERS = {403, 404}


def _route_key(method: str, path: str) -> tuple[str, str]:
    """Normalise ``/a/<int:x>/b`` and ``/a/{x_a}/b`` to one comparable shape."""
    return method, re.sub(r"<[^>]+>|\{[^}]+\}", "*", path)


def test_every_route_has_a_rule(app):
    ruled = {_route_key(r.method, r.path) for r in all_rules()}
    missing = []
    for url_rule in app.url_map.iter_rules():
        if url_rule.endpoint in FRAMEWORK_ENDPOINTS or url_rule.endpoint.startswith("_"):
            continue
        for method in sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if _route_key(method, url_rule.rule) not in ruled:
                missing.append(f"{method} {url_rule.rule}")
    assert not missing, f"routes without an authorization rule: {missing}"


def test_every_view_declares_its_audience(app):
    undeclared = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint not in FRAMEWORK_ENDPOINTS
        and not endpoint.startswith("_")
        and not hasattr(view, "allowed_roles")
    ]
    assert not undeclared, f"views without @allow(...) or @public: {undeclared}"


CASES = [(rule, persona) for rule in all_rules() for persona in PERSONAS]


@pytest.mark.parametrize(
    ("rule", "persona"), CASES, ids=[f"{r.method} {r.path} as {p}" for r, p in CASES]
)
def test_authorization(client, db_session, rule: Rule, persona: str):
    world = build_world()
    url = world.path(rule.path) + (f"?{rule.query}" if rule.query else "")
    response = client.open(
        url,
        method=rule.method,
        json=rule.body if rule.method != "GET" else None,
        headers=world.headers[persona],
    )
    status = response.status_code
    assert status < 500, (
        f"{rule.method} {url} as {persona}: {status} {response.get_data(as_text=True)[:300]}"
    )
    if persona in rule.allowed:
        assert status not in {401, 403, 404}, (
            f"{persona} should pass authorization on {rule.method} {url}, got {status}: "
            f"{response.get_data(as_text=True)[:300]}"
        )
    elif persona == "anonymous":
        assert status == 401, f"anonymous on {rule.method} {url}: {status}"
    else:
        assert status in DENIED_FOR_OTHERS, (
            f"{persona} should be denied on {rule.method} {url}, got {status}"
        )
