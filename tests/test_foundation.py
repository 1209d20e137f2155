"""The skeleton every feature relies on: probes, the error envelope, request rules, types."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text

from market import uscc
from market.extensions import db
from market.models import Organization, OrgKind
from tests import factories
from tests.conftest import make_test_app


def test_healthz_answers_without_touching_services(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_each_backend_of_the_default_test_app(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["search"]["kind"] == "database"
    assert set(body["checks"]) == {"database", "redis", "search"}


@pytest.mark.redis
@pytest.mark.elasticsearch
def test_readyz_with_the_real_redis_and_elasticsearch(database_url, redis_url, elasticsearch_url):
    app = make_test_app(
        database_url, REDIS_URL=redis_url, ELASTICSEARCH_URL=elasticsearch_url, JOB_MODE="rq"
    )
    body = app.test_client().get("/readyz").get_json()
    assert body["status"] == "ok", body
    assert body["checks"]["redis"]["kind"] == "redis"
    assert body["checks"]["search"]["kind"] == "elasticsearch"
    assert body["checks"]["search"]["cluster_status"] in {"green", "yellow"}
    assert body["checks"]["redis"]["latency_ms"] >= 0


def test_readyz_degrades_but_stays_200_when_redis_and_search_are_down(database_url):
    app = make_test_app(
        database_url,
        REDIS_URL="redis://127.0.0.1:1/0",
        ELASTICSEARCH_URL="http://127.0.0.1:1",
        JOB_MODE="rq",
    )
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["search"]["status"] == "down"


def test_readyz_is_503_when_the_database_is_down(tmp_path):
    app = make_test_app("postgresql+psycopg://nobody:x@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"]["status"] == "down"
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_unknown_route_uses_the_error_envelope(client):
    response = client.get("/api/v1/nowhere", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["status"] == 404 and error["code"] == "not_found"
    assert error["request_id"] == "abc-123"
    assert response.headers["X-Request-ID"] == "abc-123"


def test_a_forged_request_id_is_replaced(client):
    forged = "x" * 65 + "<script>"
    response = client.get("/healthz", headers={"X-Request-ID": forged})
    assert response.headers["X-Request-ID"] != forged
    assert len(response.headers["X-Request-ID"]) == 32


def test_wrong_method_is_405_not_a_body_error(client):
    response = client.post("/api/v1/cities", data="x", content_type="text/plain")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b'{"a": ', "application/json", 400, "malformed_json"),
        (b"\xff\xfe{}", "application/json", 400, "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "malformed_json"),
        (
            json.dumps(
                {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
            ).encode(),
            "application/json",
            422,
            "validation_error",
        ),
        (b'{"name": "a\\u0000b"}', "application/json", 422, "validation_error"),
        (b'{"name": "\\ud800"}', "application/json", 422, "validation_error"),
        (b'{"name": "abc\\u202eexe"}', "application/json", 422, "validation_error"),
    ],
)
def test_request_bodies_are_checked_before_any_view(probe_client, body, content_type, status, code):
    response = probe_client.post("/api/v1/_probe", data=body, content_type=content_type)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == code
    if status == 422:
        assert error["fields"]


@pytest.fixture(scope="module")
def probe_client(database_url):
    """An app of its own with a throwaway POST route: the body checks apply to every write."""
    app = make_test_app(database_url)
    app.add_url_rule("/api/v1/_probe", "_probe", lambda: {"ok": True}, methods=["POST"])
    return app.test_client()


def test_oversized_body_is_413(probe_client):
    response = probe_client.post(
        "/api/v1/_probe", data=b'{"a": "' + b"x" * 300_000 + b'"}', content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_control_characters_in_the_query_string_are_rejected(client):
    response = client.get("/api/v1/cities?q=%00")
    assert response.status_code == 422
    assert "q" in response.get_json()["error"]["fields"]


def test_security_headers_on_every_response(client):
    response = client.get("/api/v1/cities")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_openapi_document_is_valid_openapi_3(client):
    from openapi_spec_validator import validate

    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert "/readyz" in spec["paths"]
    assert "/api/v1/cities" in spec["paths"]


def test_interactive_docs_are_served(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()


def test_docs_need_no_cdn_and_no_inline_code(client):
    import re

    page = client.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "http" not in policy
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    html = page.get_data(as_text=True)
    assert "<style" not in html and " style=" not in html
    sources = re.findall(r'<script src="([^"]+)"></script>', html)
    assert len(sources) == html.count("<script") == 2  # every script is a file
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(url.startswith("/") for url in assets), assets
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["Content-Security-Policy"] == policy
    # Only the files the page uses are served from the package, nothing beside them.
    assert client.get("/docs/swagger-ui/swagger-editor-bundle.js").status_code == 404
    assert client.get("/docs/swagger-ui/../docs.py").status_code == 404
    # The API keeps its own strict policy.
    assert client.get("/healthz").headers["Content-Security-Policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )


def test_reference_data_is_served(client):
    cities = client.get("/api/v1/cities").get_json()["items"]
    assert len(cities) == 21
    assert {c["code"][:2] for c in cities} == {"44"}
    assert any(c["slug"] if "slug" in c else c["code"] == "440300" for c in cities)
    taxonomy = client.get("/api/v1/taxonomy").get_json()["items"]
    assert {node["slug"] for node in taxonomy} >= {"powertrain"}
    standards = {s["id"] for s in client.get("/api/v1/certifications").get_json()["items"]}
    assert {"iatf-16949", "iso-26262", "aec-q100"} <= standards


def test_money_is_exact_and_timestamps_are_utc(db_session):
    org = Organization(
        kind=OrgKind.SUPPLIER, uscc="91440300MA5FAKE001", legal_name="测试", city_code="440300"
    )
    db_session.add(org)
    db_session.flush()
    stamp = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    org.verified_at = stamp
    db_session.flush()
    db_session.expire_all()
    loaded = db_session.scalar(select(Organization).where(Organization.id == org.id))
    assert loaded.verified_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert loaded.verified_at.tzinfo is not None
    assert loaded.created_at.tzinfo is not None


def test_money_round_trips_exactly(db_session):
    from market.database import Money

    column_type = Money()
    dialect = db_session.get_bind().dialect
    for value in ["0.01", "1234567890123456.78", "0.10", "99999.99"]:
        bound = column_type.process_bind_param(Decimal(value), dialect)
        assert column_type.process_result_value(bound, dialect) == Decimal(value)
    with pytest.raises(ValueError, match="more than two decimals"):
        column_type.process_bind_param(Decimal("1.001"), dialect)


def test_naive_datetimes_are_refused(db_session):
    org = Organization(
        kind=OrgKind.OEM,
        uscc="91440300MA5FAKE002",
        legal_name="x",
        city_code="440300",
        verified_at=datetime(2026, 1, 1),
    )
    db_session.add(org)
    with pytest.raises(Exception, match="naive datetime"):
        db_session.flush()
    db_session.rollback()


def test_migrations_match_the_models(app):
    """Autogenerate against the migrated database finds nothing: no model change lacks a revision."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda o, n, t, r, c: not (t == "table" and r and c is None),
            },
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_database_is_the_expected_one(db_session):
    dialect = db_session.get_bind().dialect.name
    from tests.conftest import USE_POSTGRES

    assert dialect == ("postgresql" if USE_POSTGRES else "sqlite")
    if dialect == "postgresql":
        assert db_session.execute(text("SELECT current_database()")).scalar().startswith("market_t")


