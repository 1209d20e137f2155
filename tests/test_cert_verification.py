"""Certificate verification: pending → verified | rejected by an admin, and only verified
certificates count for matching (through the API; the backends' agreement is in
test_search_matching, test_search_differential and test_stateful)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.clock import business_today
from market.extensions import db
from market.models import (
    AuditLogEntry,
    Certification,
    CertVerification,
    Organization,
    OrgKind,
    OutboxEvent,
    OutboxTopic,
    Role,
)
from market.services.unit_of_work import commit
from search.current import search_backend
from search.elastic import ElasticsearchBackend
from tests import factories
from tests.conftest import RUN_ID, make_test_app

API = "/api/v1"
PLANT = factories.GUANGZHOU
TODAY = business_today()


@dataclass
class Market:
    """A supplier near a buyer's plant, and a demand that needs an IATF 16949 certificate."""

    supplier: Organization
    demand_id: int
    own: dict[str, str]
    buyer: dict[str, str]
    admin: dict[str, str]
    other_supplier: dict[str, str]
    auditor: dict[str, str]


def make_market() -> Market:
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=PLANT)
    supplier = factories.make_org(tier=1, description="制动")
    factories.make_site(supplier, at=(23.3, PLANT[1]))
    factories.make_capability(supplier, "chassis.braking")
    other = factories.make_org(tier=1)
    demand = factories.make_demand(
        oem, plant, category="chassis", required_standards=["iatf-16949"]
    )
    return Market(
        supplier=supplier,
        demand_id=demand.id,
        own=factories.auth(factories.make_user(supplier)),
        buyer=factories.auth(factories.make_user(oem)),
        admin=factories.auth(factories.make_user(role=Role.ADMIN)),
        other_supplier=factories.auth(factories.make_user(other)),
        auditor=factories.auth(factories.make_user(role=Role.AUDITOR)),
    )


@pytest.fixture
def m(db_session) -> Market:
    return make_market()


def declare(client: FlaskClient, m: Market, **fields: Any) -> dict[str, Any]:
    body = {
        "standard": "iatf-16949",
        "number": "IATF-0455-2026",
        "issuer": "TÜV SÜD",
        "valid_from": (TODAY - timedelta(days=100)).isoformat(),
        "valid_until": (TODAY + timedelta(days=800)).isoformat(),
        **fields,
    }
    response = client.post(
        f"{API}/suppliers/{m.supplier.id}/certifications", json=body, headers=m.own
    )
    assert response.status_code == 201, response.get_json()
    cert: dict[str, Any] = response.get_json()
    return cert


def matched(client: FlaskClient, m: Market) -> list[int]:
    response = client.get(f"{API}/demands/{m.demand_id}/matches", headers=m.buyer)
    assert response.status_code == 200, response.get_json()
    return [item["supplier"]["id"] for item in response.get_json()["items"]]


def review(
    client: FlaskClient, m: Market, cert_id: int, action: str, body: Any = None, headers=None
) -> Any:
    return client.post(
        f"{API}/suppliers/{m.supplier.id}/certifications/{cert_id}/{action}",
        json=body,
        headers=m.admin if headers is None else headers,
    )


def outbox(topic: OutboxTopic) -> list[OutboxEvent]:
    return list(
        db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.id)
        )
    )


# --- the review ---------------------------------------------------------------------------------


def test_a_declared_certificate_is_pending_and_not_matched_until_verified(client, m):
    cert = declare(client, m)
    assert cert["verification"] == "pending" and cert["reviewed_at"] is None
    assert matched(client, m) == []
    # Quoting needs eligibility too: a pending certificate does not give it.
    version = db.session.get(Organization, m.supplier.id).version
    syncs = len(outbox(OutboxTopic.SEARCH_SYNC))

    response = review(client, m, cert["id"], "verify")
    assert response.status_code == 200, response.get_json()
    verified = response.get_json()
    assert verified["verification"] == "verified" and verified["review_reason"] is None
    assert verified["reviewed_at"] is not None and verified["reviewed_by_id"] is not None
    assert matched(client, m) == [m.supplier.id]
    explained = client.get(f"{API}/demands/{m.demand_id}/matches", headers=m.buyer).get_json()
    assert [c["id"] for c in explained["items"][0]["matched_certifications"]] == [cert["id"]]

    # A search sync (new version), an event for the supplier and an audit-log row.
    assert db.session.get(Organization, m.supplier.id).version == version + 1
    assert len(outbox(OutboxTopic.SEARCH_SYNC)) == syncs + 1
    (event,) = outbox(OutboxTopic.EVENT_DISPATCH)
    assert event.aggregate_id == m.supplier.id
    assert event.payload["kind"] == "certification.verified"
    assert event.payload["subject_type"] == "certification"
    assert event.payload["subject_id"] == cert["id"]
    assert event.payload["data"]["standard"] == "iatf-16949"
    entry = db.session.scalars(
        select(AuditLogEntry).where(AuditLogEntry.action == "certification.verified")
    ).one()
    assert entry.target == f"certification:{cert['id']}"
    assert entry.organization_id == m.supplier.id and entry.actor_id == verified["reviewed_by_id"]


