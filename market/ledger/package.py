"""The claim package: the auditors' workbook (XLSX) and the JSON manifest of a claim.

A claim is filed against a signed checkpoint. The package lets an auditor check it without
trusting the platform: the workbook is for reading (summary, entries, evidence index); the
manifest carries the checkpoint exactly as ``GET /ledger/checkpoints/…`` serves it and, per
entry, the canonical JSON the server hashed, its leaf hash and its RFC 9162 inclusion proof,
which ``strongchain-verify manifest`` checks offline (MERGE-NOTES / README: the format).

Claims are the claims service's; this module only reads the ledger and the stored tree. It is
told the claim's facts (:class:`ClaimPackageFacts`) and never imports the claims models.
Proofs come from the stored tree nodes in batches (:func:`checkpoints.inclusion_paths`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from market.ledger import checkpoints, merkle, sheets
from market.ledger.chain import canonical_json
from market.ledger.reports import COLUMNS, entries_by_seq
from market.ledger.rules import ZERO, money

MANIFEST_FORMAT = "strongchain-claim-manifest/1"
# The figures a claim snapshots, in the order the summary sheet shows them.
FIGURE_LABELS = {
    "near_shore_total": "近岸采购总额 T（元）",
    "baseline": "基数 B（元）",
    "increment": "增量 I*（元）",
    "subsidy": "补贴 S*（元）",
    "held": "是否暂缓",
    "cap": "年度上限（元）",
    "approved_amount": "核准金额（元）",
}
DECISION_LABELS = {"approved": "通过", "rejected": "驳回", "pending": "待审"}


class PackageError(ValueError):
    """The facts name a checkpoint or entries the ledger does not have."""


@dataclass(frozen=True)
class EvidenceInfo:
    purchase_id: int
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime


@dataclass(frozen=True)
class ClaimPackageFacts:
    claim_id: int
    oem_id: int
    oem_name: str
    year: int
    state: str
    kind: str
    # near_shore_total, baseline, increment, subsidy, held, cap, approved_amount
    # (Decimal / bool / None): the whole (OEM, year) position the claim snapshots.
    figures: Mapping[str, Any]
    # The signed checkpoint the claim refers to.
    checkpoint_size: int
    # The ledger entries of the claim, by seq.
    entry_seqs: Sequence[int]
    # purchase id -> (approved | rejected | pending, reason)
    decisions: Mapping[int, tuple[str, str | None]]
    evidence: Sequence[EvidenceInfo]


@dataclass(frozen=True)
class _Loaded:
    checkpoint: dict[str, Any]
    entries: list[dict[str, Any]]  # entry_values, in ledger order


def _load(facts: ClaimPackageFacts) -> _Loaded:
    stored = checkpoints.checkpoint_at(facts.checkpoint_size)
    if stored is None:
        raise PackageError(f"no signed checkpoint of size {facts.checkpoint_size}")
    beyond = [seq for seq in facts.entry_seqs if not 1 <= seq <= facts.checkpoint_size]
    if beyond:
        raise PackageError(f"entry {beyond[0]} is not covered by checkpoint {stored.size}")
    entries = entries_by_seq(facts.entry_seqs)
    if len(entries) != len(set(facts.entry_seqs)):
        found = {entry["seq"] for entry in entries}
        missing = sorted(set(facts.entry_seqs) - found)
        raise PackageError(f"entry {missing[0]} is not in the ledger")
    return _Loaded(checkpoints.checkpoint_document(stored), entries)


def _figure(value: Any) -> Any:
    """A figure as JSON: money as an exact string, booleans and null as they are."""
    if isinstance(value, Decimal):
        return str(money(value))
    return value


def _decision(facts: ClaimPackageFacts, purchase_id: int | None) -> dict[str, Any] | None:
    if purchase_id is None or purchase_id not in facts.decisions:
        return None
    state, reason = facts.decisions[purchase_id]
    return {"decision": state, "reason": reason}


def _iso(moment: datetime) -> str:
    return (moment.astimezone(UTC) if moment.tzinfo else moment).isoformat(timespec="microseconds")


def _entry_totals(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def total(name: str, near_only: bool = False) -> str:
        chosen = (e[name] for e in entries if e["near_shore"] or not near_only)
        return str(money(sum(chosen, ZERO)))

    return {
        "entries": len(entries),
        "amount": total("amount"),
        "near_shore_amount": total("amount", near_only=True),
        "increment": total("increment"),
        "subsidy": total("subsidy"),
    }


def _manifest_entries(facts: ClaimPackageFacts, loaded: _Loaded) -> list[dict[str, Any]]:
    """Each entry with its canonical JSON, leaf hash and inclusion proof, each proof checked
    against the checkpoint's root before it is handed out."""
    size = loaded.checkpoint["size"]
    root = bytes.fromhex(loaded.checkpoint["root"])
    paths = checkpoints.inclusion_paths([entry["seq"] - 1 for entry in loaded.entries], size)
    documents = []
    for entry, path in zip(loaded.entries, paths, strict=True):
        canonical = canonical_json(entry)
        leaf = merkle.leaf_hash(canonical.encode("utf-8"))
        # chain_hash() without canonicalising again: SHA-256(prev_hash ‖ canonical JSON).
        linked = hashlib.sha256((entry["prev_hash"] + canonical).encode("utf-8")).hexdigest()
        if linked != entry["entry_hash"] or not (
            merkle.verify_inclusion(entry["seq"] - 1, size, leaf, path, root)
        ):
            raise checkpoints.BrokenLedger(f"entry {entry['seq']} does not verify")
        documents.append(
            {
                "seq": entry["seq"],
                "leaf_index": entry["seq"] - 1,
                "canonical_json": canonical,
                "leaf_hash": leaf.hex(),
                "prev_hash": entry["prev_hash"],
                "entry_hash": entry["entry_hash"],
                "inclusion_proof": [node.hex() for node in path],
                "decision": _decision(facts, entry["purchase_id"]),
            }
        )
    return documents


