"""The account security findings of issue 14, each as an attack that must now fail.

Every test here failed on the code before the fix (see the issue): tokens minted from a stolen
session, sessions that never end, registration that enumerates emails, lock-outs by strangers,
weak passwords, pending organisations reading the marketplace, forged client addresses.
"""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.auth import CSRF_HEADER
from market.models import OrgKind, OrgStatus, SecurityEvent
from tests import factories
from tests.conftest import RUN_ID, make_test_app
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)

PASSWORD = factories.PASSWORD
NEW_PASSWORD = "a brand new long password"
_addresses = itertools.count(1)


def _address() -> str:
    n = next(_addresses)
    return f"198.19.{n // 250 % 250}.{n % 250 + 1}"


def login(client: FlaskClient, email: str, password: str = PASSWORD, ip: str | None = None) -> Any:
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip or _address()},
    )


def signed_in(client: FlaskClient, email: str) -> dict[str, str]:
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    return {CSRF_HEADER: response.get_json()["csrf_token"]}


@pytest.fixture
def buyer(env: Env) -> Any:
    with env.db():
        return make_user(factories.make_org(OrgKind.OEM))


def new_token(client: FlaskClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/auth/tokens", json={"name": "ci", **body}, headers=headers)


# --- tokens -------------------------------------------------------------------------------------


def test_a_stolen_session_cannot_mint_a_token_without_the_password(env, buyer):
    client = env.client()
    csrf = signed_in(client, buyer.email)
    response = new_token(client, csrf)
    assert response.status_code == 422
    assert "password" in response.get_json()["error"]["fields"]
    response = new_token(client, csrf, password="not the password at all")
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]["password"] == ["This is not your password."]
    assert new_token(client, csrf, password=PASSWORD).status_code == 201


def test_tokens_expire_in_90_days_by_default_and_at_most_in_a_year(env, buyer):
    client = env.client()
    csrf = signed_in(client, buyer.email)
    created = new_token(client, csrf, password=PASSWORD).get_json()
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=1)
    response = new_token(client, csrf, password=PASSWORD, expires_in_days=366)
    assert response.status_code == 422
    assert "expires_in_days" in response.get_json()["error"]["fields"]
    assert new_token(client, csrf, password=PASSWORD, expires_in_days=365).status_code == 201
    response = new_token(client, csrf, password=PASSWORD, expires_in_days=None)
    assert response.status_code == 422


def test_a_tokens_last_use_is_recorded(env, buyer):
    client = env.client()
    csrf = signed_in(client, buyer.email)
    created = new_token(client, csrf, password=PASSWORD).get_json()
    assert created["last_used_at"] is None
    machine = env.client()
    assert machine.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {created['token']}"})
    listed = {t["id"]: t for t in client.get("/api/v1/auth/tokens").get_json()["items"]}
    used = datetime.fromisoformat(listed[created["id"]]["last_used_at"])
    assert datetime.now(UTC) - used < timedelta(minutes=1)


# --- sessions -----------------------------------------------------------------------------------


def test_logout_ends_this_session_only(env, buyer):
    phone, laptop = env.client(), env.client()
    csrf = signed_in(phone, buyer.email)
    signed_in(laptop, buyer.email)
    copied = phone.get_cookie("session").value
    assert phone.post("/api/v1/auth/logout", headers=csrf).status_code == 204
    thief = env.client()
    thief.set_cookie("session", copied)
    assert thief.get("/api/v1/auth/me").status_code == 401
    assert laptop.get("/api/v1/auth/me").status_code == 200


def test_logout_all_ends_every_session_and_revokes_every_token(env, buyer):
    phone, laptop = env.client(), env.client()
    csrf = signed_in(phone, buyer.email)
    signed_in(laptop, buyer.email)
    raw = new_token(phone, csrf, password=PASSWORD).get_json()["token"]
    bearer = {"Authorization": f"Bearer {raw}"}
    assert env.client().get("/api/v1/auth/me", headers=bearer).status_code == 200
    assert phone.post("/api/v1/auth/logout-all", headers=csrf).status_code == 204
    assert phone.get("/api/v1/auth/me").status_code == 401
    assert laptop.get("/api/v1/auth/me").status_code == 401
    assert env.client().get("/api/v1/auth/me", headers=bearer).status_code == 401