def test_reject_needs_a_reason_which_the_supplier_reads(client, m):
    cert = declare(client, m)
    for body in (None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}):
        response = review(client, m, cert["id"], "reject", body)
        assert response.status_code == 422, (body, response.get_json())
        assert "reason" in (response.get_json()["error"].get("fields") or {}), body
    assert db.session.get(Certification, cert["id"]).verification is CertVerification.PENDING
    assert outbox(OutboxTopic.EVENT_DISPATCH) == []

    response = review(client, m, cert["id"], "reject", {"reason": "Number unknown to IATF."})
    assert response.status_code == 200, response.get_json()
    # The supplier sees the state and the reason, on the list and on the profile.
    own = client.get(f"{API}/suppliers/{m.supplier.id}/certifications", headers=m.own).get_json()
    (item,) = own["items"]
    assert item["verification"] == "rejected"
    assert item["review_reason"] == "Number unknown to IATF."
    profile = client.get(f"{API}/suppliers/{m.supplier.id}", headers=m.own).get_json()
    assert profile["certifications"][0]["verification"] == "rejected"
    assert matched(client, m) == []
    (event,) = outbox(OutboxTopic.EVENT_DISPATCH)
    assert event.payload["kind"] == "certification.rejected"
    assert event.payload["data"]["reason"] == "Number unknown to IATF."
    assert db.session.scalar(
        select(func.count())
        .select_from(AuditLogEntry)
        .where(AuditLogEntry.action == "certification.rejected")
    )

    # Corrected by the supplier, it waits for a review again.
    response = client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{cert['id']}",
        json={"number": "IATF-0455-2027"},
        headers=m.own,
    )
    assert response.get_json()["verification"] == "pending"
    assert response.get_json()["review_reason"] is None


def test_only_pending_active_certificates_are_reviewed(client, m):
    cert = declare(client, m)
    assert review(client, m, cert["id"], "verify").status_code == 200
    for action, body in (("verify", None), ("reject", {"reason": "late"})):
        response = review(client, m, cert["id"], action, body)
        assert response.status_code == 409, response.get_json()
    revoked = declare(client, m, number="R-1")
    client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{revoked['id']}",
        json={"status": "revoked"},
        headers=m.own,
    )
    assert review(client, m, revoked["id"], "verify").status_code == 409
    # Nothing of another supplier's, nor a certificate that does not exist.
    theirs = factories.make_certification(
        factories.make_org(), verification=CertVerification.PENDING
    )
    assert review(client, m, theirs.id, "verify").status_code == 404
    assert review(client, m, 2**31 - 1, "verify").status_code == 404


def test_only_admins_review(client, m):
    cert = declare(client, m)
    for headers in (m.own, m.other_supplier, m.buyer, m.auditor):
        assert review(client, m, cert["id"], "verify", headers=headers).status_code == 403
        response = review(client, m, cert["id"], "reject", {"reason": "no"}, headers=headers)
        assert response.status_code == 403
        assert client.get(f"{API}/admin/certifications", headers=headers).status_code == 403
    assert review(client, m, cert["id"], "verify", headers={}).status_code == 401
    assert db.session.get(Certification, cert["id"]).verification is CertVerification.PENDING
    assert matched(client, m) == []


@pytest.mark.parametrize(
    "change",
    [
        {"number": "IATF-FORGED-1"},
        {"issuer": "Another Body"},
        {"valid_until": (TODAY + timedelta(days=3000)).isoformat()},
        {"valid_from": (TODAY - timedelta(days=5)).isoformat()},
        {"scope": "整车"},
    ],
)
def test_editing_a_verified_certificate_sends_it_back_to_review(client, m, change):
    """Verified as one thing, edited into another: it stops counting until reviewed again."""
    cert = declare(client, m)
    review(client, m, cert["id"], "verify")
    assert matched(client, m) == [m.supplier.id]
    response = client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{cert['id']}", json=change, headers=m.own
    )
    assert response.status_code == 200, response.get_json()
    edited = response.get_json()
    assert edited["verification"] == "pending"
    assert edited["reviewed_at"] is None and edited["reviewed_by_id"] is None
    assert matched(client, m) == []
    queue = client.get(f"{API}/admin/certifications", headers=m.admin).get_json()
    assert [c["id"] for c in queue["items"]] == [cert["id"]]


