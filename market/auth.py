"""Who is calling: Flask-Login sessions (by rotating session token) and API bearer tokens.

Two ways in, never mixed in one request:

- **Session cookie** (browsers): ``POST /auth/login`` stores the user's ``session_token`` in the
  signed Flask session. Rotating that token (logout, password change, suspension) ends every
  session started with it, so a copied cookie stops working. Cookie-authenticated writes must
  carry the CSRF token from login in ``X-CSRF-Token`` (the same value is in the readable
  ``csrf_token`` cookie); the expected value lives in the signed session.
- **Bearer token** (machine clients): ``Authorization: Bearer <token>``; only its SHA-256 is
  stored. A request with an ``Authorization`` header is authenticated by it alone, the session
  is ignored, and no CSRF token is needed (a browser never adds that header by itself).

Login attempts are rate limited per IP and per account on the app's limiter storage (Redis);
if that storage is unreachable the login fails closed with 503.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Flask, current_app, g, request, session
from flask.wrappers import Response
from flask_login import current_user, login_user, logout_user
from limits import parse
from limits.errors import StorageError
from limits.strategies import RateLimiter
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from market import passwords
from market.errors import Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized
from market.extensions import db, login_manager
from market.models import ApiToken, User
from market.services import security_log
from market.services.security_log import SecurityEventKind

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_PREFIX = "sct_"  # noqa: S105  (a label, not a secret)
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "csrf_token"
_CSRF_SESSION_KEY = "_csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A per-IP limit above the per-account one: offices share an address behind NAT.
DEFAULT_LOGIN_IP_RATE_LIMIT = "30 per minute"


class CsrfRejected(Forbidden):
    code = "csrf_failed"
    message = (
        f"Cookie-authenticated writes need the {CSRF_HEADER} header with the token "
        f"returned by login (also in the {CSRF_COOKIE} cookie)."
    )


class LoginThrottled(TooManyRequests):
    message = "Too many sign-in attempts; try again later."


# --- tokens -------------------------------------------------------------------------------------


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    """A fresh raw bearer token (shown to its owner once, stored only as a hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _has_authorization_header() -> bool:
    return "Authorization" in request.headers


# --- loaders ------------------------------------------------------------------------------------


@login_manager.user_loader
def load_user_from_session(session_token: str) -> User | None:
    """The session stores the user's current session token; a rotated token logs it out."""
    if _has_authorization_header():
        # Explicit credentials win: the request is judged by its Authorization header alone.
        return None
    user = db.session.scalar(select(User).where(User.session_token == session_token))
    if user is None or not user.is_active:
        return None
    g.auth_method = "session"
    return user


@login_manager.request_loader
def load_user_from_bearer(req: Any) -> User | None:
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # One round trip for the token, its user and the user's organization (checked next).
    row = db.session.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == hash_api_token(token.strip()))
        .options(joinedload(ApiToken.user).joinedload(User.organization))
    )
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        return None
    user = row.user
    if not user.is_active:
        return None
    g.auth_method = "bearer"
    g.api_token_id = row.id
    return user


@login_manager.unauthorized_handler
def unauthorized() -> None:
    raise Unauthorized()


def auth_method() -> str | None:
    """``"session"``, ``"bearer"`` or None for this request (loads the user if needed)."""
    if not current_user.is_authenticated:
        return None
    return g.get("auth_method")


# --- sessions -----------------------------------------------------------------------------------


def start_session(user: User, *, keep_csrf_token: bool = False) -> str:
    """Log ``user`` in on this browser session; returns the session's CSRF token."""
    token = session.get(_CSRF_SESSION_KEY) if keep_csrf_token else None
    # A new session for a new identity: nothing from before the login survives.
    session.clear()
    token = token or secrets.token_urlsafe(32)
    session[_CSRF_SESSION_KEY] = token
    login_user(user)
    g.auth_method = "session"
    g.set_csrf_cookie = token
    return token


def end_session() -> None:
    """Forget the browser session (the caller rotates the user's session token)."""
    logout_user()
    session.clear()
    g.clear_csrf_cookie = True


def csrf_exempt(view: F) -> F:
    """The view takes no ambient credentials (login), so it needs no CSRF token."""
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def _csrf_protect() -> None:
    if request.method not in UNSAFE_METHODS or request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "csrf_exempt", False):
        return
    if _has_authorization_header() or "_user_id" not in session:
        return
    # A stale cookie (logged out, rotated) loads no user: the view answers 401, not 403.
    if auth_method() != "session":
        return
    expected = session.get(_CSRF_SESSION_KEY)
    given = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(str(expected), given):
        g.csrf_rejected = True
        raise CsrfRejected()


