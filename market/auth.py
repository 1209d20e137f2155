"""Who is calling: Flask-Login sessions (by rotating session token) and API bearer tokens.

Two ways in, never mixed in one request:

- **Session cookie** (browsers): ``POST /auth/login`` starts a server-side session
  (:class:`~market.models.AuthSession`) and stores its random key and the user's
  ``session_token`` in the signed Flask session. Logout ends that one session; rotating the
  user's token (sign out everywhere, password change, suspension, removal) ends all of them, so
  a copied cookie stops working. Sessions also end after an idle timeout and an absolute
  lifetime (``SESSION_IDLE_TIMEOUT_MINUTES``, ``SESSION_ABSOLUTE_LIFETIME_HOURS``).
  Cookie-authenticated writes must carry the CSRF token from login in ``X-CSRF-Token`` (the
  same value is in the readable ``csrf_token`` cookie); the expected value lives in the
  signed session.
- **Bearer token** (machine clients): ``Authorization: Bearer <token>``; only its SHA-256 is
  stored. A request with an ``Authorization`` header is authenticated by it alone, the session
  is ignored, and no CSRF token is needed (a browser never adds that header by itself).

Login attempts are rate limited on the app's limiter storage (Redis) per IP, per
(account × IP) and, with a slower curve, per account over all addresses, so a stranger cannot
lock a user out; other unauthenticated writes are limited per IP. If that storage is
unreachable they fail closed with 503.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from flask import Flask, current_app, g, request, session
from flask.wrappers import Response
from flask_login import current_user, login_user, logout_user
from limits import RateLimitItem, parse, parse_many
from limits.errors import StorageError
from limits.strategies import RateLimiter
from redis.exceptions import RedisError
from sqlalchemy import Select, String, bindparam, select, update
from sqlalchemy.orm import joinedload
from werkzeug.middleware.proxy_fix import ProxyFix

from market import passwords
from market.errors import Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized
from market.extensions import db, login_manager
from market.models import ApiToken, AuthSession, User
from market.services import security_log
from market.services.security_log import SecurityEventKind

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_PREFIX = "sct_"  # noqa: S105  (a label, not a secret)
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "csrf_token"
_CSRF_SESSION_KEY = "_csrf_token"
_SESSION_KEY = "_sid"  # the server-side session's random key, in the signed cookie
# Activity is written back at most this often (a session is not a write per request).
TOUCH_INTERVAL = timedelta(minutes=1)
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


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _touch_if_clean(row: ApiToken | AuthSession, column: str, now: datetime) -> None:
    """Record use at most once per :data:`TOUCH_INTERVAL`, in its own tiny commit.

    Loaders run before the view writes anything; a session with pending changes is left
    alone rather than committed early (the next request records the use).
    """
    last = getattr(row, column)
    if last is not None and now - last < TOUCH_INTERVAL:
        return
    session = db.session
    if session.new or session.dirty or session.deleted:
        return
    setattr(row, column, now)
    session.commit()


@login_manager.user_loader
def load_user_from_session(session_token: str) -> User | None:
    """The cookie names the user's current session token and a live server-side session.

    A rotated token (sign out everywhere) or an ended, idle or too old session logs it out.
    """
    if _has_authorization_header():
        # Explicit credentials win: the request is judged by its Authorization header alone.
        return None
    key = session.get(_SESSION_KEY)
    if not isinstance(key, str):
        return None
    row = db.session.execute(
        select(User, AuthSession)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(User.session_token == session_token, AuthSession.key_hash == _hash_key(key))
        .options(joinedload(User.organization))
    ).first()
    if row is None:
        return None
    user, auth_session = row
    now = datetime.now(UTC)
    config = current_app.config
    idle = timedelta(minutes=config["SESSION_IDLE_TIMEOUT_MINUTES"])
    lifetime = timedelta(hours=config["SESSION_ABSOLUTE_LIFETIME_HOURS"])
    if (
        auth_session.ended_at is not None
        or now - auth_session.last_seen_at > idle
        or now - auth_session.created_at > lifetime
        or not user.is_active
    ):
        return None
    _touch_if_clean(auth_session, "last_seen_at", now)
    g.auth_method = "session"
    g.auth_session_id = auth_session.id
    return user


@cache
def _token_statement() -> Select[ApiToken]:
    """One round trip for the token, its user and the user's organization (checked next);
    built once (every API request runs it, and building it costs more than running it)."""
    return (
        select(ApiToken)
        .where(ApiToken.token_hash == bindparam("token_hash", type_=String))
        .options(joinedload(ApiToken.user).joinedload(User.organization))
    )


@login_manager.request_loader
def load_user_from_bearer(req: Any) -> User | None:
    header = req.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = db.session.scalar(_token_statement(), {"token_hash": hash_api_token(token.strip())})
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        return None
    user = row.user
    if not user.is_active:
        return None
    _touch_if_clean(row, "last_used_at", now)
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
    """Log ``user`` in on this browser session; returns the session's CSRF token.

    Adds the server-side session row to the current transaction: the use case commits it.
    """
    token = session.get(_CSRF_SESSION_KEY) if keep_csrf_token else None
    # A new session for a new identity: nothing from before the login survives.
    session.clear()
    token = token or secrets.token_urlsafe(32)
    key = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    db.session.add(
        AuthSession(
            key_hash=_hash_key(key),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            ip=request.remote_addr,
        )
    )
    session[_SESSION_KEY] = key
    session[_CSRF_SESSION_KEY] = token
    login_user(user)
    g.auth_method = "session"
    g.set_csrf_cookie = token
    return token


def current_session() -> AuthSession | None:
    """The server-side session this request came with (None for bearer requests)."""
    session_id = g.get("auth_session_id")
    return db.session.get(AuthSession, session_id) if session_id else None


def end_session() -> None:
    """Forget the browser session (the caller ends its server-side row)."""
    logout_user()
    session.clear()
    g.clear_csrf_cookie = True


def end_all_access(user: User, now: datetime) -> None:
    """End every session and revoke every API token of ``user`` (in the current transaction)."""
    user.rotate_session_token()
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


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


def _client_address() -> str:
    # ProxyFix (TRUSTED_PROXY_HOPS) has already put the client's address here.
    return request.remote_addr or "unknown"


def _hit_all(
    checks: list[tuple[RateLimitItem, str, str]],
    refused: Callable[[int, str], Exception],
    what: str,
) -> None:
    """Count one hit on every limit; raise ``refused(retry_after, scope)`` past any of them.

    The limiter storage being unreachable refuses the request (503): it fails closed.
    """
    strategy: RateLimiter = current_app.extensions["rate_limiter"]
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or "market"
    try:
        for item, scope, key in checks:
            if not strategy.hit(item, prefix, scope, key):
                reset_at, _ = strategy.get_window_stats(item, prefix, scope, key)
                raise refused(max(1, math.ceil(reset_at - time.time())), scope)
    except (StorageError, RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"{what} is temporarily unavailable: the rate limiter cannot reach its store "
            "(Redis). Try again shortly."
        ) from exc


def throttle_login(email: str) -> None:
    """Count one sign-in attempt; 429 past a limit, 503 when the limiter's store is down.

    Three limits: per client address (password spraying), per (account × address) (guessing
    one account from one place), and a slower per-account ceiling over every address
    (distributed guessing). A stranger exhausts only their own (account × address) budget, so
    the real user, elsewhere, still signs in. Every attempt counts (an atomic increment before
    the password is checked) and unknown accounts are counted exactly like real ones.
    """
    config = current_app.config
    address = _client_address()
    account = account_key(email)
    checks = [
        (
            parse(config.get("LOGIN_IP_RATE_LIMIT") or DEFAULT_LOGIN_IP_RATE_LIMIT),
            "login-ip",
            address,
        ),
        (parse(config["LOGIN_RATE_LIMIT"]), "login-account-ip", f"{account}:{address}"),
    ]
    checks += [
        (item, "login-account", account) for item in parse_many(config["LOGIN_ACCOUNT_RATE_LIMIT"])
    ]

    def refused(retry_after: int, scope: str) -> Exception:
        security_log.record(
            SecurityEventKind.LOGIN_THROTTLED, detail=f"limit {scope}", persist=False
        )
        return LoginThrottled(
            f"Too many sign-in attempts; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )

    _hit_all(checks, refused, "Sign-in")


def throttle_anonymous_write(scope: str) -> None:
    """Count one unauthenticated write (registration, accepting an invitation) per address.

    One budget for all such writes from an address; 429 past it, 503 without the store.
    """
    address = _client_address()
    checks = [
        (item, "anonymous-write", address)
        for item in parse_many(current_app.config["ANONYMOUS_WRITE_RATE_LIMIT"])
    ]

    def refused(retry_after: int, _scope: str) -> Exception:
        security_log.record(
            SecurityEventKind.WRITE_THROTTLED, detail=f"limit {scope}", persist=False
        )
        return TooManyRequests(
            f"Too many requests from your address; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )

    _hit_all(checks, refused, scope.capitalize())


_PER_REQUEST = (
    "_login_user",
    "auth_method",
    "api_token_id",
    "auth_session_id",
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
    hops = int(app.config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops:
        # Only as many X-Forwarded-* entries as there are proxies we run; the rest is forgeable.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    login_manager.session_protection = "basic"
    passwords.use_fast_hashing(bool(app.config.get("TESTING")))
    app.before_request(_forget_the_previous_caller)
    app.before_request(_csrf_protect)
    app.after_request(_after_request)
