"""Evidence of a claim: judged by its bytes, stored with its SHA-256, served only as an
attachment; and one open claim per (OEM, year) when filings race."""

from __future__ import annotations

import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from market import ledger
from market.extensions import db
from market.models import Claim, EvidenceDocument, OrgKind
from market.services import evidence_files
from tests import factories
from tests.authz.world import TINY_PNG
from tests.conftest import USE_POSTGRES
from tests.test_claims import Y, build_world, minimal_pdf, ok, under_review, upload

TEN_MB = 10 * 1024 * 1024
# The smallest JPEG the check accepts: SOI, a quantisation table, a baseline frame, EOI.
TINY_JPEG = (
    b"\xff\xd8\xff\xdb\x00\x43\x00"
    + bytes(64)
    + b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"
    + b"\xff\xd9"
)


def pdf_of_size(size: int) -> bytes:
    head, tail = b"%PDF-1.4\n%", b"\n%%EOF\n"
    return head + b"0" * (size - len(head) - len(tail)) + tail


def documents() -> int:
    return db.session.scalar(select(func.count()).select_from(EvidenceDocument)) or 0


@pytest.fixture
def world(db_session):
    ledger.ensure_default_policy()
    return build_world()


@pytest.fixture
def claim_id(client, world):
    return under_review(client, world)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "invoice.pdf", "empty"),
        (pdf_of_size(TEN_MB + 1), "invoice.pdf", "larger than 10 MB"),
        (b"<html><script>alert(1)</script></html>", "invoice.pdf", "Only PDF, JPEG and PNG"),
        (b"MZ\x90\x00" + bytes(200), "scan.png", "Only PDF, JPEG and PNG"),
        (b"GIF89a" + bytes(40), "photo.jpg", "Only PDF, JPEG and PNG"),
        (b"%PDF-1.7\n1 0 obj << >> endobj\n", "cut.pdf", "complete PDF"),  # no %%EOF
        (TINY_PNG[:-12], "cut.png", "complete PNG"),  # no IEND
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "cut.jpg", "complete JPEG"),
    ],
    ids=[
        "empty",
        "10MB+1",
        "html-as-pdf",
        "exe-as-png",
        "gif-as-jpg",
        "pdf-cut",
        "png-cut",
        "jpeg-cut",
    ],
)
def test_bad_documents_are_422_on_the_file_and_store_nothing(
    client, world, claim_id, data, name, message
):
    response = upload(client, claim_id, world["buyer"], world["p"][0], data, name=name)
    assert response.status_code == 422, response.get_json()
    assert message in response.get_json()["error"]["fields"]["file"][0]
    assert documents() == 0


def test_exactly_10_mb_is_accepted(client, world, claim_id):
    data = pdf_of_size(TEN_MB)
    body = ok(upload(client, claim_id, world["buyer"], world["p"][0], data), 201)
    assert (body["size"], body["sha256"]) == (TEN_MB, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"kind": "invoice"}, "purchase_id"),
        ({"purchase_id": "P", "kind": "receipt"}, "kind"),
        ({"purchase_id": "P"}, "kind"),
        ({"purchase_id": "P", "kind": "invoice", "extra": "1"}, "extra"),
        ({"purchase_id": "FAR", "kind": "invoice"}, "purchase_id"),  # not in the claim
        ({"purchase_id": "P", "kind": "invoice\u202e"}, "kind"),  # a bidi override
    ],
)
def test_bad_form_fields_are_422_with_the_field(client, world, claim_id, form, field):
    ids = {"P": str(world["p"][0]), "FAR": str(world["p"][3])}
    data = {k: ids.get(v, v) for k, v in form.items()}
    data["file"] = (io.BytesIO(minimal_pdf()), "invoice.pdf")
    response = client.post(
        f"/api/v1/claims/{claim_id}/evidence",
        data=data,
        content_type="multipart/form-data",
        headers=world["buyer"],
    )
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert documents() == 0


def test_the_upload_takes_multipart_only_and_needs_a_file(client, world, claim_id):
    url = f"/api/v1/claims/{claim_id}/evidence"
    as_json = client.post(url, json={"purchase_id": world["p"][0]}, headers=world["buyer"])
    assert as_json.status_code == 415
    raw = client.post(
        url, data=minimal_pdf(), content_type="application/pdf", headers=world["buyer"]
    )
    assert raw.status_code == 415
    no_file = client.post(
        url,
        data={"purchase_id": str(world["p"][0]), "kind": "invoice"},
        content_type="multipart/form-data",
        headers=world["buyer"],
    )
    assert no_file.status_code == 422 and "file" in no_file.get_json()["error"]["fields"]
    assert documents() == 0


