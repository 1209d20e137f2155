"""The API document explains itself: every operation has a summary and a description, every
parameter a description, and the main flows carry request examples."""

from __future__ import annotations

import pytest

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").get_json()


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def test_every_operation_has_a_summary_and_a_description(document):
    missing = [
        name
        for name, operation in _operations(document)
        if not operation.get("summary") or not operation.get("description")
    ]
    assert missing == []


def test_every_parameter_is_described(document):
    shared = document.get("components", {}).get("parameters", {})
    missing = []
    for name, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = shared[parameter["$ref"].rsplit("/", 1)[-1]]
            if not parameter.get("description"):
                missing.append(f"{name} {parameter['in']}:{parameter['name']}")
    assert missing == []


def test_the_check_sees_an_operation_without_a_description(document):
    """The checks above read what they should: strip one description and it is reported."""
    _name, operation = next(iter(_operations(document)))
    stripped = {"paths": {"/x": {"get": {**operation, "description": ""}}}}
    assert [n for n, op in _operations(stripped) if not op.get("description")] == ["GET /x"]
