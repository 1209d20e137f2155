"""Signed checkpoints of the ledger: the stored tree, issuance, proofs over the API, failures."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from sqlalchemy import select, text

from market import ledger
from market.extensions import db
from market.ledger import checkpoints, merkle
from market.models import LedgerEntry, LedgerTreeNode, OrgKind, Role
from tests import factories
from tests.factories import GUANGZHOU, SHENZHEN
from tests.insider import as_insider


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def auditor(db_session):
    return factories.auth(factories.make_user(role=Role.AUDITOR))


@pytest.fixture
def admin(db_session):
    return factories.auth(factories.make_user(role=Role.ADMIN))


@pytest.fixture
def record(db_session) -> Callable[[int], None]:
    """Record ``n`` more purchases in the ledger (one entry each)."""
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    supplier = factories.make_org(city_code="440300")
    site = factories.make_site(supplier, at=SHENZHEN)
    day = date(2026, 3, 1)

    def add(n: int) -> None:
        for i in range(n):
            purchase = factories.make_purchase(
                oem, plant, supplier, site, amount=f"{100 + i}.25", purchased_on=day
            )
            ledger.sync_purchase(purchase.id)
        db.session.commit()  # as the ledger worker does (a savepoint here)

    return add


@pytest.fixture
def signing_key(app: Flask, tmp_path: Path) -> Iterator[Path]:
    """A key file of this test's own, restored afterwards (tests may take it away)."""
    original = app.config["LEDGER_SIGNING_KEY"]
    path = tmp_path / "key.pem"
    app.config["LEDGER_SIGNING_KEY"] = str(path)
    with app.app_context():
        # The embedded default generates into instance/; here: the same generator, this path.
        checkpoints.generate_key_file(path)
    yield path
    app.config["LEDGER_SIGNING_KEY"] = original


def expected_tree() -> merkle.MemoryTree:
    """The tree recomputed from the entries' canonical JSON, ignoring what is stored."""
    columns = [getattr(LedgerEntry, name) for name in ledger.ALL_HASHED_FIELDS]
    rows = db.session.execute(select(*columns).order_by(LedgerEntry.seq))
    return merkle.MemoryTree(
        merkle.leaf_hash(ledger.canonical_json(row._asdict()).encode()) for row in rows
    )


def public_key() -> Ed25519PublicKey:
    pem = checkpoints.public_key_document()["pem"].encode()
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, Ed25519PublicKey)
    return key


def test_the_tree_grows_in_batches_to_exactly_the_reference_nodes(record, monkeypatch):
    # Small batches, so growth restarts at odd sizes and reads older left children.
    monkeypatch.setattr(checkpoints, "GROW_BATCH", 3)
    record(5)
    assert checkpoints.grow_tree() == 5
    record(14)
    assert checkpoints.grow_tree() == 19
    stored = {
        (row.level, row.position): bytes(row.hash)
        for row in db.session.scalars(select(LedgerTreeNode))
    }
    reference = expected_tree()
    assert stored == {
        (level, pos): value
        for level, nodes in enumerate(reference.levels)
        for pos, value in enumerate(nodes)
    }
    assert checkpoints.root_at(19) == reference.root(19)
    assert checkpoints.root_at(11) == reference.root(11)


def test_a_checkpoint_signs_the_root_of_the_whole_ledger(app, record, signing_key):
    record(6)
    first = checkpoints.issue_checkpoint()
    document = checkpoints.checkpoint_document(first)
    assert (document["size"], document["root"]) == (6, expected_tree().root(6).hex())
    assert checkpoints.signature_valid(document, public_key())
    forged = {**document, "size": 5}
    assert not checkpoints.signature_valid(forged, public_key())
    # The signed bytes are the canonical JSON of origin, root, size and time.
    message = checkpoints.signed_message(6, document["root"], document["time"])
    assert message == (
        b'{"origin":"strongchain-exchange/ledger/v1","root":"'
        + document["root"].encode()
        + b'","size":6,"time":"'
        + document["time"].encode()
        + b'"}'
    )
    public_key().verify(base64.b64decode(document["signature"]), message)
    # Nothing new: the same checkpoint. More entries: a new one, consistent with the first.
    assert checkpoints.issue_checkpoint().id == first.id
    record(5)
    second = checkpoints.issue_checkpoint()
    assert second.size == 11
    proof = checkpoints.consistency_proof(6, 11)
    assert merkle.verify_consistency(
        6,
        11,
        bytes.fromhex(first.root_hash),
        bytes.fromhex(second.root_hash),
        [bytes.fromhex(h) for h in proof["proof"]],
    )
    for seq in range(1, 12):
        inclusion = checkpoints.inclusion_proof(seq, 11)
        assert merkle.verify_inclusion(
            seq - 1,
            11,
            bytes.fromhex(inclusion["leaf_hash"]),
            [bytes.fromhex(h) for h in inclusion["proof"]],
            bytes.fromhex(second.root_hash),
        )


