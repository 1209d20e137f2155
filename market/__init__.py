"""StrongChain Exchange: the Flask application factory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from market import extensions
from market.config import Config, config_from_environment, ensure_secret_key
from market.errors import register_error_handlers
from market.extensions import db, limiter, login_manager, migrate
from market.http import init_http_rules
from market.i18n import init_i18n
from market.logs import configure_logging, init_request_logging

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
log = logging.getLogger(__name__)


def create_app(config: type[Config] | None = None, **overrides: Any) -> Flask:
    """Build the app for a profile (embedded, production, test) plus explicit overrides."""
    app = Flask(__name__)
    app.config.from_object(config or config_from_environment())
    app.config.update(overrides)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # names are Chinese: send UTF-8
    ensure_secret_key(app.config)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"], app.config["NAME"])
    _prepare_embedded_database(app)

    db.init_app(app)
    _ping_idle_connections(app)
    _release_sessions_quietly(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), compare_type=True)
    login_manager.init_app(app)
    _init_rate_limiter(app)
    # Imported here, not at the top: importing any ``market.*`` module runs this file first,
    # and these pull in the models, the API, search and the workers.
    from market import models  # noqa: F401  (every mapper configured before first use)
    from market.api import register_blueprints
    from market.api.insights_page import init_insights_page
    from market.api.openapi import ApiConventions
    from market.auth import init_auth
    from market.cli import register_cli
    from market.docs import init_docs
    from market.services import unit_of_work
    from search.current import init_search
    from workers.embedded import init_embedded_jobs
    from workers.outbox import publish
    from workers.queue import init_jobs
    from workers.registry import load_handlers

    # Not imported by name: the subpackage market.api would shadow it on this module.
    extensions.api.init_app(app, spec_kwargs={"extra_plugins": [ApiConventions(app)]})

    init_i18n(app)
    register_error_handlers(app)
    init_request_logging(app)
    init_http_rules(app)

    init_auth(app)
    register_blueprints(extensions.api)
    init_docs(app)
    init_insights_page(app)
    init_search(app)
    init_jobs(app)
    init_embedded_jobs(app)
    register_cli(app)
    app.extensions["market.create_app"] = create_app  # for seed-demo --fresh: a second app
    # Forward wiring, the composition root's job: commits publish their outbox rows through
    # the workers, and the workers know every handler before the first job runs.
    unit_of_work.set_publisher(publish)
    load_handlers()
    return app


def _prepare_embedded_database(app: Flask) -> None:
    uri: str = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and uri != "sqlite://":
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith("sqlite"):
        # SQLite serialises writers; wait for the lock instead of failing at once.
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {"timeout": 15})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _ping_idle_connections(app: Flask) -> None:
    from market.pool import ping_idle_connections

    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine, app.config["DATABASE_PING_IDLE_SECONDS"])


def _release_sessions_quietly(app: Flask) -> None:
    """End each request's database session without letting a dead connection turn an answered
    request into a 500.

    Flask-SQLAlchemy's teardown rolls the session back; if PostgreSQL went away after the
    response was made (a restart, a failover), that rollback raises, and an exception in a
    teardown escapes every error handler (werkzeug answers its own HTML 500). This teardown
    runs first (Flask runs them in reverse order) and discards a connection that cannot roll
    back: the server has ended its transaction with it anyway.
    """

    @app.teardown_appcontext
    def release_session(_error: BaseException | None) -> None:
        try:
            db.session.remove()
        except SQLAlchemyError as exc:
            log.warning(
                "database session released with an error", extra={"error": type(exc).__name__}
            )
            db.session.registry.clear()


def _init_rate_limiter(app: Flask) -> None:
    """Redis-backed limits; the embedded default gets its own redis-server (it stops with
    this process: ``workers.embedded_redis``)."""
    if app.config.get("RATELIMIT_STORAGE_URI"):
        pass
    elif app.config.get("REDIS_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"]
    elif app.config.get("TESTING"):
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"
    else:
        from workers.queue import embedded_redis

        embedded_redis(app)
        app.config["RATELIMIT_STORAGE_URI"] = (
            f"redis+unix://{app.extensions['embedded_redis_socket']}"
        )
    # Fail closed: a limiter that cannot reach its storage refuses the request (503).
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", False)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", False)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Storage errors arrive as limits.errors.StorageError; a dead Redis is noticed in a second.
    app.config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS",
        {"wrap_exceptions": True, "socket_connect_timeout": 1, "socket_timeout": 1},
    )
    limiter.init_app(app)
    # The Limiter is one module-level object and each init_app replaces its storage; keep this
    # app's own strategy (over this app's storage) so apps built side by side never share one.
    # The login throttle (market.auth.throttle_login) uses it.
    app.extensions["rate_limiter"] = limiter.limiter