def test_a_password_change_revokes_every_token(env, buyer):
    client = env.client()
    csrf = signed_in(client, buyer.email)
    raw = new_token(client, csrf, password=PASSWORD).get_json()["token"]
    bearer = {"Authorization": f"Bearer {raw}"}
    response = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert response.status_code == 204
    assert env.client().get("/api/v1/auth/me", headers=bearer).status_code == 401


def _age_session(env: Env, user: Any, **ages: timedelta) -> None:
    from market.models import AuthSession

    with env.db() as session:
        row = session.scalars(
            select(AuthSession).where(AuthSession.user_id == user.id).order_by(AuthSession.id)
        ).all()[-1]
        for column, age in ages.items():
            setattr(row, column, datetime.now(UTC) - age)


def test_sessions_end_after_the_idle_timeout(env, buyer):
    client = env.client()
    signed_in(client, buyer.email)
    _age_session(env, buyer, last_seen_at=timedelta(hours=7, minutes=59))
    assert client.get("/api/v1/auth/me").status_code == 200  # and this use counts as activity
    _age_session(env, buyer, last_seen_at=timedelta(hours=8, minutes=1))
    assert client.get("/api/v1/auth/me").status_code == 401


def test_sessions_end_after_their_absolute_lifetime_even_when_busy(env, buyer):
    client = env.client()
    signed_in(client, buyer.email)
    _age_session(env, buyer, created_at=timedelta(days=7, minutes=1))
    assert client.get("/api/v1/auth/me").status_code == 401


def test_session_limits_are_configurable(env, database_url, buyer):
    strict = make_test_app(database_url, SESSION_IDLE_TIMEOUT_MINUTES=5)
    client = env.client(strict)
    signed_in(client, buyer.email)
    _age_session(env, buyer, last_seen_at=timedelta(minutes=6))
    assert client.get("/api/v1/auth/me").status_code == 401


# --- registration -------------------------------------------------------------------------------


STRONG_PASSWORD = "a long enough password"


def registration(email: str, password: str = STRONG_PASSWORD, **org: Any) -> dict:
    return {
        "kind": "supplier",
        "uscc": org.get("uscc") or factories.fictional_uscc("440300"),
        "legal_name": org.get("legal_name", "深圳示例精密制造有限公司"),
        "city_code": "440300",
        "user": {"email": email, "password": password},
    }


def register(client: FlaskClient, body: dict, ip: str | None = None) -> Any:
    return client.post(
        "/api/v1/organizations", json=body, environ_base={"REMOTE_ADDR": ip or _address()}
    )


def test_registration_does_not_reveal_whether_an_email_exists(env, buyer):
    client = env.client()
    taken = register(client, registration(buyer.email))
    fresh = register(client, registration("brand-new@example.test"))
    assert taken.status_code == fresh.status_code == 202
    assert taken.get_json() == fresh.get_json()
    # The owner of the address is not touched; the attempt is on record for admins.
    with env.db() as session:
        kinds = session.scalars(
            select(SecurityEvent.kind).where(SecurityEvent.user_id == buyer.id)
        ).all()
    assert "registration_email_taken" in kinds
    # The USCC is public (it is printed on the business licence): a clear 409 is fine.
    with env.db():
        existing = factories.make_org(OrgKind.SUPPLIER)
    response = register(client, registration("another@example.test", uscc=existing.uscc))
    assert response.status_code == 409
    assert "uscc" in response.get_json()["error"]["fields"]


@pytest.fixture
def redis_app(database_url: str, redis_url: str, request: pytest.FixtureRequest) -> Flask:
    return make_test_app(
        database_url,
        REDIS_URL=redis_url,
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=f"{RUN_ID}-{request.node.name}"[:120],
        LOGIN_RATE_LIMIT="3 per minute",
        LOGIN_ACCOUNT_RATE_LIMIT="6 per minute",
        LOGIN_IP_RATE_LIMIT="50 per minute",
        ANONYMOUS_WRITE_RATE_LIMIT="3 per minute",
    )