def test_the_api_serves_checkpoints_and_proofs(client, auditor, admin, record, signing_key):
    record(4)
    assert client.get("/api/v1/ledger/checkpoints/latest", headers=auditor).status_code == 404
    issued = client.post("/api/v1/ledger/checkpoints", headers=admin)
    assert issued.status_code == 201, issued.get_json()
    record(3)
    checkpoints.issue_checkpoint()

    key = client.get("/api/v1/ledger/public-key").get_json()  # anyone may fetch it
    assert key["algorithm"] == "Ed25519" and key["pem"].startswith("-----BEGIN PUBLIC KEY")
    assert len(base64.b64decode(key["public_key"])) == 32
    listed = client.get("/api/v1/ledger/checkpoints", headers=auditor).get_json()
    assert [c["size"] for c in listed["items"]] == [7, 4]
    latest = client.get("/api/v1/ledger/checkpoints/latest", headers=auditor).get_json()
    assert latest == listed["items"][0] and latest["key_id"] == key["key_id"]
    assert (
        client.get("/api/v1/ledger/checkpoints/4", headers=auditor).get_json()
        == (listed["items"][1])
    )
    status = client.get("/api/v1/ledger/checkpoints/status", headers=auditor).get_json()
    assert (status["ledger_size"], status["uncovered_entries"], status["failures"]) == (7, 0, [])

    inclusion = client.get(
        "/api/v1/ledger/proofs/inclusion?seq=3&size=7", headers=auditor
    ).get_json()
    assert inclusion["checkpoint"] == latest and inclusion["root"] == latest["root"]
    assert merkle.verify_inclusion(
        2,
        7,
        bytes.fromhex(inclusion["leaf_hash"]),
        [bytes.fromhex(h) for h in inclusion["proof"]],
        bytes.fromhex(latest["root"]),
    )
    consistency = client.get(
        "/api/v1/ledger/proofs/consistency?old_size=4&new_size=7", headers=auditor
    ).get_json()
    assert consistency["old_checkpoint"]["root"] == consistency["old_root"]
    assert merkle.verify_consistency(
        4,
        7,
        bytes.fromhex(consistency["old_root"]),
        bytes.fromhex(consistency["new_root"]),
        [bytes.fromhex(h) for h in consistency["proof"]],
    )


BAD_PROOF_QUERIES = [
    ("inclusion?seq=1&size=8", "size", "Beyond the tree: 7 entries"),
    ("inclusion?seq=8&size=7", "seq", "between 1 and size (7)"),
    ("inclusion?seq=0&size=7", "seq", "between 1 and"),
    ("inclusion?seq=-1&size=7", "seq", "between 1 and"),
    ("inclusion?seq=1&size=-5", "size", "between 1 and"),
    ("inclusion?seq=1&size=99999999999999999999999", "size", "between 1 and"),
    ("inclusion?seq=1&size=1e3", "size", "Not a valid integer"),
    ("inclusion?seq=1", "size", "Missing data"),
    ("inclusion?seq=1&size=7&admin=1", "admin", "Unknown field"),
    ("consistency?old_size=5&new_size=4", "old_size", "between 1 and new_size (4)"),
    ("consistency?old_size=1&new_size=70000", "new_size", "Beyond the tree"),
    ("consistency?old_size=0&new_size=7", "old_size", "between 1 and"),
    ("consistency?old_size=1&new_size=281474976710657", "new_size", "between 1 and"),
]


