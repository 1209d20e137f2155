"""Supplier search: one interface, a database backend and an Elasticsearch backend."""

from __future__ import annotations

from flask import Flask, current_app

from search.backends import DatabaseSearchBackend, SearchBackend


def init_search(app: Flask) -> None:
    backend: SearchBackend
    if app.config.get("ELASTICSEARCH_URL"):
        from search.elastic import ElasticsearchBackend

        backend = ElasticsearchBackend(
            url=app.config["ELASTICSEARCH_URL"],
            index_prefix=app.config["ELASTICSEARCH_INDEX_PREFIX"],
            timeout=app.config["ELASTICSEARCH_TIMEOUT"],
        )
    else:
        backend = DatabaseSearchBackend()
    app.extensions["search"] = backend


def search_backend() -> SearchBackend:
    return current_app.extensions["search"]
