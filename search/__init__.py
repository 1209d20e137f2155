"""Supplier search: one interface (``search.backends``), a database backend and an
Elasticsearch backend; ``search.current`` picks one per app. The package imports nothing, so
its pure modules (``search.text``, ``search.spec``) load without the models."""
