"""Liveness and readiness probes."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from sqlalchemy import text

from market.extensions import db
from market.permissions import public

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


def _database_health() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        db.session.rollback()
        return {"status": "down", "kind": db.engine.dialect.name, "error": type(exc).__name__}
    latency = round((time.perf_counter() - started) * 1000, 2)
    return {"status": "ok", "kind": db.engine.dialect.name, "latency_ms": latency}


@blp.route("/healthz")
@blp.response(200)
@public
def healthz() -> dict[str, str]:
    """Process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200)
@blp.alt_response(503, description="The database is down")
@public
def readyz() -> tuple[dict[str, Any], int]:
    """Database, Redis and search each reported as ok, degraded or down with latency."""
    database = _database_health()
    redis = current_app.extensions["jobs"].health()
    search = (
        current_app.extensions["search"].health()
        if database["status"] == "ok"
        else {"status": "unknown", "kind": current_app.extensions["search"].name}
    )
    checks = {"database": database, "redis": redis, "search": search}
    # Only the database is essential: without Redis or Elasticsearch writes still succeed.
    if database["status"] != "ok":
        overall = "down"
    elif all(c["status"] == "ok" for c in checks.values()):
        overall = "ok"
    else:
        overall = "degraded"
    return {"status": overall, "profile": current_app.config["NAME"], "checks": checks}, (
        503 if overall == "down" else 200
    )
