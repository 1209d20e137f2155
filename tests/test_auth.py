"""Signing in and out, sessions that end, CSRF, API tokens, cache headers and security events."""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.auth import CSRF_COOKIE, CSRF_HEADER
from market.logs import JsonFormatter
from market.models import ApiToken, OrgKind, OrgStatus, Role, SecurityEvent
from market.services import accounts
from tests import factories
from tests.conftest import make_test_app
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)

PASSWORD = factories.PASSWORD
NEW_PASSWORD = "a brand new long password"
_addresses = itertools.count(1)


def _address() -> str:
    # Each sign-in from its own address, so the per-IP limit never trips across tests.
    n = next(_addresses)
    return f"198.18.{n // 250 % 250}.{n % 250 + 1}"


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": _address()},
    )


def signed_in(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Sign ``client`` in; returns the CSRF header its writes need."""
    response = login(client, email, password)
    assert response.status_code == 200, response.get_json()
    return {CSRF_HEADER: response.get_json()["csrf_token"]}


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


@pytest.fixture
def buyer(env: Env):
    with env.db():
        return make_user(factories.make_org(OrgKind.OEM))


@pytest.fixture
def client(env: Env) -> FlaskClient:
    return env.client()


def bearer(env: Env, user: Any) -> dict[str, str]:
    with env.db():
        return factories.auth(user)


# --- login --------------------------------------------------------------------------------------


def test_login_starts_a_session_with_safe_cookies(client, buyer):
    response = login(client, f"  {buyer.email.upper()} ")
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["email"] == buyer.email
    assert "password" not in json.dumps(body)
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    assert "HttpOnly" in cookies["session"] and "SameSite=Lax" in cookies["session"]
    # The test profile is plain HTTP; the CSRF cookie is readable by the page on purpose.
    assert "Secure" not in cookies["session"]
    assert "HttpOnly" not in cookies[CSRF_COOKIE]
    assert client.get_cookie(CSRF_COOKIE).value == body["csrf_token"]
    assert response.headers["Cache-Control"] == "no-store"
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.get_json()["auth"] == "session"
    assert me.get_json()["organization"]["id"] == buyer.organization_id


def test_cookies_are_secure_outside_the_embedded_and_test_profiles(env, database_url, buyer):
    from market.config import EmbeddedConfig, ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE and ProductionConfig.REMEMBER_COOKIE_SECURE
    assert not EmbeddedConfig.SESSION_COOKIE_SECURE
    secure_app = make_test_app(database_url, SESSION_COOKIE_SECURE=True)
    response = login(env.client(secure_app), buyer.email)
    assert response.status_code == 200
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        assert "; Secure" in cookie, cookie


def test_unknown_account_and_wrong_password_get_the_same_answer(client, buyer, monkeypatch):
    checks: list[str | None] = []
    real_verify = accounts.verify_password

    def spy(password_hash: str | None, password: str) -> bool:
        checks.append(password_hash)
        return real_verify(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", spy)

    def attempt(email: str) -> tuple[int, dict[str, Any], float]:
        started = time.perf_counter()
        response = login(client, email, "not the password at all")
        elapsed = time.perf_counter() - started
        error = dict(response.get_json()["error"])
        error.pop("request_id")
        return response.status_code, error, elapsed

    wrong_status, wrong_body, wrong_time = attempt(buyer.email)
    unknown_status, unknown_body, unknown_time = attempt("nobody-here@example.test")
    assert wrong_status == unknown_status == 401
    assert wrong_body == unknown_body
    assert wrong_body["message"] == "Email or password is incorrect."
    # Both paths ran exactly one argon2 verification (the unknown one against a dummy hash).
    assert len(checks) == 2 and checks[0] is not None and checks[1] is None
    assert unknown_time > wrong_time / 4
    assert client.get_cookie("session") is None


def test_login_validates_its_body_but_not_as_an_address(client):
    assert login(client, "not-an-address").status_code == 401
    response = client.post(
        "/api/v1/auth/login", json={"email": "a@b.test"}, environ_base={"REMOTE_ADDR": _address()}
    )
    assert response.status_code == 422
    assert "password" in response.get_json()["error"]["fields"]
    response = client.post(
        "/api/v1/auth/login",
        json={"email": "a@b.test", "password": "x" * 20, "remember": True},
        environ_base={"REMOTE_ADDR": _address()},
    )
    assert response.status_code == 422


def test_disabled_users_cannot_sign_in(env, client):
    with env.db():
        user = make_user(factories.make_org(OrgKind.OEM), disabled=True)
    response = login(client, user.email)
    assert response.status_code == 403
    assert login(client, user.email, "wrong password here").status_code == 401


def test_pending_organizations_may_sign_in(env, client):
    with env.db():
        org = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
        user = make_user(org)
    assert login(client, user.email).status_code == 200
    assert client.get("/api/v1/auth/me").get_json()["organization"]["status"] == "pending"


# --- sessions that end --------------------------------------------------------------------------


def test_a_logged_out_cookie_replayed_gets_401(env, client, buyer):
    csrf = signed_in(client, buyer.email)
    copied = session_cookie(client)
    assert client.post("/api/v1/auth/logout", headers=csrf).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
    assert client.get_cookie(CSRF_COOKIE) is None
    thief = env.client()
    thief.set_cookie("session", copied)
    response = thief.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    # A write with the copied cookie is a 401 as well, not a CSRF 403.
    assert (
        thief.post(
            "/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}, headers=csrf
        ).status_code
        == 401
    )
    assert (
        thief.post("/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}).status_code
        == 401
    )


def test_a_password_change_ends_other_sessions_but_keeps_this_one(env, client, buyer):
    """Other sessions end (and, see test_account_security, every API token is revoked)."""
    csrf = signed_in(client, buyer.email)
    laptop = env.client()
    signed_in(laptop, buyer.email)
    old_cookie = session_cookie(client)
    response = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert response.status_code == 204, response.get_json()
    assert client.get("/api/v1/auth/me").status_code == 200
    assert laptop.get("/api/v1/auth/me").status_code == 401
    replay = env.client()
    replay.set_cookie("session", old_cookie)
    assert replay.get("/api/v1/auth/me").status_code == 401
    # The kept session keeps its CSRF token.
    response = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "password": NEW_PASSWORD}, headers=csrf
    )
    assert response.status_code == 201
    assert login(env.client(), buyer.email).status_code == 401
    assert login(env.client(), buyer.email, NEW_PASSWORD).status_code == 200
    with env.db() as session:
        kinds = session.scalars(
            select(SecurityEvent.kind).where(SecurityEvent.user_id == buyer.id)
        ).all()
    assert "password_changed" in kinds


def test_a_password_change_checks_the_current_password_and_the_policy(client, buyer):
    csrf = signed_in(client, buyer.email)

    def change(current: str, new: str) -> Any:
        return client.post(
            "/api/v1/auth/password",
            json={"current_password": current, "new_password": new},
            headers=csrf,
        )

    response = change("wrong current password", NEW_PASSWORD)
    assert response.status_code == 422
    assert "current_password" in response.get_json()["error"]["fields"]
    assert change(PASSWORD, "short").status_code == 422
    assert change(PASSWORD, PASSWORD).status_code == 422
    assert change(PASSWORD, buyer.email).status_code == 422
    assert client.get("/api/v1/auth/me").status_code == 200


def test_bearer_password_change_ends_browser_sessions(env, client, buyer):
    signed_in(client, buyer.email)
    headers = bearer(env, buyer)
    response = env.client().post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert response.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
    # A password change revokes API tokens too, the one that changed it included.
    assert env.client().get("/api/v1/auth/me", headers=headers).status_code == 401


# --- CSRF ---------------------------------------------------------------------------------------


def test_cookie_writes_need_the_csrf_token(client, buyer):
    csrf = signed_in(client, buyer.email)
    for headers in ({}, {CSRF_HEADER: "guess"}, {CSRF_HEADER: ""}):
        response = client.post(
            "/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}, headers=headers
        )
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "csrf_failed"
    response = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}, headers=csrf
    )
    assert response.status_code == 201
    # Reads need no token.
    assert client.get("/api/v1/auth/tokens").status_code == 200


def test_another_sessions_csrf_token_does_not_fit(env, client, buyer):
    signed_in(client, buyer.email)
    other_csrf = signed_in(env.client(), buyer.email)
    response = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}, headers=other_csrf
    )
    assert response.status_code == 403


def test_bearer_requests_need_no_csrf_token_and_ignore_the_session(env, client, buyer):
    signed_in(client, buyer.email)
    headers = bearer(env, buyer)
    response = env.client().post(
        "/api/v1/auth/tokens", json={"name": "ci", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 201
    # With an Authorization header the cookie counts for nothing: a bad token is a 401.
    response = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer sct_not-a-token"})
    assert response.status_code == 401
    response = client.get("/api/v1/auth/me", headers=headers)
    assert response.get_json()["auth"] == "bearer"


# --- API tokens ---------------------------------------------------------------------------------


def test_api_tokens_are_shown_once_and_stored_hashed(env, client, buyer):
    csrf = signed_in(client, buyer.email)
    response = client.post(
        "/api/v1/auth/tokens",
        json={"name": "erp sync", "expires_in_days": 30, "password": PASSWORD},
        headers=csrf,
    )
    assert response.status_code == 201
    created = response.get_json()
    raw = created["token"]
    assert raw.startswith("sct_") and created["prefix"] == raw[:12]
    assert datetime.fromisoformat(created["expires_at"]) > datetime.now(UTC) + timedelta(days=29)
    with env.db() as session:
        row = session.get(ApiToken, created["id"])
        assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    listed = client.get("/api/v1/auth/tokens").get_json()
    assert raw not in json.dumps(listed)
    assert created["id"] in {t["id"] for t in listed["items"]}
    machine = env.client()
    token_header = {"Authorization": f"Bearer {raw}"}
    assert machine.get("/api/v1/auth/me", headers=token_header).status_code == 200
    assert client.delete(f"/api/v1/auth/tokens/{created['id']}", headers=csrf).status_code == 204
    assert machine.get("/api/v1/auth/me", headers=token_header).status_code == 401
    # Revoking twice is harmless.
    assert client.delete(f"/api/v1/auth/tokens/{created['id']}", headers=csrf).status_code == 204


def test_expired_tokens_stop_working(env, buyer):
    with env.db() as session:
        raw = factories.make_token(buyer)
        row = session.scalar(select(ApiToken).where(ApiToken.user_id == buyer.id))
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = env.client().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401


def test_another_users_token_cannot_be_revoked_but_an_admin_can(env, buyer):
    with env.db() as session:
        other = make_user(factories.make_org(OrgKind.OEM))
        admin = make_user(role=Role.ADMIN)
        raw = factories.make_token(buyer)
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.user_id == buyer.id))
    c = env.client()
    url = f"/api/v1/auth/tokens/{token_id}"
    token_header = {"Authorization": f"Bearer {raw}"}
    assert c.delete(url, headers=bearer(env, other)).status_code == 404
    assert c.get("/api/v1/auth/me", headers=token_header).status_code == 200
    assert c.delete(url, headers=bearer(env, admin)).status_code == 204
    assert c.get("/api/v1/auth/me", headers=token_header).status_code == 401
    assert c.delete("/api/v1/auth/tokens/999999999", headers=bearer(env, admin)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": 10_000},
        {"name": "x\r\ninjected"},
        {"name": "x", "user_id": 1},
        {"name": "x", "token": "sct_mine"},
    ],
)
def test_token_requests_are_validated(env, buyer, body):
    response = env.client().post("/api/v1/auth/tokens", json=body, headers=bearer(env, buyer))
    assert response.status_code == 422


# --- headers and logs ---------------------------------------------------------------------------


def test_authenticated_responses_are_not_cached(env, buyer):
    c = env.client()
    assert c.get("/api/v1/cities").headers.get("Cache-Control") != "no-store"
    response = c.get("/api/v1/cities", headers=bearer(env, buyer))
    assert response.headers["Cache-Control"] == "no-store"
    assert "Authorization" in response.headers["Vary"]
    denied = c.get("/api/v1/auth/me", headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401 and denied.headers["Cache-Control"] == "no-store"


def test_security_events_are_json_in_utc_without_secrets(env, client, buyer, caplog):
    caplog.set_level(logging.INFO, logger="market.security")
    login(client, buyer.email, "the wrong password, twice over")
    csrf = signed_in(client, buyer.email)
    token = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "password": PASSWORD}, headers=csrf
    ).get_json()
    assert client.get("/api/v1/organizations").status_code == 403  # buyers may not list them
    records = [r for r in caplog.records if r.name == "market.security"]
    kinds = [r.security_event for r in records]
    assert {"login_failed", "login_ok", "token_created", "access_denied"} <= set(kinds)
    for record in records:
        line = json.loads(JsonFormatter().format(record))
        assert line["ts"].endswith("+00:00")
        assert line["logger"] == "market.security"
        text = json.dumps(line)
        assert PASSWORD not in text and "the wrong password" not in text
        assert token["token"] not in text and csrf[CSRF_HEADER] not in text
    denied = next(r for r in records if r.security_event == "access_denied")
    assert denied.user_id == buyer.id and "403 GET /api/v1/organizations" in denied.detail
    with env.db() as session:
        rows = session.scalars(select(SecurityEvent).where(SecurityEvent.user_id == buyer.id)).all()
        assert {"login_failed", "login_ok", "token_created"} <= {r.kind for r in rows}
        assert all(r.created_at.tzinfo is not None for r in rows)


def test_admins_list_security_events(env, buyer):
    with env.db():
        admin = make_user(role=Role.ADMIN)
    login(env.client(), buyer.email, "wrong password attempt")
    response = env.client().get(
        f"/api/v1/security-events?kind=login_failed&user_id={buyer.id}",
        headers=bearer(env, admin),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["meta"]["total"] == 1
    assert [e["kind"] for e in body["items"]] == ["login_failed"]
    response = env.client().get("/api/v1/security-events", headers=bearer(env, buyer))
    assert response.status_code == 403


def test_each_request_is_judged_by_its_own_credentials(client, db_session):
    """Even when one app context serves several requests (the ``client`` fixture keeps one
    pushed), a request never inherits the previous request's user."""
    first = make_user(factories.make_org(OrgKind.OEM))
    second = make_user(factories.make_org(OrgKind.OEM))
    me = "/api/v1/auth/me"
    assert client.get(me, headers=factories.auth(first)).get_json()["user"]["id"] == first.id
    assert client.get(me, headers=factories.auth(second)).get_json()["user"]["id"] == second.id
    assert client.get(me).status_code == 401
