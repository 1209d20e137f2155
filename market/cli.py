"""Command-line interface (``flask --app wsgi ...``)."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Each area registers its own command group here."""