def test_only_the_claiming_oem_uploads_and_never_to_a_draft_or_decided_claim(client, world):
    draft = ok(client.post("/api/v1/claims", json={"year": Y}, headers=world["buyer"]), 201)
    p1 = world["p"][0]
    assert upload(client, draft["id"], world["buyer"], p1, minimal_pdf()).status_code == 409
    claim_id = ok(
        client.post(f"/api/v1/claims/{draft['id']}/submit", json={}, headers=world["buyer"])
    )["id"]
    for who, status in (("auditor", 403), ("supplier", 403), ("other_buyer", 404)):
        assert upload(client, claim_id, world[who], p1, minimal_pdf()).status_code == status, who
    ok(client.post(f"/api/v1/claims/{claim_id}/review", json={}, headers=world["auditor"]))
    body = {"decision": "reject", "reason": "材料不全"}
    ok(client.post(f"/api/v1/claims/{claim_id}/decide", json=body, headers=world["auditor"]))
    assert upload(client, claim_id, world["buyer"], p1, minimal_pdf()).status_code == 409
    assert documents() == 0


@pytest.mark.parametrize(
    ("data", "name", "content_type", "saved_as"),
    [
        (minimal_pdf(), "发票 2025.pdf", "application/pdf", "2025.pdf"),
        (TINY_PNG, "scan.pdf", "image/png", "scan.png"),  # the bytes decide, not the name
        (TINY_JPEG, "delivery", "image/jpeg", "delivery.jpg"),
    ],
)
def test_documents_are_served_as_attachments_with_the_detected_type(
    client, world, claim_id, data, name, content_type, saved_as
):
    document = ok(upload(client, claim_id, world["buyer"], world["p"][0], data, name=name), 201)
    assert document["content_type"] == content_type
    listed = ok(client.get(f"/api/v1/claims/{claim_id}/evidence", headers=world["auditor"]))
    assert [d["sha256"] for d in listed["items"]] == [hashlib.sha256(data).hexdigest()]
    response = client.get(
        f"/api/v1/claims/{claim_id}/evidence/{document['id']}", headers=world["auditor"]
    )
    assert response.status_code == 200 and response.data == data
    assert response.mimetype == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and saved_as in disposition
    assert response.headers["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()


def test_a_pdf_with_javascript_is_stored_flagged_and_never_inline(client, world, claim_id):
    data = minimal_pdf(b"/OpenAction << /S /J#61vaScript /JS (app.alert\\(1\\)) >>")
    document = ok(upload(client, claim_id, world["buyer"], world["p"][0], data), 201)
    assert document["active_content"] is True
    response = client.get(
        f"/api/v1/claims/{claim_id}/evidence/{document['id']}", headers=world["buyer"]
    )
    assert response.data == data and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert evidence_files.detect(minimal_pdf()).active_content is False


def test_a_document_of_another_claim_is_404(client, world, claim_id):
    document = ok(upload(client, claim_id, world["buyer"], world["p"][0], TINY_PNG), 201)
    other = factories.make_org(OrgKind.OEM)
    factories.make_site(other)
    other_claim = Claim(oem_org_id=other.id, year=Y, kind="primary", state="draft")
    db.session.add(other_claim)
    db.session.commit()
    url = f"/api/v1/claims/{other_claim.id}/evidence/{document['id']}"
    assert client.get(url, headers=world["admin"]).status_code == 404
    assert client.get(url, headers=world["buyer"]).status_code == 404
    outside = client.get(
        f"/api/v1/claims/{claim_id}/evidence/{document['id']}", headers=world["elsewhere"]
    )
    assert outside.status_code == 404


# --- one open claim, under concurrency ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="concurrent writers need PostgreSQL")
def test_racing_filings_leave_one_open_claim(app, committed_db):
    oem = factories.make_org(OrgKind.OEM)
    factories.make_site(oem)
    headers = factories.auth(factories.make_user(oem))
    committed_db.commit()
    barrier = threading.Barrier(8)

    def race(_: int) -> tuple[int, Any]:
        client = app.test_client()  # its own app context, session and connection
        barrier.wait()
        response = client.post("/api/v1/claims", json={"year": Y}, headers=headers)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(race, range(8)))
    assert sorted(status for status, _ in results) == [201] + [409] * 7, results
    committed_db.expire_all()
    assert committed_db.scalar(select(func.count()).select_from(Claim)) == 1
