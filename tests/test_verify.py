"""The offline verifier (``strongchain-verify``) on real exports, run as an auditor would.

Exports, checkpoints and the public key are fetched over the API into files; the verifier runs
in a subprocess (``python -I market/verify.py``: isolated, without the project on the path, as
a copied file would run). The attack of issue 13: an insider with the owner's password drops
the guards, changes a subsidy and recomputes every chain hash, the tree and a freshly signed
checkpoint; alone the new export verifies, and the checkpoint an auditor kept from before
catches it.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from market import ledger
from market import verify as verifier
from market.extensions import db
from market.ledger import checkpoints, merkle
from market.models import LedgerEntry, OrgKind, Role
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN
from tests.insider import as_insider

VERIFY_SCRIPT = Path(verifier.__file__)


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def auditor(db_session):
    return factories.auth(factories.make_user(role=Role.AUDITOR))


@pytest.fixture
def record(db_session):
    oem = factories.make_org(OrgKind.OEM, legal_name='=广州整车, "引号"\n第二行')
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300", legal_name="深圳零部件")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    count = 0

    def add(n: int) -> None:
        nonlocal count
        for _ in range(n):
            count += 1
            supplier, site = (far, far_site) if count % 3 == 0 else (near, near_site)
            purchase = factories.make_purchase(
                oem,
                plant,
                supplier,
                site,
                amount=f"{count * 1000}.05",
                purchased_on=date(2026, 1 + count % 6, 3),
            )
            ledger.sync_purchase(purchase.id)
        db.session.commit()

    return add


class Auditor:
    """Saves what an auditor downloads, and runs the verifier on it."""

    def __init__(self, client: Any, headers: dict[str, str], folder: Path) -> None:
        self.client, self.headers, self.folder = client, headers, folder

    def save(self, name: str, path: str) -> Path:
        response = self.client.get(path, headers=self.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        target = self.folder / name
        target.write_bytes(response.get_data())
        return target

    def run(self, *args: str | Path) -> tuple[int, dict[str, Any]]:
        completed = subprocess.run(
            [sys.executable, "-I", str(VERIFY_SCRIPT), "--json", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if completed.returncode == 2:
            return 2, {"error": completed.stderr}
        return completed.returncode, json.loads(completed.stdout)


@pytest.fixture
def auditor_files(client, auditor, tmp_path) -> Auditor:
    return Auditor(client, auditor, tmp_path)


def failures(report: dict[str, Any]) -> dict[str, str]:
    return {check["check"]: check["detail"] for check in report["checks"] if not check["ok"]}


def test_the_verifier_computes_what_the_server_computes(client, auditor, record, tmp_path):
    record(9)
    csv_text = client.get("/api/v1/ledger?format=csv", headers=auditor).get_data(as_text=True)
    path = tmp_path / "ledger.csv"
    path.write_text(csv_text, encoding="utf-8")
    rows = list(verifier.read_export(path))
    entries = list(db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
    assert len(rows) == len(entries) == 9
    for row, entry in zip(rows, entries, strict=True):
        values = {name: getattr(entry, name) for name in ledger.ALL_HASHED_FIELDS}
        assert verifier.canonical_json(row.values) == ledger.canonical_json(values)
        assert verifier.chain_hash(entry.prev_hash, ledger.canonical_json(values)) == (
            entry.entry_hash
        )
    leaves = [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(37)]
    builder = verifier.RootBuilder()
    tree = merkle.MemoryTree(leaves)
    assert builder.root() == merkle.EMPTY_ROOT
    for size, leaf in enumerate(leaves, start=1):
        builder.add(leaf)
        assert builder.root() == tree.root(size)


def test_an_export_is_verified_against_its_checkpoints(auditor_files, record):
    record(5)
    checkpoints.issue_checkpoint()
    key = auditor_files.save("key.json", "/api/v1/ledger/public-key")
    older = auditor_files.save("older.json", "/api/v1/ledger/checkpoints/latest")
    record(4)
    checkpoints.issue_checkpoint()
    newer = auditor_files.save("newer.json", "/api/v1/ledger/checkpoints/latest")
    record(2)  # entries after the checkpoint: covered by the next one, not this one
    export = auditor_files.save("ledger.csv", "/api/v1/ledger?format=csv")
    pages = [  # the JSON export comes in pages: given in order, they are one ledger
        auditor_files.save(f"ledger-{page}.json", f"/api/v1/ledger?per_page=4&page={page}")
        for page in (1, 2, 3)
    ]
    pem = auditor_files.folder / "key.pem"
    pem.write_text(json.loads(key.read_text())["pem"])

    for ledger_files, key_file in (([export], key), (pages, pem)):
        exports = [arg for path in ledger_files for arg in ("--export", path)]
        status, report = auditor_files.run(
            *exports,
            "--checkpoint",
            newer,
            "--public-key",
            key_file,
            "--older-checkpoint",
            older,
        )
        assert status == 0, report
        details = {check["check"]: check["detail"] for check in report["checks"]}
        assert details["chain"] == "11 entries, every hash and link verifies"
        assert details["checkpoint root"].startswith(
            "the export's first 9 entries are exactly the checkpointed ledger; the 2 entries"
        )
        assert details["consistency"] == "the older checkpoint (size 5) is a prefix of the export"

    # The console script's human output, from the package module.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "market.verify",
            "--export",
            export,
            "--checkpoint",
            newer,
            "--public-key",
            pem,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0 and completed.stdout.endswith("VERIFIED\n")


def test_an_edited_missing_or_forged_file_names_what_is_wrong(auditor_files, record):
    record(6)
    checkpoints.issue_checkpoint()
    key = auditor_files.save("key.json", "/api/v1/ledger/public-key")
    checkpoint = auditor_files.save("checkpoint.json", "/api/v1/ledger/checkpoints/latest")
    export = auditor_files.save("ledger.csv", "/api/v1/ledger?format=csv")
    header, *rows = list(csv.reader(io.StringIO(export.read_text(encoding="utf-8-sig"))))
    amount = header.index("amount")

    def write(name: str, chosen: list[list[str]]) -> Path:
        target = auditor_files.folder / name
        with target.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([header, *chosen])
        return target

    rows[3][amount] = "1.00"  # seq 4's amount, its hashes left as they were
    edited = write("edited.csv", rows)
    # The OEM's name holds a line break: each row takes two lines, seq 4 starts on line 8.
    assert edited.read_text().splitlines()[7].startswith("4,2,record:")
    status, report = auditor_files.run(
        "--export", edited, "--checkpoint", checkpoint, "--public-key", key
    )
    assert status == 1
    assert failures(report)["chain"] == (
        "first bad row: line 8 (seq 4): entry_hash does not match the entry's content"
    )

    missing = write("missing.csv", [rows[0], *rows[2:]])
    status, report = auditor_files.run(
        "--export", missing, "--checkpoint", checkpoint, "--public-key", key
    )
    assert status == 1
    assert "(seq 3): expected seq 2" in failures(report)["chain"]
    assert "has 1 valid entries; the checkpoint covers 6" in failures(report)["checkpoint root"]

    forged = auditor_files.folder / "forged.json"
    forged.write_text(json.dumps({**json.loads(checkpoint.read_text()), "size": 5}))
    status, report = auditor_files.run(
        "--export", export, "--checkpoint", forged, "--public-key", key
    )
    assert status == 1 and "does not verify" in failures(report)["checkpoint signature"]

    other_key = auditor_files.folder / "other.b64"
    other_key.write_text("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    status, report = auditor_files.run(
        "--export", export, "--checkpoint", checkpoint, "--public-key", other_key
    )
    assert status == 1 and "does not verify" in failures(report)["checkpoint signature"]

    status, report = auditor_files.run(
        "--export",
        auditor_files.folder / "nope.csv",
        "--checkpoint",
        checkpoint,
        "--public-key",
        key,
    )
    assert status == 2 and "cannot be read" in report["error"]


def _rewrite_the_whole_chain(seq: int, new_subsidy: str) -> None:
    """The insider's consistent rewrite: one subsidy changed, every later hash recomputed, the
    Merkle tree rebuilt and the checkpoints replaced by one signed with the same key."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    with as_insider(db.session.connection()):
        stored = new_subsidy if postgres else str(int(float(new_subsidy) * 100))  # SQLite: fen
        db.session.execute(
            text("UPDATE ledger_entries SET subsidy = :s WHERE seq = :q"), {"s": stored, "q": seq}
        )
        db.session.expire_all()
        prev_hash = ledger.GENESIS_HASH
        for entry in db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)):
            values = {name: getattr(entry, name) for name in ledger.ALL_HASHED_FIELDS}
            entry_hash = ledger.chain_hash(prev_hash, values)
            db.session.execute(
                text("UPDATE ledger_entries SET prev_hash = :p, entry_hash = :h WHERE seq = :q"),
                {"p": prev_hash, "h": entry_hash, "q": entry.seq},
            )
            prev_hash = entry_hash
        db.session.execute(text("DELETE FROM ledger_tree_nodes"))
        db.session.execute(text("DELETE FROM ledger_checkpoints"))
    db.session.commit()
    db.session.expire_all()
    assert ledger.verify_chain().ok  # the server's own chain check sees nothing wrong