def test_uscc_vectors_from_the_reference_data():
    vectors = json.loads((Path(__file__).parent / "data" / "uscc_vectors.json").read_text())
    for case in vectors["valid"]:
        assert uscc.validate(case["code"]) == case["code"]
    for case in vectors["invalid"]:
        with pytest.raises(uscc.InvalidUSCC):
            uscc.validate(case["code"])


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("91440300MA5F", "length"),
        ("91440300MA5FIO0S0Z", "alphabet"),
        ("9144X300MA5FAKE00X", "division_code"),
    ],
)
def test_uscc_names_the_rule_it_breaks(code, rule):
    with pytest.raises(uscc.InvalidUSCC) as caught:
        uscc.validate(code)
    assert caught.value.rule == rule


def test_factories_build_a_small_world_without_committing(db_session):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem)
    supplier = factories.make_org()
    site = factories.make_site(supplier, at=factories.SHENZHEN, city_code="440300")
    factories.make_capability(supplier, "chassis.braking.foundation")
    factories.make_certification(supplier)
    demand = factories.make_demand(oem, plant)
    purchase = factories.make_purchase(oem, plant, supplier, site, amount="123.45")
    assert uscc.validate(supplier.uscc) == supplier.uscc
    assert demand.id and purchase.amount == Decimal("123.45")


def test_db_session_rolls_back_what_the_code_commits(app):
    """The fixture's promise: a use case's commit() inside a test leaves nothing behind."""
    from tests.conftest import db_session as fixture

    marker = factories.fictional_uscc()
    generator = fixture.__wrapped__(app)
    session = next(generator)
    session.add(Organization(kind=OrgKind.OEM, uscc=marker, legal_name="x", city_code="440100"))
    session.commit()
    assert session.scalar(select(Organization.id).where(Organization.uscc == marker))
    with pytest.raises(StopIteration):
        next(generator)
    with app.app_context():
        assert db.session.scalar(select(Organization.id).where(Organization.uscc == marker)) is None
        db.session.remove()


def test_readyz_detail_is_for_admins_and_local_probes_only(client, db_session):
    from market.models import Role
    from tests import factories

    remote = {"REMOTE_ADDR": "203.0.113.7"}
    anonymous = client.get("/readyz", environ_base=remote)
    assert anonymous.status_code == 200
    assert anonymous.get_json() == {"status": "ok"}
    # Through a reverse proxy on this machine: not a local probe.
    proxied = client.get("/readyz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert proxied.get_json() == {"status": "ok"}
    auditor = factories.auth(factories.make_user(role=Role.AUDITOR))
    assert client.get("/readyz", headers=auditor, environ_base=remote).get_json() == {
        "status": "ok"
    }
    admin = factories.auth(factories.make_user(role=Role.ADMIN))
    detailed = client.get("/readyz", headers=admin, environ_base=remote).get_json()
    assert detailed["checks"]["database"]["latency_ms"] >= 0
    local = client.get("/readyz", environ_base={"REMOTE_ADDR": "::1"}).get_json()
    assert set(local["checks"]) == {"database", "redis", "search"}


def test_readyz_without_detail_still_says_503_when_the_database_is_down():
    app = make_test_app("postgresql+psycopg://nobody:x@127.0.0.1:1/none")
    response = app.test_client().get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert response.status_code == 503
    assert response.get_json() == {"status": "down"}
