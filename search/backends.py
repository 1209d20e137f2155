"""The search interface every backend implements, and the database backend."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from market.extensions import db


class SearchBackend:
    """What the API needs from a search engine."""

    name = "base"

    def health(self) -> dict[str, Any]:
        raise NotImplementedError


class DatabaseSearchBackend(SearchBackend):
    """Ranking computed from the database (SQL prefilter, exact scoring in Python)."""

    name = "database"

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        db.session.execute(text("SELECT 1"))
        latency = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "ok", "kind": "database", "latency_ms": latency}
