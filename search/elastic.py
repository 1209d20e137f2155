"""The Elasticsearch backend."""

from __future__ import annotations

import time
from typing import Any

from elasticsearch import Elasticsearch

from search.backends import SearchBackend


class ElasticsearchBackend(SearchBackend):
    name = "elasticsearch"

    def __init__(self, url: str, index_prefix: str, timeout: float) -> None:
        self.client = Elasticsearch(
            url, request_timeout=timeout, retry_on_timeout=False, max_retries=0
        )
        self.index_prefix = index_prefix

    @property
    def alias(self) -> str:
        return f"{self.index_prefix}-suppliers"

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            health = self.client.cluster.health(timeout="2s")
        except Exception as exc:
            return {"status": "down", "kind": "elasticsearch", "error": type(exc).__name__}
        latency = round((time.perf_counter() - started) * 1000, 2)
        status = "ok" if health["status"] in {"green", "yellow"} else "degraded"
        return {
            "status": status,
            "kind": "elasticsearch",
            "cluster_status": health["status"],
            "latency_ms": latency,
        }
