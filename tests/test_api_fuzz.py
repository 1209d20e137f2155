"""Schemathesis against ``/openapi.json``: every operation, as every signed-in role.

The app runs in-process (WSGI) on the run's database. The authorization world
(``tests.authz.world``) is built once per module in a transaction that is rolled back; every
generated request runs in a savepoint of its own that is rolled back afterwards, so a write
(a revoked token, a suspended organization) never leaks into the next example.

Checks: no 5xx; every status code returned is documented for its operation (the catch-all
``default`` response is removed from the loaded document, so "documented" means explicitly);
content types, response headers and bodies conform to the documented responses.

Generation is bounded and reproducible: a fixed seed, ``derandomize``, ``MAX_EXAMPLES`` per
operation in the fuzzing phase plus schemathesis' deterministic coverage phase. Path ids and
a few body fields are drawn half of the time from the world's real objects, so the happy
paths are reached too, not only 404s and 422s.

Each generated request is sent as every persona its operation allows (one generation serves
all of them), and its first ``FORBIDDEN_EXAMPLES`` distinct requests also as the personas it
forbids: those are refused (403) before anything else runs, and ``tests/authz`` holds every
route × persona to its rule, so twenty random bodies each would only repeat that answer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import note, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from market import create_app, refdata
from market.config import TestConfig
from market.extensions import db
from market.models import Role
from market.permissions import PUBLIC
from tests import factories
from tests.authz.world import World, build_world
from tests.isolation import begin_outer, bind_session, end_outer

PERSONAS = ("buyer_a", "supplier_a", "auditor", "admin")
# For the coverage phase: the first persona in this order that an operation allows.
OWN_PERSONA = (
    ("admin", Role.ADMIN),
    ("buyer_a", Role.BUYER),
    ("supplier_a", Role.SUPPLIER),
    ("auditor", Role.AUDITOR),
)
MAX_EXAMPLES = 20
FORBIDDEN_EXAMPLES = 3
# Per request; generous, because the machine running CI is shared (a hang, not a slow query).
DEADLINE = timedelta(seconds=2)
SEED = 20_240_601


def _config(*, fuzzing: bool, coverage: bool) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "mode": "all",
                # Credentials come from the world, per persona; random ones are only 401s.
                "with-security-parameters": False,
            },
            "checks": {
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_headers_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
                # Data the document calls invalid must be refused (4xx), never accepted.
                "negative_data_rejection": {"enabled": True},
                # Not checked here: valid-looking data is often refused by business rules
                # (unknown city codes, other tenants' ids: 422/404/409); the remaining checks
                # are about stateful or method behaviour that other suites assert directly.
                "positive_data_acceptance": {"enabled": False},
                "missing_required_header": {"enabled": False},
                "unsupported_method": {"enabled": True},
                "allow_header_conformance": {"enabled": True},
                "use_after_free": {"enabled": False},
                "ensure_resource_availability": {"enabled": False},
                "ignored_auth": {"enabled": True},
            },
            "phases": {
                "examples": {"enabled": fuzzing},
                "fuzzing": {"enabled": fuzzing},
                "coverage": {"enabled": coverage},
                "stateful": {"enabled": False},
            },
        }
    )


# Real objects of the world a path parameter of this name may name (own, other tenant's, odd).
PATH_CHOICES: dict[str, tuple[str, ...]] = {
    "org_id": ("supplier_a", "supplier_b", "oem_a", "org_pending", "org_suspended"),
    "organization_id": ("oem_a", "oem_b", "supplier_a", "supplier_b", "org_pending"),
    "site_id": ("site_a", "site_b", "plant_a"),
    "capability_id": ("capability_a",),
    "certification_id": ("certification_a",),
    "plant_id": ("plant_a", "plant_b", "site_a"),
    "demand_id": ("demand_a", "demand_b"),
    "quote_id": ("quote_a",),
    "purchase_id": ("purchase_a",),
    "token_id": ("token_buyer_a", "token_supplier_a", "token_auditor", "token_admin"),
    "user_id": ("user_member_a", "user_buyer_a", "user_auditor", "user_auditor_elsewhere"),
    "invitation_id": ("invitation_a",),
    "authority_id": ("authority_a",),
    "endpoint_id": ("webhook_endpoint_a",),
    "delivery_id": ("webhook_delivery_a",),
    "notification_id": ("notification_a",),
}
# Body fields that name objects of the world.
BODY_ID_CHOICES: dict[str, tuple[str, ...]] = {
    "plant_id": ("plant_a", "plant_b"),
    "site_id": ("site_a", "site_b"),
    "supplier_site_id": ("site_a", "site_b"),
    "supplier_org_id": ("supplier_a", "supplier_b"),
    "organization_id": ("oem_a", "oem_b"),
    "oem_org_id": ("oem_a", "oem_b"),
}
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
WORLD_REF = "worldref-"  # URL-safe: path parameters are quoted before the test sees them


def _body_values() -> dict[str, st.SearchStrategy[Any]]:
    """Valid values for the body fields random text almost never gets right."""
    today = factories.business_today()
    text = st.sampled_from(["Brake calipers", "一号工厂", "INV-0001"])
    return {
        "category": st.sampled_from(["chassis", "chassis.braking.foundation", "electrical"]),
        "city_code": st.sampled_from(sorted(refdata.cities())[:4]),
        "standard": st.sampled_from(sorted(refdata.standards())[:3]),
        "required_standards": st.just(["iatf-16949"]),
        "amount": st.sampled_from(["1000.00", "250000.50", "0.01"]),
        "unit_price": st.sampled_from(["12.50", "0.99"]),
        "uscc": st.builds(factories.fictional_uscc),
        "need_by": st.just((today + timedelta(days=60)).isoformat()),
        "valid_from": st.just((today - timedelta(days=30)).isoformat()),
        "valid_until": st.just((today + timedelta(days=30)).isoformat()),
        "purchased_on": st.just(today.isoformat()),
        "lat": st.just(factories.SHENZHEN[0]),
        "lon": st.just(factories.SHENZHEN[1]),
        "quantity": st.sampled_from([1, 500]),
        "lead_time_days": st.just(30),
        "radius_km": st.just(200),
        "processes": st.just(["machining"]),
        **{
            name: text
            for name in ("name", "title", "unit", "address", "invoice_number", "po_number")
        },
        **{name: text for name in ("issuer", "number", "note", "reason", "description")},
    }


def _refs(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A reference to one of the world's objects, resolved to its id just before the call.

    Strategies are built (and the examples phase drawn) at collection time, before the world
    exists; the ids are only known once the module fixture has built it.
    """
    return st.sampled_from([f"{WORLD_REF}{name}" for name in names])