@pytest.mark.parametrize(("query", "field", "message"), BAD_PROOF_QUERIES)
def test_proofs_of_what_the_tree_does_not_have_are_refused(
    client, auditor, record, signing_key, query, field, message
):
    record(7)
    checkpoints.issue_checkpoint()
    response = client.get(f"/api/v1/ledger/proofs/{query}", headers=auditor)
    assert response.status_code == 422
    body = response.get_json()
    errors = body["error"]["fields"]
    assert message in " ".join(errors[field]), errors
    for unknown in ("/api/v1/ledger/checkpoints/3", "/api/v1/ledger/checkpoints/99999999999999"):
        assert client.get(unknown, headers=auditor).status_code == 404


def test_a_broken_chain_is_never_certified_and_the_failure_is_listed(
    client, auditor, record, signing_key
):
    record(4)
    checkpoints.issue_checkpoint()
    record(3)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    with as_insider(db.session.connection()):
        db.session.execute(
            text(f"UPDATE ledger_entries SET amount = {'1' if postgres else '100'} WHERE seq = 6")
        )
        db.session.commit()
    with pytest.raises(checkpoints.BrokenLedger, match="entry 6 does not verify"):
        checkpoints.issue_checkpoint()
    status = client.get("/api/v1/ledger/checkpoints/status", headers=auditor).get_json()
    assert status["latest"]["size"] == 4 and status["uncovered_entries"] == 3
    assert [f["reason"] for f in status["failures"]] == [
        "entry 6 does not verify against the chain"
    ]
    assert status["tree_size"] == 4  # the batch with the bad entry was not stored


def test_without_the_key_entries_are_recorded_and_checkpoints_resume_when_it_is_back(
    app, client, auditor, admin, record, signing_key, caplog
):
    """Fault: the signing key unavailable. The ledger goes on; issuance fails visibly
    (logged, listed, 503 for an admin asking), and the next issuance covers everything."""
    record(3)
    first = checkpoints.issue_checkpoint()
    hidden = signing_key.with_suffix(".away")
    signing_key.rename(hidden)
    record(4)  # entries are still recorded without the key
    assert checkpoints.ledger_size() == 7
    with pytest.raises(checkpoints.SigningKeyUnavailable, match="cannot be read"):
        checkpoints.issue_checkpoint_job()
    assert any(
        r.levelname == "ERROR" and r.getMessage() == "ledger checkpoint not issued"
        for r in caplog.records
    )
    answer = client.post("/api/v1/ledger/checkpoints", headers=admin)
    assert answer.status_code == 503
    assert "signing key is unavailable" in answer.get_json()["error"]["message"]
    assert client.get("/api/v1/ledger/public-key").status_code == 503
    status = client.get("/api/v1/ledger/checkpoints/status", headers=auditor).get_json()
    assert status["uncovered_entries"] == 4 and len(status["failures"]) == 2
    assert {f["ledger_size"] for f in status["failures"]} == {7}

    hidden.rename(signing_key)
    record(1)
    report = checkpoints.issue_checkpoint_job()
    assert report["issued"] and report["size"] == 8
    latest = checkpoints.latest_checkpoint()
    assert latest is not None and latest.root_hash == expected_tree().root(8).hex()
    proof = checkpoints.consistency_proof(first.size, 8)
    assert merkle.verify_consistency(
        3,
        8,
        bytes.fromhex(first.root_hash),
        bytes.fromhex(latest.root_hash),
        [bytes.fromhex(h) for h in proof["proof"]],
    )
    status = client.get("/api/v1/ledger/checkpoints/status", headers=auditor).get_json()
    assert (status["uncovered_entries"], status["failures"]) == (0, [])


def test_production_never_makes_up_a_key(app):
    original = dict(app.config)
    app.config.update(NAME="production", LEDGER_SIGNING_KEY=None)
    try:
        with app.app_context(), pytest.raises(checkpoints.SigningKeyUnavailable, match="not set"):
            checkpoints.signing_key()
    finally:
        app.config.update(original)


def test_a_key_given_as_pem_text_or_of_another_kind(app, signing_key):
    pem = signing_key.read_text()
    original = app.config["LEDGER_SIGNING_KEY"]
    try:
        app.config["LEDGER_SIGNING_KEY"] = pem
        with app.app_context():
            assert checkpoints.public_key_document()["key_id"]
        app.config["LEDGER_SIGNING_KEY"] = "-----BEGIN PRIVATE KEY-----\nnot a key\n"
        with app.app_context(), pytest.raises(checkpoints.SigningKeyUnavailable, match="PEM"):
            checkpoints.signing_key()
    finally:
        app.config["LEDGER_SIGNING_KEY"] = original
