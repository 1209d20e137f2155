"""The search backend of this app: chosen at start-up, read per request."""

from __future__ import annotations

from flask import Flask, current_app

from search.backends import SearchBackend
from search.database import DatabaseSearchBackend


def init_search(app: Flask) -> None:
    """Elasticsearch when ``ELASTICSEARCH_URL`` is set, else the database backend."""
    backend: SearchBackend
    if app.config.get("ELASTICSEARCH_URL"):
        from search.elastic import ElasticsearchBackend

        backend = ElasticsearchBackend(
            url=app.config["ELASTICSEARCH_URL"],
            index_prefix=app.config["ELASTICSEARCH_INDEX_PREFIX"],
            timeout=app.config["ELASTICSEARCH_TIMEOUT"],
            breaker_seconds=float(app.config.get("SEARCH_BREAKER_SECONDS", 10.0)),
        )
    else:
        backend = DatabaseSearchBackend()
    app.extensions["search"] = backend


def search_backend() -> SearchBackend:
    return current_app.extensions["search"]