@pytest.mark.redis
def test_registration_is_throttled_per_address(env, redis_app):
    ip = _address()
    client = redis_app.test_client()
    statuses = [
        register(client, registration(f"flood-{n}@example.test"), ip=ip).status_code
        for n in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    assert register(client, registration("elsewhere@example.test")).status_code == 202


def test_registration_fails_closed_without_the_limiter_store(env, database_url):
    dead = make_test_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    response = register(dead.test_client(), registration("closed@example.test"))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"


# --- login throttling ---------------------------------------------------------------------------


@pytest.mark.redis
def test_a_stranger_cannot_lock_the_user_out(env, redis_app, buyer):
    stranger = _address()
    client = redis_app.test_client()
    statuses = [
        login(client, buyer.email, "guessing again", ip=stranger).status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # The user, from their own address, still signs in.
    assert login(redis_app.test_client(), buyer.email).status_code == 200


@pytest.mark.redis
def test_a_global_per_account_ceiling_stops_distributed_guessing(env, redis_app, buyer):
    client = redis_app.test_client()
    statuses = [login(client, buyer.email, "botnet guess").status_code for _ in range(7)]
    assert statuses == [401] * 6 + [429]


# --- password strength --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("qwertyuiop123", "too easy to guess"),
        ("zhang.wei.example.2027", "email"),
        ("Shenzhen Example Precision 2027!", "organisation"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(env, password, why):
    body = registration("zhang.wei@example.test", password, legal_name="Shenzhen Example Precision")
    response = register(env.client(), body)
    assert response.status_code == 422
    messages = response.get_json()["error"]["fields"]["user"]["password"]
    assert any(why in message for message in messages), messages


# --- pending organisations ----------------------------------------------------------------------


def test_a_pending_organisation_sees_only_itself(env):
    with env.db():
        active_oem = factories.make_org(OrgKind.OEM)
        plant = factories.make_site(active_oem)
        factories.make_demand(active_oem, plant)
        other_supplier = factories.make_org(OrgKind.SUPPLIER)
        pending_supplier = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
        pending_oem = factories.make_org(OrgKind.OEM, status=OrgStatus.PENDING)
        supplier_user = make_user(pending_supplier)
        oem_user = make_user(pending_oem)
        supplier_headers = factories.auth(supplier_user)
        oem_headers = factories.auth(oem_user)
    client = env.client()
    for url in (
        "/api/v1/demands",
        f"/api/v1/suppliers/{other_supplier.id}/sites",
        "/api/v1/suppliers/search?lat=23.1&lon=113.3&radius_km=100",
    ):
        response = client.get(url, headers=supplier_headers)
        assert response.status_code == 403, url
        assert response.get_json()["error"]["code"] == "organization_pending"
    response = client.post(
        "/api/v1/plants",
        json={"name": "总装厂", "city_code": "440100", "lat": 23.0, "lon": 113.5},
        headers=oem_headers,
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "organization_pending"
    # Itself it sees.
    assert client.get("/api/v1/auth/me", headers=supplier_headers).status_code == 200
    own = client.get(f"/api/v1/organizations/{pending_supplier.id}", headers=supplier_headers)
    assert own.status_code == 200


# --- client addresses behind proxies ------------------------------------------------------------


def _last_login_ip(env: Env, user: Any) -> str | None:
    with env.db() as session:
        return session.scalar(
            select(SecurityEvent.ip)
            .where(SecurityEvent.user_id == user.id, SecurityEvent.kind == "login_ok")
            .order_by(SecurityEvent.id.desc())
        )


def test_client_addresses_come_from_the_configured_proxy_hops_only(env, database_url, buyer):
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    behind_one = make_test_app(database_url, TRUSTED_PROXY_HOPS=1)
    response = behind_one.test_client().post(
        "/api/v1/auth/login",
        json={"email": buyer.email, "password": PASSWORD},
        headers=forwarded,
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.status_code == 200
    # One trusted hop: the address that proxy saw, not what the client wrote before it.
    assert _last_login_ip(env, buyer) == "198.51.100.7"
    response = env.client().post(
        "/api/v1/auth/login",
        json={"email": buyer.email, "password": PASSWORD},
        headers=forwarded,
        environ_base={"REMOTE_ADDR": "10.0.0.3"},
    )
    assert response.status_code == 200
    # No trusted proxy (the default): the header is ignored.
    assert _last_login_ip(env, buyer) == "10.0.0.3"