def _after_request(response: Response) -> Response:
    config = current_app.config
    cookie_options: dict[str, Any] = {
        "path": config.get("SESSION_COOKIE_PATH") or "/",
        "domain": config.get("SESSION_COOKIE_DOMAIN") or None,
        "secure": bool(config.get("SESSION_COOKIE_SECURE")),
        "samesite": config.get("SESSION_COOKIE_SAMESITE"),
    }
    if g.get("set_csrf_cookie"):
        # Readable by the page's script on purpose (double submit); the session holds the truth.
        response.set_cookie(CSRF_COOKIE, g.set_csrf_cookie, httponly=False, **cookie_options)
    elif g.get("clear_csrf_cookie"):
        response.delete_cookie(CSRF_COOKIE, **cookie_options)
    authenticated = g.get("auth_method") is not None
    if authenticated or _has_authorization_header() or "_user_id" in session:
        response.headers["Cache-Control"] = "no-store"
        response.vary.update({"Cookie", "Authorization"})
    if response.status_code in {401, 403}:
        _log_denied(response.status_code)
    return response


def _log_denied(status: int) -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and getattr(view, "csrf_exempt", False):
        return  # the login logs its own failures
    # Only a user already loaded by this request: logging must not query the database.
    user = g.get("_login_user")
    kind = (
        SecurityEventKind.CSRF_REJECTED
        if g.get("csrf_rejected")
        else SecurityEventKind.ACCESS_DENIED
    )
    security_log.record(
        kind,
        user_id=user.id if isinstance(user, User) else None,
        detail=f"{status} {request.method} {request.path}",
        persist=False,
    )


# --- login rate limiting ------------------------------------------------------------------------


def account_key(email: str) -> str:
    """The per-account limiter key: a hash, so Redis never holds addresses."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def throttle_login(email: str) -> None:
    """Count one sign-in attempt for this IP and this account; 429 past either limit.

    Every attempt counts (an atomic increment before the password is checked), so parallel
    guesses cannot slip past the limit. Unknown accounts are counted exactly like real ones.
    The limiter storage being unreachable refuses the attempt (503): it fails closed.
    """
    strategy: RateLimiter = current_app.extensions["rate_limiter"]
    config = current_app.config
    prefix = config.get("RATELIMIT_KEY_PREFIX") or "market"
    checks = [
        (
            parse(config.get("LOGIN_IP_RATE_LIMIT") or DEFAULT_LOGIN_IP_RATE_LIMIT),
            "login-ip",
            request.remote_addr or "unknown",
        ),
        (parse(config["LOGIN_RATE_LIMIT"]), "login-account", account_key(email)),
    ]
    try:
        for item, scope, key in checks:
            if not strategy.hit(item, prefix, scope, key):
                reset_at, _ = strategy.get_window_stats(item, prefix, scope, key)
                retry_after = max(1, math.ceil(reset_at - time.time()))
                security_log.record(
                    SecurityEventKind.LOGIN_THROTTLED, detail=f"limit {scope}", persist=False
                )
                raise LoginThrottled(
                    f"Too many sign-in attempts; try again in {retry_after} seconds.",
                    headers={"Retry-After": str(retry_after)},
                )
    except (StorageError, RedisError, OSError) as exc:
        raise ServiceUnavailable(
            "Sign-in is temporarily unavailable: the login rate limiter cannot reach its "
            "store (Redis). Try again shortly."
        ) from exc


_PER_REQUEST = (
    "_login_user",
    "auth_method",
    "api_token_id",
    "set_csrf_cookie",
    "clear_csrf_cookie",
    "csrf_rejected",
)


def _forget_the_previous_caller() -> None:
    # Flask-Login caches the user on ``g``, which lives as long as the app context; one app
    # context can serve several requests (a test that keeps one pushed around its client), and
    # each request must still be judged by its own credentials.
    for name in _PER_REQUEST:
        g.pop(name, None)


def init_auth(app: Flask) -> None:
    login_manager.session_protection = "basic"
    passwords.use_fast_hashing(bool(app.config.get("TESTING")))
    app.before_request(_forget_the_previous_caller)
    app.before_request(_csrf_protect)
    app.after_request(_after_request)
