"""API blueprints: JSON under /api/v1, plus the probes and the OpenAPI document at the root."""

from __future__ import annotations

from flask_smorest import Api

API_PREFIX = "/api/v1"


def register_blueprints(api: Api) -> None:
    from market.api import health, reference

    api.register_blueprint(health.blp)
    api.register_blueprint(reference.blp, url_prefix=API_PREFIX)
