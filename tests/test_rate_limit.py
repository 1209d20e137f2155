"""Login rate limiting on the real Redis: per IP, per (account × IP), and a slower per-account
ceiling; failing closed without Redis."""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

import itertools
from typing import Any

import pytest
from flask import Flask
from redis import Redis

from market.auth import account_key
from market.models import OrgKind
from tests import factories
from tests.conftest import RUN_ID, make_test_app
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)

_addresses = itertools.count(1)


def _address() -> str:
    n = next(_addresses)
    return f"203.0.{n // 250 % 250}.{n % 250 + 1}"


def attempt(app: Flask, email: str, password: str, ip: str | None = None) -> Any:
    return app.test_client().post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip or _address()},
    )


@pytest.fixture
def user(env: Env) -> Any:
    with env.db():
        return make_user(factories.make_org(OrgKind.OEM))


@pytest.fixture
def redis_app(database_url: str, redis_url: str, request: pytest.FixtureRequest) -> Flask:
    # A prefix of this run and this test: counters of other tests never interfere.
    return make_test_app(
        database_url,
        REDIS_URL=redis_url,
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=f"{RUN_ID}-{request.node.name}"[:120],
        LOGIN_RATE_LIMIT="3 per minute",
        LOGIN_ACCOUNT_RATE_LIMIT="8 per minute",
        LOGIN_IP_RATE_LIMIT="5 per minute",
    )


@pytest.mark.redis
def test_the_account_limit_triggers_on_redis(env, redis_app, redis_url, user):
    ip = _address()
    for _ in range(3):
        assert attempt(redis_app, user.email, "wrong password, again", ip).status_code == 401
    response = attempt(redis_app, user.email, factories.PASSWORD, ip)
    # Past the (account × address) limit even the right password is refused from that address...
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "too_many_requests" and "sign-in attempts" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # ...but not from another one: a stranger cannot lock the user out.
    assert attempt(redis_app, user.email, factories.PASSWORD).status_code == 200
    # Other accounts are not affected.
    with env.db():
        other = make_user(factories.make_org(OrgKind.OEM))
    assert attempt(redis_app, other.email, factories.PASSWORD).status_code == 200
    # The counters live in Redis under the configured prefix, keyed by a hash, not the address.
    keys = [k.decode() for k in Redis.from_url(redis_url).scan_iter(match=f"*{RUN_ID}*")]
    assert any(account_key(user.email) in key for key in keys)
    assert not any(user.email in key for key in keys)


@pytest.mark.redis
def test_unknown_accounts_are_limited_like_real_ones(redis_app):
    ip = _address()
    statuses = [
        attempt(redis_app, "ghost@example.test", "whatever it is", ip).status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # The per-account ceiling over all addresses (8; 3 used above) counts them the same way.
    statuses = [
        attempt(redis_app, "ghost@example.test", "whatever it is").status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


@pytest.mark.redis
def test_the_ip_limit_triggers_across_accounts(redis_app):
    ip = _address()
    statuses = [
        attempt(redis_app, f"spray-{n}@example.test", "password spraying", ip=ip).status_code
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    assert attempt(redis_app, "spray-0@example.test", "from elsewhere").status_code == 401


@pytest.mark.redis
def test_password_changes_count_as_attempts(env, redis_app, user):
    headers = {"Authorization": f"Bearer {_token(env, user)}"}
    client = redis_app.test_client()
    body = {"current_password": "guessing the password", "new_password": "a new long password"}
    statuses = [
        client.post("/api/v1/auth/password", json=body, headers=headers).status_code
        for _ in range(4)
    ]
    assert statuses == [422, 422, 422, 429]


def _token(env: Env, user: Any) -> str:
    with env.db():
        return factories.make_token(user)


def test_login_fails_closed_when_redis_is_down(env, database_url, user):
    dead = make_test_app(
        database_url,
        REDIS_URL="redis://127.0.0.1:1/0",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0",
    )
    response = attempt(dead, user.email, factories.PASSWORD)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "service_unavailable"
    assert "rate limiter" in error["message"]
    assert "127.0.0.1" not in response.get_data(as_text=True)
    assert response.headers.getlist("Set-Cookie") == []
    # Only sign-in depends on the limiter: reads and API tokens keep working.
    assert dead.test_client().get("/api/v1/cities").status_code == 200
    headers = {"Authorization": f"Bearer {_token(env, user)}"}
    assert dead.test_client().get("/api/v1/auth/me", headers=headers).status_code == 200


def test_each_app_keeps_its_own_limiter_storage(env, database_url, user):
    """The Limiter is a module-level object; an app built later must not take over its storage."""
    dead = make_test_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    assert attempt(dead, user.email, factories.PASSWORD).status_code == 503
    assert attempt(env.app, user.email, factories.PASSWORD).status_code == 200
    assert attempt(dead, user.email, factories.PASSWORD).status_code == 503