def claim_manifest(facts: ClaimPackageFacts) -> dict[str, Any]:
    """The claim's JSON manifest: the signed checkpoint, every entry's canonical JSON with its
    leaf hash and inclusion proof, the figures as strings, the evidence index."""
    loaded = _load(facts)
    return {
        "format": MANIFEST_FORMAT,
        "generated_at": _iso(datetime.now(UTC)),
        "claim": {
            "id": facts.claim_id,
            "oem_id": facts.oem_id,
            "oem_name": facts.oem_name,
            "year": facts.year,
            "state": facts.state,
            "kind": facts.kind,
        },
        "figures": {name: _figure(value) for name, value in facts.figures.items()},
        "checkpoint": loaded.checkpoint,
        "entry_totals": _entry_totals(loaded.entries),
        "entries": _manifest_entries(facts, loaded),
        "evidence": [
            {
                "purchase_id": item.purchase_id,
                "kind": item.kind,
                "filename": item.filename,
                "content_type": item.content_type,
                "size": item.size,
                "sha256": item.sha256,
                "uploaded_at": _iso(item.uploaded_at),
            }
            for item in facts.evidence
        ],
    }


# --- the workbook -----------------------------------------------------------------------------


def _figure_kind(value: Any) -> str:
    if isinstance(value, bool):
        return sheets.BOOLEAN
    if isinstance(value, Decimal):
        return sheets.MONEY
    return sheets.INTEGER if isinstance(value, int) else sheets.TEXT


def _summary_sheet(workbook: Any, facts: ClaimPackageFacts, loaded: _Loaded) -> None:
    sheet = sheets.Sheet(
        workbook, "汇总", [("项目", sheets.TEXT), ("内容", sheets.TEXT)], widths={1: 26, 2: 90}
    )
    checkpoint = loaded.checkpoint
    rows: list[tuple[str, Any, str]] = [
        ("申报编号", facts.claim_id, sheets.INTEGER),
        ("整车企业编号", facts.oem_id, sheets.INTEGER),
        ("整车企业名称", facts.oem_name, sheets.TEXT),
        ("申报年度", facts.year, sheets.INTEGER),
        ("申报状态", facts.state, sheets.TEXT),
        ("申报类型", facts.kind, sheets.TEXT),
    ]
    names = [*FIGURE_LABELS, *(name for name in facts.figures if name not in FIGURE_LABELS)]
    for name in names:
        value = facts.figures.get(name)
        rows.append((FIGURE_LABELS.get(name, name), value, _figure_kind(value)))
    rows += [
        ("检查点条目数", checkpoint["size"], sheets.INTEGER),
        ("检查点根哈希", checkpoint["root"], sheets.HASH),
        ("检查点时间（UTC）", checkpoint["time"], sheets.TIMESTAMP),
        ("签名密钥编号", checkpoint["key_id"], sheets.TEXT),
        ("检查点签名（Ed25519）", checkpoint["signature"], sheets.TEXT),
        ("申报条目数", len(loaded.entries), sheets.INTEGER),
        ("证据文件数", len(facts.evidence), sheets.INTEGER),
    ]
    for label, value, kind in rows:
        sheet.append((label, value), kinds=(sheets.TEXT, kind))


def _entries_sheet(workbook: Any, facts: ClaimPackageFacts, loaded: _Loaded) -> None:
    columns = [(sheets.LEDGER_HEADERS[name], sheets.ledger_kind(name)) for name in COLUMNS]
    sheet = sheets.Sheet(
        workbook, "台账明细", [*columns, ("审核结论", sheets.TEXT), ("理由", sheets.LONG_TEXT)]
    )
    for entry in loaded.entries:
        decision = _decision(facts, entry["purchase_id"]) or {}
        state = decision.get("decision")
        sheet.append(
            [
                *(entry[name] for name in COLUMNS),
                DECISION_LABELS.get(state, state) if state else None,
                decision.get("reason"),
            ]
        )


def _evidence_sheet(workbook: Any, facts: ClaimPackageFacts) -> None:
    sheet = sheets.Sheet(
        workbook,
        "证据索引",
        [
            ("采购编号", sheets.INTEGER),
            ("证据类型", sheets.TEXT),
            ("文件名", sheets.LONG_TEXT),
            ("文件类型", sheets.TEXT),
            ("大小（字节）", sheets.INTEGER),
            ("SHA-256", sheets.HASH),
            ("上传时间（UTC）", sheets.TIMESTAMP),
        ],
        widths={6: 68},
    )
    for item in facts.evidence:
        sheet.append(
            (
                item.purchase_id,
                item.kind,
                item.filename,
                item.content_type,
                item.size,
                item.sha256,
                item.uploaded_at,
            )
        )


def claim_workbook(facts: ClaimPackageFacts) -> bytes:
    """The claim as an XLSX workbook: 汇总 (summary), 台账明细 (entries with decisions),
    证据索引 (evidence index)."""
    loaded = _load(facts)
    workbook = sheets.new_workbook()
    _summary_sheet(workbook, facts, loaded)
    _entries_sheet(workbook, facts, loaded)
    _evidence_sheet(workbook, facts)
    return sheets.workbook_bytes(workbook)
