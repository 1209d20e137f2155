"""Interactive API documentation that works offline: Swagger UI on ``/docs``.

The Swagger UI files come from a pinned Python package (``swagger-ui-py``, which ships the
``swagger-ui-dist`` build: Swagger UI 5.24.2 in 25.7.1) and are served by the app itself, so
the page needs no CDN and no network beyond the app. Its script starts from a file served here
(``/docs/swagger-init.js``), never from inline code, so the page's CSP allows scripts and
styles from the app's own origin only (no ``'unsafe-inline'``); the API keeps its strict
``default-src 'none'``.

ReDoc is not offered: the packaged copies on PyPI come inside other web frameworks' packages
(Django's ``drf-spectacular-sidecar``, ``flask-openapi3-redoc``), and Swagger UI renders the
same ``/openapi.json``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory, url_for
from markupsafe import escape

from market.permissions import public

DOCS_PATH = "/docs"
# The only Swagger UI files the page uses (the package also ships an editor and source maps).
SWAGGER_FILES = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)
OWN_ASSETS = Path(__file__).resolve().parent / "docs_assets"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# A day: the files change only with the pinned package's version.
ASSET_MAX_AGE = 86_400

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} — API documentation</title>
<link rel="icon" type="image/png" href="{favicon}">
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

blp = Blueprint("docs", __name__)


def swagger_ui_directory() -> Path:
    """Where the installed ``swagger-ui-py`` keeps the Swagger UI files (without importing it:
    its package imports every web framework handler it knows)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@blp.get(DOCS_PATH)
@public
def swagger_ui() -> Response:
    """The Swagger UI page (no inline script or style)."""
    html = PAGE.format(
        title=escape(current_app.config["API_TITLE"]),
        favicon=url_for("docs.swagger_asset", filename="favicon-32x32.png"),
        css=url_for("docs.swagger_asset", filename="swagger-ui.css"),
        bundle=url_for("docs.swagger_asset", filename="swagger-ui-bundle.js"),
        init=url_for("docs.swagger_init"),
        openapi=url_for("api-docs.openapi_json"),
    )
    return Response(html, mimetype="text/html")


@blp.get(f"{DOCS_PATH}/swagger-ui/<path:filename>")
@public
def swagger_asset(filename: str) -> Response:
    """One of the pinned Swagger UI files."""
    if filename not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(swagger_ui_directory(), filename, max_age=ASSET_MAX_AGE)


@blp.get(f"{DOCS_PATH}/swagger-init.js")
@public
def swagger_init() -> Response:
    """The script that starts Swagger UI on the page."""
    return send_from_directory(
        OWN_ASSETS, "swagger-init.js", mimetype="text/javascript", max_age=ASSET_MAX_AGE
    )


@blp.after_request
def docs_policy(response: Response) -> Response:
    # Before market.http's headers (a blueprint's run first); it keeps this one.
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def init_docs(app: Flask) -> None:
    app.register_blueprint(blp)