def test_a_patch_that_states_the_same_keeps_the_review(client, m):
    cert = declare(client, m)
    review(client, m, cert["id"], "verify")
    response = client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{cert['id']}",
        json={"number": cert["number"], "issuer": cert["issuer"]},
        headers=m.own,
    )
    assert response.get_json()["verification"] == "verified"
    assert matched(client, m) == [m.supplier.id]


def test_the_review_queue_lists_pending_active_certificates_oldest_first(client, m):
    first = declare(client, m, number="Q-1")
    second = declare(client, m, number="Q-2", standard="iso-9001")
    done = declare(client, m, number="Q-3")
    review(client, m, done["id"], "reject", {"reason": "Expired at the issuer."})
    revoked = declare(client, m, number="Q-4")
    client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{revoked['id']}",
        json={"status": "revoked"},
        headers=m.own,
    )
    factories.make_certification(m.supplier)  # verified (as the migration leaves old ones)

    def queue(query: str = "") -> dict[str, Any]:
        response = client.get(f"{API}/admin/certifications{query}", headers=m.admin)
        assert response.status_code == 200, response.get_json()
        page: dict[str, Any] = response.get_json()
        return page

    assert [c["id"] for c in queue()["items"]] == [first["id"], second["id"]]
    assert [c["id"] for c in queue("?status=pending")["items"]] == [first["id"], second["id"]]
    page = queue("?per_page=1&page=2")
    assert [c["id"] for c in page["items"]] == [second["id"]] and page["meta"]["total"] == 2
    assert [c["id"] for c in queue("?standard=iso-9001")["items"]] == [second["id"]]
    rejected = queue("?status=rejected")["items"]
    assert [(c["id"], c["review_reason"]) for c in rejected] == [
        (done["id"], "Expired at the issuer.")
    ]
    assert all(c["organization_id"] == m.supplier.id for c in queue()["items"])
    for bad in ("?status=approved", "?standard=iso-9999", "?per_page=0", "?sort=id"):
        response = client.get(f"{API}/admin/certifications{bad}", headers=m.admin)
        assert response.status_code == 422, bad
    # The supplier filters its own list by the review state too.
    own = client.get(
        f"{API}/suppliers/{m.supplier.id}/certifications?verification=pending", headers=m.own
    ).get_json()
    assert {c["id"] for c in own["items"]} == {first["id"], second["id"], revoked["id"]}
    # The public list of standards is untouched.
    standards = client.get(f"{API}/certifications").get_json()["items"]
    assert {"iatf-16949", "iso-9001"} <= {s["id"] for s in standards}


def test_a_pending_certificate_does_not_let_a_supplier_quote(client, m):
    cert = declare(client, m)
    site_id = db.session.scalars(
        select(factories.Site.id).where(factories.Site.organization_id == m.supplier.id)
    ).one()
    body = {
        "site_id": site_id,
        "unit_price": "12.50",
        "quantity": 1000,
        "lead_time_days": 30,
        "valid_until": (TODAY + timedelta(days=30)).isoformat(),
    }
    url = f"{API}/demands/{m.demand_id}/quotes"
    response = client.post(url, json=body, headers=m.own)
    assert response.status_code == 403, response.get_json()
    review(client, m, cert["id"], "verify")
    response = client.post(url, json=body, headers=m.own)
    assert response.status_code == 201, response.get_json()


# --- the search box: verified_only ---------------------------------------------------------------


def search(client: FlaskClient, m: Market, query: str) -> dict[str, Any]:
    response = client.get(f"{API}/suppliers/search?{query}", headers=m.buyer)
    assert response.status_code == 200, response.get_json()
    page: dict[str, Any] = response.get_json()
    return page


