"""Liveness and readiness probes."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from flask import current_app, request
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import text

from market.extensions import db
from market.models import Role
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
    """Process is up.

    Liveness only: answers 200 while the process can serve a request, without touching PostgreSQL,
    Redis or Elasticsearch (``/readyz`` checks those). For load balancers and container probes.
    """
    return {"status": "ok"}


def _may_see_detail() -> bool:
    """Backends, kinds and latencies are for operators: an admin, or a probe on this machine.

    A request that came through a reverse proxy (``X-Forwarded-For``) is not a local probe even
    though the proxy connects from loopback.
    """
    if current_user.is_authenticated and current_user.role is Role.ADMIN:
        return True
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@blp.route("/readyz")
@blp.response(200)
@blp.alt_response(503, description="The database is down")
@public
def readyz() -> tuple[dict[str, Any], int]:
    """Ready to serve: ``ok``, ``degraded`` (Redis or search down) or ``down`` (database).

    Everyone gets the overall status; an admin (signed in) or a probe from loopback also gets
    ``profile`` and ``checks``: database, Redis and search each as ok, degraded or down, with
    its kind and latency.
    """
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
    status = 503 if overall == "down" else 200
    if not _may_see_detail():
        return {"status": overall}, status
    return {"status": overall, "profile": current_app.config["NAME"], "checks": checks}, status