def test_a_consistent_rewrite_of_the_whole_chain_is_caught_by_an_older_checkpoint(
    auditor_files, record
):
    record(6)
    checkpoints.issue_checkpoint()
    key = auditor_files.save("key.json", "/api/v1/ledger/public-key")
    kept = auditor_files.save("kept.json", "/api/v1/ledger/checkpoints/latest")
    kept_export = auditor_files.save("kept.csv", "/api/v1/ledger?format=csv")
    record(3)

    _rewrite_the_whole_chain(seq=2, new_subsidy="999.00")
    checkpoints.issue_checkpoint()
    rewritten = auditor_files.save("rewritten.json", "/api/v1/ledger/checkpoints/latest")
    export = auditor_files.save("ledger.csv", "/api/v1/ledger?format=csv")
    assert '"999.00"' not in export.read_text() and ",999.00," in export.read_text()

    # Alone, the rewritten export and its fresh checkpoint agree.
    status, report = auditor_files.run(
        "--export", export, "--checkpoint", rewritten, "--public-key", key
    )
    assert status == 0, report
    # The checkpoint the auditor kept does not.
    status, report = auditor_files.run(
        "--export",
        export,
        "--checkpoint",
        rewritten,
        "--public-key",
        key,
        "--older-checkpoint",
        kept,
        "--older-export",
        kept_export,
    )
    assert status == 1
    found = failures(report)
    assert found["consistency"].startswith(
        "the export's first 6 entries do not have the older checkpoint's root: "
        "the ledger was rewritten among entries 1–6"
    )
    assert found["first rewritten row"] == (
        "entry seq 2 differs from the export kept with the older checkpoint"
    )
    # The server cannot prove the kept checkpoint consistent with the new tree either.
    proof = checkpoints.consistency_proof(6, 9)
    assert not merkle.verify_consistency(
        6,
        9,
        bytes.fromhex(json.loads(kept.read_text())["root"]),
        bytes.fromhex(proof["new_root"]),
        [bytes.fromhex(h) for h in proof["proof"]],
    )