def test_verified_only_counts_verified_certificates_for_cert_and_facets(client, m):
    declared = declare(client, m)  # pending
    verified = factories.make_org(tier=2, description="制动")
    factories.make_site(verified, at=(23.2, PLANT[1]))
    factories.make_certification(verified, "iatf-16949")
    rejected = factories.make_org(tier=2, description="制动")
    factories.make_site(rejected, at=(23.25, PLANT[1]))
    factories.make_certification(rejected, "iatf-16949", verification=CertVerification.REJECTED)
    db.session.flush()

    default = search(client, m, "q=制动&cert=iatf-16949")
    assert sorted(i["supplier"]["id"] for i in default["items"]) == [m.supplier.id, verified.id]
    assert {"value": "iatf-16949", "count": 2} in default["facets"]["certification"]
    by_id = {i["supplier"]["id"]: i for i in default["items"]}
    assert by_id[m.supplier.id]["certifications"] == ["iatf-16949"]
    assert by_id[m.supplier.id]["verified_certifications"] == []
    assert by_id[verified.id]["verified_certifications"] == ["iatf-16949"]

    strict = search(client, m, "q=制动&cert=iatf-16949&verified_only=true")
    assert [i["supplier"]["id"] for i in strict["items"]] == [verified.id]
    assert strict["facets"]["certification"] == [{"value": "iatf-16949", "count": 1}]
    everyone = search(client, m, "q=制动&verified_only=true")
    assert {i["supplier"]["id"] for i in everyone["items"]} == {
        m.supplier.id,
        verified.id,
        rejected.id,
    }  # without cert=, verified_only filters no supplier: it changes what counts
    assert everyone["facets"]["certification"] == [{"value": "iatf-16949", "count": 1}]
    assert {i["supplier"]["id"]: i["certifications"] for i in everyone["items"]} == {
        m.supplier.id: [],
        verified.id: ["iatf-16949"],
        rejected.id: [],
    }

    review(client, m, declared["id"], "verify")
    strict = search(client, m, "q=制动&cert=iatf-16949&verified_only=true")
    assert sorted(i["supplier"]["id"] for i in strict["items"]) == [m.supplier.id, verified.id]
    for bad in ("verified_only=maybe", "verified_only=", "verified_only=2"):
        response = client.get(f"{API}/suppliers/search?{bad}", headers=m.buyer)
        assert response.status_code == 422, bad
        assert "verified_only" in response.get_json()["error"]["fields"]


# --- Elasticsearch, through the outbox ----------------------------------------------------------


@pytest.fixture
def es_app(database_url, elasticsearch_url, committed_db) -> Iterator[Flask]:
    application = make_test_app(
        database_url,
        ELASTICSEARCH_URL=elasticsearch_url,
        ELASTICSEARCH_INDEX_PREFIX=f"{RUN_ID}-{uuid.uuid4().hex[:8]}",
    )
    context = application.app_context()
    context.push()
    try:
        yield application
    finally:
        backend = search_backend()
        if isinstance(backend, ElasticsearchBackend):
            for index in backend.alias_targets():
                backend.delete_index(index)
        db.session.remove()
        db.engine.dispose()
        context.pop()


def _refresh() -> None:
    backend = search_backend()
    assert isinstance(backend, ElasticsearchBackend)
    backend.refresh()


@pytest.mark.elasticsearch
def test_elasticsearch_follows_verification_through_the_outbox(es_app):
    """Declared, verified, edited, rejected: after each commit the outbox sync (inline) brings
    the index up to date, and Elasticsearch matches as the database does."""
    m = make_market()
    commit()
    client = es_app.test_client()
    search_backend().ensure_index()  # type: ignore[attr-defined]
    cert = declare(client, m)
    _refresh()
    assert matched(client, m) == []
    strict = "q=制动&cert=iatf-16949&verified_only=true"
    assert search(client, m, strict)["items"] == []
    assert [i["supplier"]["id"] for i in search(client, m, "q=制动&cert=iatf-16949")["items"]] == [
        m.supplier.id
    ]

    assert review(client, m, cert["id"], "verify").status_code == 200
    _refresh()
    assert matched(client, m) == [m.supplier.id]
    assert [i["supplier"]["id"] for i in search(client, m, strict)["items"]] == [m.supplier.id]
    backend = search_backend()
    assert isinstance(backend, ElasticsearchBackend)
    doc = backend.client.get(index=backend.alias, id=str(m.supplier.id))["_source"]
    assert [c["verification"] for c in doc["certifications"]] == ["verified"]

    client.patch(
        f"{API}/suppliers/{m.supplier.id}/certifications/{cert['id']}",
        json={"valid_until": (TODAY + timedelta(days=1500)).isoformat()},
        headers=m.own,
    )
    _refresh()
    assert matched(client, m) == []

    rejected = review(client, m, cert["id"], "reject", {"reason": "Scope excludes brakes."})
    assert rejected.status_code == 200, rejected.get_json()
    _refresh()
    assert matched(client, m) == []
    assert search(client, m, "q=制动&cert=iatf-16949")["items"] == []
    doc = backend.client.get(index=backend.alias, id=str(m.supplier.id))["_source"]
    assert [c["verification"] for c in doc["certifications"]] == ["rejected"]
    assert not db.session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.topic == OutboxTopic.SEARCH_SYNC, OutboxEvent.status != "done"
        )
    ).all()