def _resolve(value: Any, world: World) -> Any:
    # Only this module's references resolve: schemathesis mutates strings it has seen, so a
    # bare or truncated "worldref-" may come back in another field, and stays text there.
    if isinstance(value, str) and value.startswith(WORLD_REF):
        return world.ids.get(value.removeprefix(WORLD_REF), value)
    return value


def _with_world_values(body: Any) -> st.SearchStrategy[Any]:
    """The generated body, or a copy with some fields replaced by real ids and valid values."""
    if not isinstance(body, dict):
        return st.just(body)
    values = _body_values()
    replaceable = {key: _refs(BODY_ID_CHOICES[key]) for key in body if key in BODY_ID_CHOICES} | {
        key: values[key] for key in body if key in values
    }
    if not replaceable:
        return st.just(body)
    # The replaced body first: Hypothesis favours earlier branches, and random bodies are
    # what the negative mode sends anyway.
    return st.one_of(
        st.fixed_dictionaries(replaceable).map(lambda replaced: {**body, **replaced}),
        st.just(body),
    )


def _load_document() -> dict[str, Any]:
    """The app's OpenAPI document, minus the catch-all ``default`` responses.

    Read at collection time from a throwaway app on in-memory SQLite (the document does not
    depend on the database); the requests themselves go to the run's app.
    """
    response = create_app(TestConfig).test_client().get("/openapi.json")
    document: dict[str, Any] = response.get_json()
    for path_item in document["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].pop("default", None)
    return document


DOCUMENT = _load_document()


class RunApp:
    """A WSGI app forwarding to the run's app (built by a session fixture after collection).

    Schemathesis binds operations to an app when the tests are collected; checks that send
    more requests (ignored_auth) use that binding too.
    """

    target: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.target is not None, "the fuzz_world fixture sets the app"
        return self.target(environ, start_response)


RUN_APP = RunApp()


def _schema(*, fuzzing: bool, coverage: bool) -> Any:
    loaded = schemathesis.openapi.from_dict(
        copy.deepcopy(DOCUMENT), config=_config(fuzzing=fuzzing, coverage=coverage)
    )
    loaded.app = RUN_APP

    @loaded.hook("before_generate_path_parameters")
    def real_ids(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        names = _PATH_PARAMETER.findall(context.operation.path)
        choices = {name: _refs(PATH_CHOICES[name]) for name in names if name in PATH_CHOICES}
        if not choices:
            return strategy
        return st.one_of(strategy, st.fixed_dictionaries(choices))

    @loaded.hook("flatmap_body")
    def real_body_values(context: Any, body: Any) -> st.SearchStrategy[Any]:
        return _with_world_values(body)

    return loaded


# Random and boundary-free generation, as every role; and schemathesis' deterministic
# coverage phase (boundary values, missing and mistyped fields), as each operation's own role.
fuzzing_schema = _schema(fuzzing=True, coverage=False)
coverage_schema = _schema(fuzzing=False, coverage=True)


@pytest.fixture(scope="module")
def fuzz_world(app: Flask) -> Iterator[tuple[Any, World]]:
    """The authorization world, in a transaction rolled back after the module."""
    original = db.session
    with app.app_context():
        connection = db.engine.connect()
        outer = begin_outer(connection)
        bind_session(connection)
        world = build_world()
        db.session.commit()  # releases the factories' savepoint into the outer transaction
        db.session.remove()
    RUN_APP.target = app
    try:
        yield connection, world
    finally:
        with app.app_context():
            db.session.remove()
        db.session = original
        end_outer(connection, outer)


def test_the_ledger_csv_export_is_documented() -> None:
    """``GET /ledger?format=csv`` answers text/csv: the 200 response documents it too.

    (Found by this module: flask-smorest merged the CSV alt_response into the JSON 200 and
    dropped its content type, so every CSV export was an undocumented response.)
    """
    ok = DOCUMENT["paths"]["/api/v1/ledger"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",  # format=xlsx
    }


def _allowed_roles(app: Flask, method: str, path: str) -> Any:
    """The roles the operation's view lets in (``PUBLIC`` for anyone)."""
    endpoint, _ = app.url_map.bind("localhost").match(
        _PATH_PARAMETER.sub("1", path), method=method.upper()
    )
    view = app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    handler: Any = getattr(view_class, method.lower()) if view_class is not None else view
    return handler.allowed_roles


def _own_persona(app: Flask, method: str, path: str) -> str:
    """The persona an operation is meant for (so validation is reached, not a 403)."""
    roles = _allowed_roles(app, method, path)
    if roles == PUBLIC:
        return "anonymous"
    return next(name for name, role in OWN_PERSONA if role in roles)


def _personas(app: Flask, method: str, path: str) -> tuple[list[str], list[str]]:
    """The personas the operation allows, and those it forbids (all are allowed if public)."""
    roles = _allowed_roles(app, method, path)
    by_name = dict(OWN_PERSONA)
    allowed = [p for p in PERSONAS if roles == PUBLIC or by_name[p] in roles]
    return allowed, [p for p in PERSONAS if p not in allowed]


# Per operation, the requests also sent as its forbidden personas (by their generated values,
# so Hypothesis replaying a failing request sends it to the same personas again).
_FORBIDDEN_SENT: dict[str, set[str]] = {}


def _also_forbidden(case: Any) -> bool:
    sent = _FORBIDDEN_SENT.setdefault(case.operation.label, set())
    key = repr((case.path_parameters, case.query, case.body))
    if key not in sent and len(sent) < FORBIDDEN_EXAMPLES:
        sent.add(key)
    return key in sent


def _call_and_validate(case: Any, app: Flask, fuzz_world: tuple[Any, World], persona: str) -> None:
    """Send the case as ``persona`` in a savepoint of its own; schemathesis checks the answer."""
    connection, world = fuzz_world
    case.path_parameters = {k: _resolve(v, world) for k, v in (case.path_parameters or {}).items()}
    if isinstance(case.body, dict):
        case.body = {key: _resolve(value, world) for key, value in case.body.items()}
    connection.exec_driver_sql("SAVEPOINT fuzz_case")
    try:
        case.call_and_validate(headers=world.headers[persona])
    finally:
        with app.app_context():
            db.session.remove()
        # Rolled back AND released: PostgreSQL keeps a savepoint after ROLLBACK TO (all that
        # SQLAlchemy's nested rollback sends), so every example would nest one level deeper
        # and the open subtransactions' ids pile up as locks ("out of shared memory").
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT fuzz_case")
        connection.exec_driver_sql("RELEASE SAVEPOINT fuzz_case")
        app.extensions["rate_limiter"].storage.reset()


@fuzzing_schema.parametrize()
@settings(deadline=DEADLINE * len(PERSONAS))
def test_every_role_gets_only_documented_responses(
    case: Any, app: Flask, fuzz_world: tuple[Any, World]
) -> None:
    operation = case.operation
    allowed, forbidden = _personas(app, operation.method, operation.path)
    for persona in allowed + (forbidden if _also_forbidden(case) else []):
        note(f"as {persona}")
        _call_and_validate(case, app, fuzz_world, persona)


@coverage_schema.parametrize()
@settings(deadline=DEADLINE)
def test_boundary_values_get_only_documented_responses(
    case: Any, app: Flask, fuzz_world: tuple[Any, World]
) -> None:
    operation = case.operation
    _call_and_validate(case, app, fuzz_world, _own_persona(app, operation.method, operation.path))
