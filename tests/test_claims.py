"""Subsidy claims: the walk-through over HTTP, the state machine, jurisdiction, one open claim
per (OEM, year), the approved amount by hand, and the insert-only history.

Year Y is last business year (it has ended in Asia/Shanghai; purchases may still be recorded in
it, which is how a late purchase reaches a decided claim). Figures by hand, policy v1 (rate
0.01, cap 2,000,000.00), declared baseline B = 100,000.00:

    near-shore p1 150,000.00 + p2 80,000.00 + p3 30,000.55 = T 260,000.55 (far p4 not in T)
    I* = 160,000.55, S* = round_half_up(1,600.0055) = 1,600.01            (claimed)
    p3 rejected: T_approved 230,000.00 → I 130,000.00 → 1,300.00            (approved)
    late p5 20,000.00: T 280,000.55 → S* 1,800.01, delta 200.00             (supplementary)
    supplementary approved: T_approved 250,000.00 → 1,500.00 − 1,300.00 = 200.00
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from market import ledger
from market.clock import business_year
from market.extensions import db
from market.ledger import checkpoints
from market.models import (
    AuditLogEntry,
    Claim,
    ClaimKind,
    ClaimLine,
    ClaimState,
    ClaimTransition,
    DeclaredBaseline,
    EvidenceDocument,
    OrgKind,
    OutboxEvent,
    OutboxTopic,
    Role,
)
from market.services.claim_figures import subsidy_of
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
Y = business_year() - 1
RATE, CAP = D("0.010000"), D("2000000.00")


def minimal_pdf(body: bytes = b"") -> bytes:
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog " + body + b" >>\nendobj\ntrailer\n%%EOF\n"


@pytest.fixture(autouse=True)
def _policy(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def world(db_session):
    return build_world()


def build_world():
    """An OEM with a Guangzhou plant, a near supplier (Shenzhen), a far one (Shantou), the
    declared baseline and four purchases of Y in the ledger; buyers, auditors, an admin."""
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    db.session.add(DeclaredBaseline(oem_org_id=oem.id, year=Y - 1, amount=D("100000.00")))
    rows = [
        (near, near_site, "150000.00"),
        (near, near_site, "80000.00"),
        (near, near_site, "30000.55"),
        (far, far_site, "50000.00"),
    ]
    purchases = [
        factories.make_purchase(oem, plant, s, site, amount=a, purchased_on=date(Y, 3, 1 + i))
        for i, (s, site, a) in enumerate(rows)
    ]
    for purchase in purchases:
        ledger.sync_purchase(purchase.id)
    db.session.flush()
    shantou = factories.make_authority(["440500"], name="汕头市财政局")
    return {
        "oem": oem,
        "plant": plant,
        "near": near,
        "near_site": near_site,
        "p": [p.id for p in purchases],
        "buyer": factories.auth(factories.make_user(oem)),
        "supplier": factories.auth(factories.make_user(near)),
        "near_user": factories.make_user(near),
        "other_buyer": factories.auth(factories.make_user(factories.make_org(OrgKind.OEM))),
        "auditor": factories.auth(factories.make_user(role=Role.AUDITOR)),
        "elsewhere": factories.auth(factories.make_user(role=Role.AUDITOR, authority=shantou)),
        "admin": factories.auth(factories.make_user(role=Role.ADMIN)),
    }


def ok(response, status=200):
    assert response.status_code == status, response.get_json()
    return response.get_json()


def upload(client, claim_id, headers, purchase_id, data, name="invoice.pdf", kind="invoice"):
    return client.post(
        f"/api/v1/claims/{claim_id}/evidence",
        data={"purchase_id": str(purchase_id), "kind": kind, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        headers=headers,
    )


def file_and_submit(client, w, **body):
    claim = ok(client.post("/api/v1/claims", json={"year": Y, **body}, headers=w["buyer"]), 201)
    return ok(client.post(f"/api/v1/claims/{claim['id']}/submit", json={}, headers=w["buyer"]))


def under_review(client, w):
    claim = file_and_submit(client, w)
    ok(client.post(f"/api/v1/claims/{claim['id']}/review", json={}, headers=w["auditor"]))
    return claim["id"]


# --- the walk-through -------------------------------------------------------------------------


def test_a_claim_from_filing_to_a_supplementary_claim_over_http(client, world):
    w, buyer, auditor = world, world["buyer"], world["auditor"]
    p1, p2, p3, _far = w["p"]
    # File and submit: the figures are frozen, covered by a signed checkpoint.
    draft = ok(client.post("/api/v1/claims", json={"year": Y}, headers=buyer), 201)
    assert (draft["state"], draft["kind"], draft["checkpoint_size"]) == ("draft", "primary", None)
    claim_id = draft["id"]
    submitted = ok(client.post(f"/api/v1/claims/{claim_id}/submit", json={}, headers=buyer))
    assert submitted["state"] == "submitted"
    assert submitted["claimed_amount"] == "1600.01"
    assert submitted["checkpoint_size"] == checkpoints.ledger_size()  # covers every entry
    detail = ok(client.get(f"/api/v1/claims/{claim_id}", headers=auditor))
    figures = detail["figures"]
    assert (figures["near_shore_total"], figures["baseline"], figures["increment"]) == (
        "260000.55",
        "100000.00",
        "160000.55",
    )
    assert (figures["subsidy"], figures["held"], figures["annual_cap"]) == (
        "1600.01",
        False,
        "2000000.00",
    )
    assert [line["purchase_id"] for line in detail["lines"]] == [p1, p2, p3]  # p4 is far
    size = detail["claim"]["checkpoint_size"]
    checkpoint = ok(client.get(f"/api/v1/ledger/checkpoints/{size}", headers=auditor))
    assert checkpoint["root"] == detail["claim"]["checkpoint_root"]
    # The supplier never sees it.
    assert client.get(f"/api/v1/claims/{claim_id}", headers=w["supplier"]).status_code == 403

    # Review; evidence requested for p1's invoice; nothing can be decided meanwhile.
    ok(client.post(f"/api/v1/claims/{claim_id}/review", json={}, headers=auditor))
    body = {"purchase_ids": [p1], "kinds": ["invoice"], "note": "请提供发票原件扫描件"}
    requested = ok(
        client.post(f"/api/v1/claims/{claim_id}/request-evidence", json=body, headers=auditor)
    )
    assert requested["state"] == "evidence_requested"
    decision = {"decisions": [{"purchase_id": p1, "decision": "approved"}]}
    early = client.post(f"/api/v1/claims/{claim_id}/decisions", json=decision, headers=auditor)
    assert early.status_code == 409

    # The OEM hands in the invoice: the claim is back under review by itself.
    pdf = minimal_pdf()
    document = ok(upload(client, claim_id, buyer, p1, pdf), 201)
    assert document["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert document["content_type"] == "application/pdf"
    detail = ok(client.get(f"/api/v1/claims/{claim_id}", headers=auditor))
    assert detail["claim"]["state"] == "under_review"
    assert detail["evidence_requests"][0]["outstanding"] == []
    downloaded = client.get(f"/api/v1/claims/{claim_id}/evidence/{document['id']}", headers=auditor)
    assert downloaded.status_code == 200 and downloaded.data == pdf

    # Per-purchase decisions (p3 rejected), then the claim: partially approved, 1,300.00.
    decisions = {
        "decisions": [
            {"purchase_id": p1, "decision": "approved"},
            {"purchase_id": p2, "decision": "approved"},
            {"purchase_id": p3, "decision": "rejected", "reason": "发票与送货单金额不符"},
        ]
    }
    ok(client.post(f"/api/v1/claims/{claim_id}/decisions", json=decisions, headers=auditor))
    preview = ok(client.get(f"/api/v1/claims/{claim_id}", headers=auditor))["approved_preview"]
    assert preview == "1300.00"
    decided = ok(
        client.post(
            f"/api/v1/claims/{claim_id}/decide",
            json={"decision": "approve", "reason": "核定"},
            headers=auditor,
        )
    )
    assert (decided["state"], decided["approved_amount"]) == ("partially_approved", "1300.00")

    # A late purchase of Y, recorded and confirmed over HTTP; the inline worker counts it.
    late = {
        "supplier_org_id": w["near"].id,
        "supplier_site_id": w["near_site"].id,
        "plant_id": w["plant"].id,
        "category": "chassis.braking.foundation",
        "amount": "20000.00",
        "purchased_on": date(Y, 12, 30).isoformat(),
        "invoice_number": "44031234-LATE-0001",
    }
    p5 = ok(client.post("/api/v1/purchases", json=late, headers=buyer), 201)["id"]
    supplier_user = factories.auth(w["near_user"])
    db.session.commit()
    ok(client.post(f"/api/v1/purchases/{p5}/confirm", headers=supplier_user))

    # The delta shows on the decided claim.
    delta = ok(client.get(f"/api/v1/claims/{claim_id}", headers=buyer))["delta"]
    assert (delta["entries"], delta["purchase_ids"]) == (1, [p5])
    assert (delta["near_shore_total_change"], delta["subsidy_change"]) == ("20000.00", "200.00")

    # The supplementary claim takes up exactly that delta.
    supplementary = file_and_submit(client, w, kind="supplementary")
    assert (supplementary["kind"], supplementary["parent_id"]) == ("supplementary", claim_id)
    assert supplementary["claimed_amount"] == "200.00"
    assert supplementary["covered_after"] == size
    sup_id = supplementary["id"]
    sup = ok(client.get(f"/api/v1/claims/{sup_id}", headers=auditor))
    assert [line["purchase_id"] for line in sup["lines"]] == [p5]
    assert sup["claim"]["checkpoint_size"] > size
    ok(client.post(f"/api/v1/claims/{sup_id}/review", json={}, headers=auditor))
    approve_p5 = {"decisions": [{"purchase_id": p5, "decision": "approved"}]}
    ok(client.post(f"/api/v1/claims/{sup_id}/decisions", json=approve_p5, headers=auditor))
    final = ok(
        client.post(
            f"/api/v1/claims/{sup_id}/decide",
            json={"decision": "approve", "reason": "补充申报核定"},
            headers=auditor,
        )
    )
    assert (final["state"], final["approved_amount"]) == ("approved", "200.00")
    first = ok(client.get(f"/api/v1/claims/{claim_id}", headers=buyer))
    assert first["supplementary_claim_id"] == sup_id

    # Every transition: who, when, why; the audit log and the events.
    states = [(t["from_state"], t["to_state"]) for t in first["transitions"]]
    assert states == [
        (None, "draft"),
        ("draft", "submitted"),
        ("submitted", "under_review"),
        ("under_review", "evidence_requested"),
        ("evidence_requested", "under_review"),
        ("under_review", "partially_approved"),
    ]
    assert all(t["actor_id"] and t["created_at"] for t in first["transitions"])
    assert first["transitions"][-1]["reason"] == "核定"
    actions = db.session.scalars(
        select(AuditLogEntry.action).where(AuditLogEntry.target == f"claim:{claim_id}")
    ).all()
    assert {"claim.submitted", "claim.partially_approved", "claim.evidence_uploaded"} <= set(
        actions
    )
    kinds = [
        e.payload["kind"]
        for e in db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
        )
        if e.payload.get("subject_type") == "claim"
    ]
    assert kinds.count("claim.evidence_requested") == 1
    assert kinds.count("claim.state_changed") == 5 + 4  # six transitions less the request, four


# --- the approved amount ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "baseline", "expected"),
    [
        ("260000.55", "100000.00", "1600.01"),  # 1,600.0055 rounds half up
        ("230000.00", "100000.00", "1300.00"),
        ("100050.00", "100000.00", "0.50"),
        ("100000.50", "100000.00", "0.01"),  # 0.005 → 0.01 (half up, not half even)
        ("100000.49", "100000.00", "0.00"),
        ("90000.00", "100000.00", "0.00"),  # no increment, nothing due
        ("300000000.00", "0.00", "2000000.00"),  # capped
    ],
)
def test_the_approved_amount_formula_by_hand(total, baseline, expected):
    assert subsidy_of(D(total), D(baseline), RATE, CAP) == D(expected)


def test_a_capped_claim_keeps_the_cap_until_rejections_bring_it_under(client, db_session):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    site = factories.make_site(near, at=SHENZHEN)
    db.session.add(DeclaredBaseline(oem_org_id=oem.id, year=Y - 1, amount=D("0.00")))
    big = [
        factories.make_purchase(oem, plant, near, site, amount=a, purchased_on=date(Y, 5, 1))
        for a in ("150000000.00", "150000000.00", "60000000.00")
    ]
    for purchase in big:
        ledger.sync_purchase(purchase.id)
    buyer = factories.auth(factories.make_user(oem))
    auditor = factories.auth(factories.make_user(role=Role.AUDITOR))
    claim = ok(client.post("/api/v1/claims", json={"year": Y}, headers=buyer), 201)
    claimed = ok(client.post(f"/api/v1/claims/{claim['id']}/submit", json={}, headers=buyer))
    assert claimed["claimed_amount"] == "2000000.00"  # 3,600,000.00 capped
    ok(client.post(f"/api/v1/claims/{claim['id']}/review", json={}, headers=auditor))
    decisions = {
        "decisions": [
            {"purchase_id": big[0].id, "decision": "rejected", "reason": "重复"},
            {"purchase_id": big[1].id, "decision": "approved"},
            {"purchase_id": big[2].id, "decision": "approved"},
        ]
    }
    ok(client.post(f"/api/v1/claims/{claim['id']}/decisions", json=decisions, headers=auditor))
    body = {"decision": "approve", "reason": "核定"}
    decided = ok(client.post(f"/api/v1/claims/{claim['id']}/decide", json=body, headers=auditor))
    # T_approved 210,000,000.00 → 2,100,000.00 → capped at 2,000,000.00.
    assert (decided["state"], decided["approved_amount"]) == ("partially_approved", "2000000.00")


# --- the state machine ------------------------------------------------------------------------

ACTIONS = {
    "submit": ("buyer", {}),
    "review": ("auditor", {}),
    "request-evidence": ("auditor", {"purchase_ids": ["P1"], "kinds": ["invoice"]}),
    "decisions": ("auditor", {"decisions": [{"purchase_id": "P1", "decision": "approved"}]}),
    "decide": ("auditor", {"decision": "reject", "reason": "x"}),
}
ALLOWED = {
    "submit": {"draft"},
    "review": {"submitted", "evidence_requested"},
    "request-evidence": {"under_review"},
    "decisions": {"under_review"},
    "decide": {"under_review"},
}
ILLEGAL = [
    (state.value, action)
    for state in ClaimState
    for action in ACTIONS
    if state.value not in ALLOWED[action]
]


def _snapshot_rows(claim_id):
    claim = db.session.get(Claim, claim_id)
    db.session.refresh(claim)
    lines = db.session.execute(
        select(ClaimLine.purchase_id, ClaimLine.decision).where(ClaimLine.claim_id == claim_id)
    ).all()
    transitions = db.session.scalar(
        select(func.count()).where(ClaimTransition.claim_id == claim_id)
    )
    return claim.state, claim.approved_amount, sorted(lines), transitions


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_every_illegal_transition_is_409_and_changes_nothing(client, world, state, action):
    claim_id = file_and_submit(client, world)["id"]
    claim = db.session.get(Claim, claim_id)
    claim.state = ClaimState(state)
    db.session.commit()
    before = _snapshot_rows(claim_id)
    who, body = ACTIONS[action]
    body = _with_purchase(body, world["p"][0])
    response = client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=world[who])
    assert response.status_code == 409, response.get_json()
    assert _snapshot_rows(claim_id) == before


def _with_purchase(body, purchase_id):
    if isinstance(body, dict):
        return {k: _with_purchase(v, purchase_id) for k, v in body.items()}
    if isinstance(body, list):
        return [_with_purchase(v, purchase_id) for v in body]
    return purchase_id if body == "P1" else body


def test_a_decision_for_a_purchase_not_in_the_claim_changes_nothing(client, world):
    claim_id = under_review(client, world)
    p1, _, _, far = world["p"]
    before = _snapshot_rows(claim_id)
    for decisions in (
        [{"purchase_id": p1, "decision": "approved"}, {"purchase_id": far, "decision": "approved"}],
        [
            {"purchase_id": p1, "decision": "approved"},
            {"purchase_id": p1, "decision": "rejected", "reason": "x"},
        ],
        [{"purchase_id": p1, "decision": "rejected"}],  # no reason
        [{"purchase_id": p1, "decision": "pending"}],
    ):
        response = client.post(
            f"/api/v1/claims/{claim_id}/decisions",
            json={"decisions": decisions},
            headers=world["auditor"],
        )
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["fields"]
    assert _snapshot_rows(claim_id) == before
    evidence = {"purchase_ids": [far], "kinds": ["invoice"]}
    response = client.post(
        f"/api/v1/claims/{claim_id}/request-evidence", json=evidence, headers=world["auditor"]
    )
    assert response.status_code == 422 and "purchase_ids" in response.get_json()["error"]["fields"]
    assert _snapshot_rows(claim_id) == before


def test_approving_with_undecided_purchases_and_deciding_twice_are_409(client, world):
    claim_id = under_review(client, world)
    body = {"decision": "approve", "reason": "ok"}
    url = f"/api/v1/claims/{claim_id}/decide"
    assert client.post(url, json=body, headers=world["auditor"]).status_code == 409
    rejected = ok(
        client.post(
            url, json={"decision": "reject", "reason": "材料不全"}, headers=world["auditor"]
        )
    )
    assert (rejected["state"], rejected["approved_amount"]) == ("rejected", "0.00")
    before = _snapshot_rows(claim_id)
    assert client.post(url, json=body, headers=world["auditor"]).status_code == 409
    assert _snapshot_rows(claim_id) == before


def test_only_auditors_and_admins_decide_and_only_the_oem_files(client, world):
    claim_id = file_and_submit(client, world)["id"]
    for who in ("buyer", "supplier", "other_buyer"):
        response = client.post(f"/api/v1/claims/{claim_id}/review", json={}, headers=world[who])
        assert response.status_code in (403, 404), who
    assert (
        client.post("/api/v1/claims", json={"year": Y}, headers=world["auditor"]).status_code == 403
    )
    assert (
        client.post("/api/v1/claims", json={"year": Y}, headers=world["supplier"]).status_code
        == 403
    )
    ok(client.post(f"/api/v1/claims/{claim_id}/review", json={}, headers=world["admin"]))


# --- filing rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("year", [business_year(), business_year() + 1])
def test_a_year_that_has_not_ended_is_422_and_files_nothing(client, world, year):
    response = client.post("/api/v1/claims", json={"year": year}, headers=world["buyer"])
    assert response.status_code == 422
    assert "year" in response.get_json()["error"]["fields"]
    assert db.session.scalar(select(func.count()).select_from(Claim)) == 0


def test_one_open_claim_per_oem_and_year(client, world):
    first = ok(client.post("/api/v1/claims", json={"year": Y}, headers=world["buyer"]), 201)
    second = client.post("/api/v1/claims", json={"year": Y}, headers=world["buyer"])
    assert second.status_code == 409
    early = client.post(
        "/api/v1/claims", json={"year": Y, "kind": "supplementary"}, headers=world["buyer"]
    )
    assert early.status_code == 409  # nothing decided to supplement
    assert db.session.scalar(select(func.count()).select_from(Claim)) == 1
    # The database refuses a second open claim even if the check were raced past.
    twin = Claim(
        oem_org_id=world["oem"].id, year=Y, kind=ClaimKind.PRIMARY, state=ClaimState.SUBMITTED
    )
    with pytest.raises(Exception, match=r"(?i)unique"), db.session.begin_nested():
        db.session.add(twin)
        db.session.flush()
    # Another year is another claim.
    ok(client.post("/api/v1/claims", json={"year": Y - 1}, headers=world["buyer"]), 201)
    assert first["state"] == "draft"


def test_a_held_year_cannot_be_submitted(client, db_session):
    oem = factories.make_org(OrgKind.OEM, verified_at=None)  # no baseline: held
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    site = factories.make_site(near, at=SHENZHEN)
    purchase = factories.make_purchase(oem, plant, near, site, purchased_on=date(Y, 2, 1))
    ledger.sync_purchase(purchase.id)
    buyer = factories.auth(factories.make_user(oem))
    claim = ok(client.post("/api/v1/claims", json={"year": Y}, headers=buyer), 201)
    response = client.post(f"/api/v1/claims/{claim['id']}/submit", json={}, headers=buyer)
    assert response.status_code == 422
    assert "held" in response.get_json()["error"]["fields"]["year"][0]
    assert db.session.get(Claim, claim["id"]).state is ClaimState.DRAFT


# --- who sees what ----------------------------------------------------------------------------


def test_jurisdiction_and_tenancy(client, world):
    claim_id = file_and_submit(client, world)["id"]
    url = f"/api/v1/claims/{claim_id}"
    assert client.get(url, headers=world["auditor"]).status_code == 200
    assert client.get(url, headers=world["admin"]).status_code == 200
    assert client.get(url, headers=world["elsewhere"]).status_code == 404
    assert client.post(f"{url}/review", json={}, headers=world["elsewhere"]).status_code == 404
    assert client.get(url, headers=world["other_buyer"]).status_code == 404
    assert client.get(url, headers=world["supplier"]).status_code == 403
    assert client.get("/api/v1/claims", headers=world["supplier"]).status_code == 403

    def listed(who):
        return [c["id"] for c in ok(client.get("/api/v1/claims", headers=world[who]))["items"]]

    assert listed("auditor") == [claim_id] and listed("buyer") == [claim_id]
    assert listed("elsewhere") == [] and listed("other_buyer") == []
    page = ok(
        client.get(f"/api/v1/claims?year={Y}&state=submitted&per_page=1", headers=world["admin"])
    )
    assert page["meta"]["total"] == 1
    assert client.get("/api/v1/claims?state=lost", headers=world["admin"]).status_code == 422


# --- insert-only history ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE claim_transitions SET reason = 'rewritten'",
        "DELETE FROM claim_transitions",
        "UPDATE claim_evidence SET sha256 = 'x'",
        "DELETE FROM claim_evidence_requests",
    ],
)
def test_the_claim_history_is_insert_only_for_the_application(client, world, statement):
    claim_id = under_review(client, world)
    ok(
        client.post(
            f"/api/v1/claims/{claim_id}/request-evidence",
            json={"purchase_ids": [world["p"][0]], "kinds": ["invoice"]},
            headers=world["auditor"],
        )
    )
    ok(upload(client, claim_id, world["buyer"], world["p"][0], minimal_pdf()), 201)
    refused = pytest.raises(Exception, match=r"(?i)append-only|permission denied")
    with refused, db.session.begin_nested():
        db.session.execute(text(statement))
    assert db.session.scalar(select(func.count()).select_from(EvidenceDocument)) == 1


# --- the claim package ------------------------------------------------------------------------


def _verified(client, headers, claim_id, tmp_path):
    from market.verify import verify_manifest

    manifest = ok(client.get(f"/api/v1/claims/{claim_id}/manifest.json", headers=headers))
    key = ok(client.get("/api/v1/ledger/public-key"))["pem"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "key.pem").write_text(key, encoding="utf-8")
    report = verify_manifest(tmp_path / "manifest.json", tmp_path / "key.pem")
    assert report.ok, report.checks
    return manifest


def test_the_claim_package_verifies_offline_for_both_claims(client, world, tmp_path):
    from openpyxl import load_workbook

    draft = ok(client.post("/api/v1/claims", json={"year": Y}, headers=world["buyer"]), 201)
    url = f"/api/v1/claims/{draft['id']}"
    assert client.get(f"{url}/manifest.json", headers=world["auditor"]).status_code == 409
    ok(client.post(f"{url}/submit", json={}, headers=world["buyer"]))
    ok(client.post(f"{url}/review", json={}, headers=world["auditor"]))
    body = {"decision": "reject", "reason": "材料不全"}
    ok(client.post(f"{url}/decide", json=body, headers=world["auditor"]))
    manifest = _verified(client, world["auditor"], draft["id"], tmp_path)
    assert manifest["figures"]["approved_amount"] == "0.00"
    assert len(manifest["entries"]) == 4  # the year's four entries, the far one included
    workbook = client.get(f"{url}/package.xlsx", headers=world["buyer"])
    assert workbook.status_code == 200
    assert workbook.headers["Content-Disposition"].startswith("attachment;")
    assert len(load_workbook(io.BytesIO(workbook.data)).sheetnames) == 3
    assert client.get(f"{url}/package.xlsx", headers=world["supplier"]).status_code == 403
    assert client.get(f"{url}/manifest.json", headers=world["elsewhere"]).status_code == 404
    # A late purchase, a supplementary claim: its manifest holds only the new entry.
    late = factories.make_purchase(
        world["oem"], world["plant"], world["near"], world["near_site"],
        amount="5000.00", purchased_on=date(Y, 11, 1),
    )  # fmt: skip
    ledger.sync_purchase(late.id)
    db.session.commit()
    sup = file_and_submit(client, world, kind="supplementary")
    manifest = _verified(client, world["admin"], sup["id"], tmp_path)
    assert [e["seq"] for e in manifest["entries"]] == [sup["checkpoint_size"]]


def test_a_suspended_oem_cannot_submit(client, world):
    from market.models import OrgStatus

    claim = ok(client.post("/api/v1/claims", json={"year": Y}, headers=world["buyer"]), 201)
    world["oem"].status = OrgStatus.SUSPENDED
    db.session.commit()
    url = f"/api/v1/claims/{claim['id']}"
    # Suspension ends its members' access (401); the use case refuses it too (403).
    assert client.post(f"{url}/submit", json={}, headers=world["buyer"]).status_code in (401, 403)
    assert db.session.get(Claim, claim["id"]).state is ClaimState.DRAFT
