"""The claim package (market/ledger/package.py) on a real ledger, and the offline verifier's
manifest mode on it: the workbook opened with openpyxl, the manifest checked by
``strongchain-verify manifest`` (its ``main``, on files) as it is and tampered with."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openpyxl import load_workbook
from sqlalchemy import select

from market import ledger
from market import verify as verifier
from market.extensions import db
from market.ledger import checkpoints, merkle, sheets
from market.ledger.chain import MONEY_FIELDS
from market.ledger.package import (
    MANIFEST_FORMAT,
    ClaimPackageFacts,
    EvidenceInfo,
    PackageError,
    claim_manifest,
    claim_workbook,
)
from market.models import LedgerEntry, OrgKind, PurchaseStatus, Role
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
OEM_NAME = '=HYPERLINK("http://evil.example","整车")'
EVIL_FILE = "=cmd|' /C calc'!A0.pdf"


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def signing_key(app: Flask, tmp_path: Path) -> Iterator[Path]:
    original = app.config["LEDGER_SIGNING_KEY"]
    path = tmp_path / "key.pem"
    app.config["LEDGER_SIGNING_KEY"] = str(path)
    with app.app_context():
        checkpoints.generate_key_file(path)
    yield path
    app.config["LEDGER_SIGNING_KEY"] = original


@pytest.fixture
def claim(db_session, signing_key, tmp_path) -> dict[str, Any]:
    """OEM A's 2026 in the ledger (near, far, cancelled; another OEM's entries in between),
    a signed checkpoint, and the facts of a claim on it."""
    oem = factories.make_org(OrgKind.OEM, legal_name=OEM_NAME)
    other = factories.make_org(OrgKind.OEM)
    plant, other_plant = factories.make_site(oem, at=GUANGZHOU), factories.make_site(other)
    near = factories.make_org(city_code="440300", legal_name="+深圳零部件")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    rows = [
        (oem, plant, near, near_site, "300.00", "2025-06-01", "INV-1"),
        (oem, plant, near, near_site, "200.00", "2026-01-05", "@SUM(A1)"),
        (other, other_plant, near, near_site, "777.77", "2026-01-06", "INV-2"),
        (oem, plant, near, near_site, "250.55", "2026-02-05", "INV-3"),
        (oem, plant, far, far_site, "999.99", "2026-03-05", "INV-4"),
        (oem, plant, near, near_site, "12345.65", "2026-04-05", "-INV-5"),
    ]
    purchases = [
        factories.make_purchase(
            o, p, s, site, amount=a, purchased_on=date.fromisoformat(on), invoice_number=inv
        )
        for o, p, s, site, a, on, inv in rows
    ]
    for purchase in purchases:
        ledger.sync_purchase(purchase.id)
    purchases[3].status = PurchaseStatus.CANCELLED
    db.session.flush()
    ledger.sync_purchase(purchases[3].id)
    db.session.commit()
    checkpoint = checkpoints.issue_checkpoint()
    seqs = list(
        db.session.scalars(
            select(LedgerEntry.seq)
            .where(LedgerEntry.oem_org_id == oem.id, LedgerEntry.year == 2026)
            .order_by(LedgerEntry.seq)
        )
    )
    position = ledger.oem_position(oem.id, 2026)
    facts = ClaimPackageFacts(
        claim_id=41,
        oem_id=oem.id,
        oem_name=OEM_NAME,
        year=2026,
        state="partially_approved",
        kind="original",
        figures={
            "near_shore_total": position["near_shore_total"],
            "baseline": position["baseline"],
            "increment": position["increment"],
            "subsidy": position["subsidy"],
            "held": position["held"],
            "cap": position["annual_cap"],
            "approved_amount": D("120.00"),
        },
        checkpoint_size=checkpoint.size,
        entry_seqs=seqs,
        decisions={
            purchases[1].id: ("approved", None),
            purchases[5].id: ("rejected", "=发票与送货单不符"),
        },
        evidence=[
            EvidenceInfo(
                purchase_id=purchases[5].id,
                kind="invoice",
                filename=EVIL_FILE,
                content_type="application/pdf",
                size=7,
                sha256=hashlib.sha256(b"%PDF-1.").hexdigest(),
                uploaded_at=datetime(2027, 1, 10, 8, 30, tzinfo=UTC),
            )
        ],
    )
    key_file = tmp_path / "public.pem"
    key_file.write_text(checkpoints.public_key_document()["pem"])
    return {"facts": facts, "purchases": purchases, "key": key_file, "seqs": seqs}


def _rows(sheet) -> list[list[Any]]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_the_workbook_has_three_sheets_with_exact_numbers_and_no_formula(client, claim, db_session):
    facts: ClaimPackageFacts = claim["facts"]
    raw = claim_workbook(facts)
    workbook = load_workbook(io.BytesIO(raw))
    assert workbook.sheetnames == ["汇总", "台账明细", "证据索引"]
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.b for cell in sheet[1])
        for row in sheet.iter_rows():
            assert all(cell.data_type != "f" for cell in row)
    # No formula anywhere in the file, whatever the user typed.
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name) and b"<f " not in archive.read(name)

    summary = {row[0].value: row[1] for row in workbook["汇总"].iter_rows(min_row=2)}
    assert summary["申报编号"].value == 41 and summary["申报年度"].value == 2026
    name = summary["整车企业名称"]
    assert (name.value, name.data_type, name.quotePrefix) == (OEM_NAME, "s", True)
    for label, figure in (("增量 I*（元）", "increment"), ("补贴 S*（元）", "subsidy")):
        assert summary[label].number_format == "#,##0.00"
        assert D(str(summary[label].value)) == facts.figures[figure]
    assert D(str(summary["核准金额（元）"].value)) == D("120.00")
    assert summary["是否暂缓"].value is False
    document = client.get(
        "/api/v1/ledger/checkpoints/latest",
        headers=factories.auth(factories.make_user(role=Role.AUDITOR)),
    ).get_json()
    assert summary["检查点根哈希"].value == document["root"]
    assert summary["检查点条目数"].value == facts.checkpoint_size
    assert summary["检查点时间（UTC）"].value == document["time"]

    entries = workbook["台账明细"]
    header = [cell.value for cell in entries[1]]
    assert header == [sheets.LEDGER_HEADERS[c] for c in ledger.COLUMNS] + ["审核结论", "理由"]
    auditor = factories.auth(factories.make_user(role=Role.AUDITOR))
    served = {
        item["seq"]: item
        for item in client.get("/api/v1/ledger?per_page=100", headers=auditor).get_json()["items"]
    }
    rows = list(entries.iter_rows(min_row=2))
    assert [row[0].value for row in rows] == claim["seqs"]
    column = {name: i for i, name in enumerate(ledger.COLUMNS)}
    for row in rows:
        expected = served[row[0].value]
        for money_field in MONEY_FIELDS:
            cell = row[column[money_field]]
            if expected[money_field] is None:
                assert cell.value is None
                continue
            assert cell.data_type == "n" and cell.number_format == "#,##0.00"
            assert D(str(cell.value)) == D(expected[money_field])  # to the cent
        assert row[column["distance_km"]].number_format == "0.000"
        assert row[column["entry_hash"]].value == expected["entry_hash"]
        assert row[column["recorded_at"]].value.startswith(expected["recorded_at"][:19])
    by_invoice = {row[column["invoice_number"]].value: row for row in rows}
    dangerous = by_invoice["@SUM(A1)"][column["invoice_number"]]
    assert dangerous.data_type == "s" and dangerous.quotePrefix
    assert [c.value for c in by_invoice["@SUM(A1)"][-2:]] == ["通过", None]
    assert [c.value for c in by_invoice["-INV-5"][-2:]] == ["驳回", "=发票与送货单不符"]
    assert by_invoice["-INV-5"][-1].data_type == "s"
    reversal = next(row for row in rows if row[column["kind"]].value == "reversal")
    assert D(str(reversal[column["amount"]].value)) == D("-250.55")

    evidence = _rows(workbook["证据索引"])
    assert evidence[0] == ["采购编号", "证据类型", "文件名", "文件类型", "大小（字节）",
                           "SHA-256", "上传时间（UTC）"]  # fmt: skip
    assert evidence[1][2] == EVIL_FILE and workbook["证据索引"]["C2"].data_type == "s"
    assert evidence[1][5] == facts.evidence[0].sha256
    assert evidence[1][6] == "2027-01-10T08:30:00.000000+00:00"


def _manifest_file(folder: Path, manifest: dict[str, Any], name: str = "manifest.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _verify(capsys, *args: Any) -> tuple[int, dict[str, Any]]:
    status = verifier.main(["manifest", *map(str, args), "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out) if out else {}


def _failures(report: dict[str, Any]) -> dict[str, str]:
    return {check["check"]: check["detail"] for check in report["checks"] if not check["ok"]}


def test_the_manifest_carries_the_served_checkpoint_and_proofs_and_verifies_offline(
    client, claim, tmp_path, capsys
):
    facts: ClaimPackageFacts = claim["facts"]
    manifest = claim_manifest(facts)
    assert manifest["format"] == MANIFEST_FORMAT
    auditor = factories.auth(factories.make_user(role=Role.AUDITOR))
    served = client.get("/api/v1/ledger/checkpoints/latest", headers=auditor).get_json()
    assert manifest["checkpoint"] == served
    assert manifest["claim"]["oem_name"] == OEM_NAME
    assert manifest["figures"]["increment"] == str(facts.figures["increment"])
    assert (
        manifest["figures"]["held"] is False and manifest["figures"]["approved_amount"] == "120.00"
    )
    assert [e["seq"] for e in manifest["entries"]] == claim["seqs"]
    for entry in manifest["entries"]:
        proof = client.get(
            f"/api/v1/ledger/proofs/inclusion?seq={entry['seq']}&size={served['size']}",
            headers=auditor,
        ).get_json()
        assert entry["inclusion_proof"] == proof["proof"]
        assert entry["leaf_hash"] == proof["leaf_hash"]
        assert entry["leaf_index"] == entry["seq"] - 1
    decisions = {e["seq"]: e["decision"] for e in manifest["entries"]}
    assert {"decision": "rejected", "reason": "=发票与送货单不符"} in decisions.values()
    assert manifest["entry_totals"]["entries"] == len(claim["seqs"])

    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "invoice.pdf").write_bytes(b"%PDF-1.")
    status, report = _verify(capsys, _manifest_file(tmp_path, manifest), "--public-key",
                             claim["key"], "--evidence", evidence)  # fmt: skip
    assert status == 0, report
    details = {check["check"]: check["detail"] for check in report["checks"]}
    assert details["entries"].startswith(f"{len(claim['seqs'])} entries: each canonical")
    assert details["figures"].startswith("the entries run without a gap from I* 0.00")
    assert details["evidence"] == "1 files of the index found by their SHA-256"
    # The human output, as the console script prints it.
    assert verifier.main(["manifest", str(tmp_path / "manifest.json"), "--public-key",
                          str(claim["key"])]) == 0  # fmt: skip
    assert capsys.readouterr().out.endswith("VERIFIED\n")


def _entry(manifest: dict[str, Any], position: int) -> dict[str, Any]:
    return manifest["entries"][position]


def _set_amount(manifest: dict[str, Any], *, rehash: bool) -> None:
    entry = _entry(manifest, 1)
    document = json.loads(entry["canonical_json"])
    document["amount"] = "9999.00"
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["canonical_json"] = text
    if rehash:  # the leaf and chain hashes recomputed too: only the proof can tell
        entry["leaf_hash"] = merkle.leaf_hash(text.encode()).hex()
        entry["entry_hash"] = verifier.chain_hash(entry["prev_hash"], text)


def _flip_proof_node(manifest: dict[str, Any]) -> None:
    proof = _entry(manifest, 2)["inclusion_proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]


def _other_root(manifest: dict[str, Any]) -> None:
    manifest["checkpoint"]["root"] = "ab" * 32


def _drop_middle_entry(manifest: dict[str, Any]) -> None:
    del manifest["entries"][1]  # 250.55 near-shore: I* moved by it


def _inflate_subsidy(manifest: dict[str, Any]) -> None:
    manifest["figures"]["subsidy"] = "99999.00"


def _misstate_totals(manifest: dict[str, Any]) -> None:
    manifest["entry_totals"]["increment"] = "1.00"


@pytest.mark.parametrize(
    ("tamper", "check", "message"),
    [
        (
            lambda m: _set_amount(m, rehash=False),
            "entries",
            "first bad entry: seq {seq1} (entry 2 of the manifest): leaf_hash is not "
            "SHA-256(0x00 ‖ canonical_json)",
        ),
        (
            lambda m: _set_amount(m, rehash=True),
            "entries",
            "first bad entry: seq {seq1} (entry 2 of the manifest): the inclusion proof does "
            "not lead to the root of checkpoint {size}",
        ),
        (
            _flip_proof_node,
            "entries",
            "first bad entry: seq {seq2} (entry 3 of the manifest): the inclusion proof does "
            "not lead to the root of checkpoint {size}",
        ),
        (_other_root, "checkpoint signature", "does not verify"),
        (_drop_middle_entry, "figures", "seq {seq2}: increment_total − increment is not"),
        (_inflate_subsidy, "figures", "subsidy is 99999.00, but the claim's last entry"),
        (_misstate_totals, "entry totals", "increment: the entries sum to"),
    ],
)
def test_a_tampered_manifest_fails_naming_what(claim, tmp_path, capsys, tamper, check, message):
    manifest = claim_manifest(claim["facts"])
    tampered = copy.deepcopy(manifest)
    tamper(tampered)
    status, report = _verify(
        capsys, _manifest_file(tmp_path, tampered), "--public-key", claim["key"]
    )
    assert status == 1
    seqs = claim["seqs"]
    expected = message.format(
        seq1=seqs[1], seq2=seqs[2], seq3=seqs[3], size=manifest["checkpoint"]["size"]
    )
    assert expected in _failures(report)[check], report


def test_the_figures_arithmetic_names_a_changed_increment(claim, tmp_path, capsys):
    """An entry's increment changed and every hash recomputed: the proof fails first; the
    figures check would have caught it too (the running totals no longer add up)."""
    manifest = claim_manifest(claim["facts"])
    documents = [
        verifier.canonical_document(json.loads(e["canonical_json"])) for e in manifest["entries"]
    ]
    documents[1]["increment"] = str(D(documents[1]["increment"]) + D("1.00"))
    report = verifier.Report()
    verifier._check_figures(manifest, documents, report)
    assert not report.ok
    assert f"seq {claim['seqs'][1]}: increment_total − increment" in report.checks[0]["detail"]


def test_another_key_or_a_broken_file_is_named(claim, tmp_path, capsys):
    manifest = claim_manifest(claim["facts"])
    path = _manifest_file(tmp_path, manifest)
    other = tmp_path / "other.b64"
    other.write_text("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    status, report = _verify(capsys, path, "--public-key", other)
    assert status == 1
    found = _failures(report)
    assert found["checkpoint key"].startswith(
        f"the checkpoint names key {manifest['checkpoint']['key_id']}; the public key given is"
    )
    assert "does not verify" in found["checkpoint signature"]

    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "invoice.pdf").write_bytes(b"%PDF-2.")
    status, report = _verify(capsys, path, "--public-key", claim["key"], "--evidence", evidence)
    assert status == 1
    assert (
        _failures(report)["evidence"]
        == f"{EVIL_FILE!r}: no file in {evidence} has its SHA-256 and size"
    )

    not_a_manifest = tmp_path / "ledger.json"
    not_a_manifest.write_text(json.dumps({"items": []}))
    assert verifier.main(["manifest", str(not_a_manifest), "--public-key", str(claim["key"])]) == 2
    assert "not a strongchain-claim-manifest/1 manifest" in capsys.readouterr().err


def test_facts_beyond_the_checkpoint_are_refused(claim):
    facts: ClaimPackageFacts = claim["facts"]
    beyond = ClaimPackageFacts(**{**facts.__dict__, "entry_seqs": [facts.checkpoint_size + 1]})
    with pytest.raises(PackageError, match="not covered by checkpoint"):
        claim_manifest(beyond)
    unsigned = ClaimPackageFacts(**{**facts.__dict__, "checkpoint_size": 2})
    with pytest.raises(PackageError, match="no signed checkpoint of size 2"):
        claim_workbook(unsigned)


def test_manifest_proofs_are_read_in_batches(claim, monkeypatch):
    """Proofs come from the stored nodes, a batch at a time, never the whole tree."""
    reads: list[int] = []
    stored_nodes: Callable[..., Any] = checkpoints._stored_nodes

    def counting(wanted):
        reads.append(len(wanted))
        return stored_nodes(wanted)

    monkeypatch.setattr(checkpoints, "_stored_nodes", counting)
    monkeypatch.setattr(
        checkpoints, "inclusion_paths", lambda idx, size: original_paths(idx, size, batch=2)
    )
    manifest = claim_manifest(claim["facts"])
    assert len(reads) == -(-len(claim["seqs"]) // 2)
    assert all(n < manifest["checkpoint"]["size"] * 2 for n in reads)


original_paths = checkpoints.inclusion_paths
