"""strongchain-verify: check a ledger export against signed checkpoints, without the server.

    strongchain-verify --export ledger.csv --checkpoint checkpoint.json --public-key key.pem \
        [--older-checkpoint older.json] [--older-export older.csv] [--json]

It answers, from files alone:

1. Is each checkpoint signed by the published key (Ed25519 over its canonical JSON)?
2. Is the export a valid chain: seq 1, 2, 3, … without gaps, each ``prev_hash`` the
   ``entry_hash`` before it, each ``entry_hash`` = SHA-256(prev_hash ‖ canonical JSON)?
3. Is the export exactly the checkpointed ledger: the RFC 9162 Merkle root of the first
   ``size`` entries (leaf = SHA-256(0x00 ‖ canonical JSON)) equal to the checkpoint's root?
4. With an older checkpoint: are the two consistent, i.e. is the older one's root the root of
   the export's first ``older.size`` entries? A ledger rewritten consistently (every hash
   recomputed, newly signed) fails here: the signature the auditor kept cannot be redone.
5. With the export kept alongside the older checkpoint: which row was rewritten first.

On failure it names the first bad row (file line and seq). Exit status: 0 all checks pass,
1 a check failed, 2 the files could not be read.

This file needs only the standard library and ``cryptography``: an auditor can copy it and
run ``python verify.py …`` anywhere. It deliberately repeats the few lines of the canonical
JSON and the tree hashing instead of importing the application (tests/test_verify.py checks
that both agree byte for byte).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ORIGIN = "strongchain-exchange/ledger/v1"
GENESIS_HASH = "0" * 64
CENT = Decimal("0.01")
METRE = Decimal("0.001")
# The hashed fields of an entry by its ``format`` (1: written under the v1 rule; 2: v2), as in
# market/ledger/chain.py; the server is not imported: this file must stand alone.
HASHED_FIELDS = (
    "seq",
    "kind",
    "purchase_id",
    "oem_org_id",
    "supplier_org_id",
    "supplier_city_code",
    "year",
    "purchased_on",
    "amount",
    "near_shore",
    "reason_code",
    "distance_km",
    "policy_version",
    "baseline",
    "near_shore_total_before",
    "increment",
    "subsidy",
    "recorded_at",
)
FORMAT_2_FIELDS = (
    *HASHED_FIELDS,
    "format",
    "cause",
    "plant_city_code",
    "baseline_source",
    "held",
    "near_shore_total",
    "increment_total",
    "subsidy_total",
)
INTEGER_FIELDS = frozenset(
    {"seq", "purchase_id", "oem_org_id", "supplier_org_id", "year", "policy_version", "format"}
)
MONEY_FIELDS = frozenset(
    {
        "amount",
        "baseline",
        "near_shore_total_before",
        "near_shore_total",
        "increment_total",
        "subsidy_total",
        "increment",
        "subsidy",
    }
)
BOOLEAN_FIELDS = frozenset({"near_shore", "held"})
# Absent (null) in a format-2 entry where it does not apply: an adjustment names no purchase,
# supplier, plant, date or distance; a held year has no baseline. Empty in a CSV export.
NULLABLE_V2 = frozenset(
    {
        "purchase_id",
        "supplier_org_id",
        "supplier_city_code",
        "plant_city_code",
        "purchased_on",
        "distance_km",
        "baseline",
    }
)


class VerifyError(Exception):
    """A file that cannot be read as what it should be (exit status 2)."""


class BadRow(Exception):
    """A row whose values cannot be put in canonical form."""


# --- canonical JSON and hashes (byte for byte as the server computes them) ----------------------


def _money(text: Any) -> str:
    value = Decimal(str(text)).quantize(CENT)
    return str(value if value else Decimal("0.00"))  # never "-0.00"


def _timestamp(text: Any) -> str:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise BadRow("recorded_at has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "1"):
        return True
    if str(value).strip().lower() in ("false", "0"):
        return False
    raise BadRow(f"{name} is not true or false: {value!r}")


def _value(name: str, value: Any) -> Any:
    if name in INTEGER_FIELDS:
        return int(value)
    if name in MONEY_FIELDS:
        return _money(value)
    if name in BOOLEAN_FIELDS:
        return _boolean(name, value)
    if name == "purchased_on":
        return date.fromisoformat(str(value)).isoformat()
    if name == "distance_km":
        return str(Decimal(str(value)).quantize(METRE))
    if name == "recorded_at":
        return _timestamp(value)
    return str(value)


def canonical_document(row: dict[str, Any]) -> dict[str, Any]:
    """The hashed fields of an exported row, as the server put them in its canonical JSON."""
    try:
        entry_format = int(row.get("format") or 1)
    except ValueError as exc:
        raise BadRow(f"format is not a number ({exc})") from exc
    if entry_format not in (1, 2):
        raise BadRow(f"unknown entry format {entry_format}")
    names = HASHED_FIELDS if entry_format == 1 else FORMAT_2_FIELDS
    nullable = NULLABLE_V2 if entry_format == 2 else frozenset()
    missing = [n for n in names if row.get(n) in (None, "") and n not in nullable]
    if missing:
        raise BadRow(f"missing {', '.join(missing)}")
    try:
        return {
            name: None if row.get(name) in (None, "") else _value(name, row[name]) for name in names
        }
    except (ValueError, InvalidOperation) as exc:
        raise BadRow(f"a value is not in its format ({exc})") from exc


def canonical_json(row: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, non-ASCII kept, decimals as strings with fixed places."""
    return json.dumps(
        canonical_document(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    """entry_hash = hex SHA-256 of the UTF-8 bytes of prev_hash (64 hex digits) ‖ canonical."""
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def leaf_hash(canonical: str) -> bytes:
    return hashlib.sha256(b"\x00" + canonical.encode("utf-8")).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class RootBuilder:
    """RFC 9162 roots of every prefix, in O(log n) memory: the perfect subtrees so far."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), biggest first

    def add(self, leaf: bytes) -> None:
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            value = node_hash(left, value)
            height += 1
        self._stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value


# --- reading the files -------------------------------------------------------------------------


@dataclass
class Row:
    line: int  # where the row starts in its file (CSV: the line; JSON: its position, from 1)
    values: dict[str, Any]


def read_export(path: Path) -> Iterator[Row]:
    """The rows of a ``/ledger?format=csv`` export (BOM, header) or of a JSON export (a list
    of entries, or a page with ``items``), in file order."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VerifyError(f"{path}: cannot be read ({exc.strerror})") from exc
    text = raw.decode("utf-8-sig", errors="strict")
    if text.lstrip().startswith(("[", "{")):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VerifyError(f"{path}: not valid JSON ({exc})") from exc
        items = loaded.get("items", loaded.get("entries")) if isinstance(loaded, dict) else loaded
        if not isinstance(items, list):
            raise VerifyError(f"{path}: a JSON export is a list of entries or has 'items'")
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise VerifyError(f"{path}: entry {position} is not an object")
            yield Row(position, item)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    absent = [name for name in (*HASHED_FIELDS, "prev_hash", "entry_hash") if name not in header]
    if absent:
        raise VerifyError(f"{path}: the CSV lacks the columns {', '.join(absent)}")
    line = reader.line_num + 1
    for values in reader:
        yield Row(line, values)
        line = reader.line_num + 1


def load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise VerifyError(f"{what} {path}: cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise VerifyError(f"{what} {path}: not valid JSON ({exc})") from exc
    if not isinstance(loaded, dict):
        raise VerifyError(f"{what} {path}: not a JSON object")
    return loaded


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM file, the JSON of ``GET /ledger/public-key``, or the raw key in base64."""
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except OSError as exc:
        raise VerifyError(f"public key {path}: cannot be read ({exc.strerror})") from exc
    try:
        if text.startswith("{"):
            document = json.loads(text)
            text = document.get("pem") or document.get("public_key") or ""
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise VerifyError(f"public key {path}: not an Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerifyError(f"public key {path}: not an Ed25519 public key")
    return key


# --- checking ----------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    name: str
    size: int
    root: str
    document: dict[str, Any]


@dataclass
class Report:
    checks: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, **extra: Any) -> bool:
        self.checks.append({"check": name, "ok": ok, "detail": detail, **extra})
        return ok

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks)


def signed_message(document: dict[str, Any]) -> bytes:
    body = {
        "origin": document["origin"],
        "root": document["root"],
        "size": document["size"],
        "time": document["time"],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def check_checkpoint(
    name: str, path: Path, key: Ed25519PublicKey, report: Report
) -> Checkpoint | None:
    return check_checkpoint_document(name, load_json(path, name), str(path), key, report)


def check_checkpoint_document(
    name: str, document: Any, path: str, key: Ed25519PublicKey, report: Report
) -> Checkpoint | None:
    """The checkpoint's shape and its Ed25519 signature under ``key``."""
    if not isinstance(document, dict):
        report.add(f"{name} signature", False, f"{path} is not a ledger checkpoint")
        return None
    try:
        size, root = document["size"], document["root"]
        valid_shape = (
            isinstance(size, int)
            and size >= 0
            and isinstance(root, str)
            and len(root) == 64
            and document["origin"] == ORIGIN
            and isinstance(document["time"], str)
        )
        signature = base64.b64decode(document["signature"], validate=True)
    except (KeyError, ValueError, TypeError):
        valid_shape = False
    if not valid_shape:
        report.add(f"{name} signature", False, f"{path} is not a ledger checkpoint")
        return None
    try:
        key.verify(signature, signed_message(document))
    except InvalidSignature:
        report.add(f"{name} signature", False, f"the signature of {path} does not verify")
        return None
    report.add(f"{name} signature", True, f"signed by the key: size {size}, root {root}")
    return Checkpoint(name, size, root, document)


@dataclass
class Walk:
    """What one pass over an export found."""

    entries: int = 0
    roots: dict[int, str] = field(default_factory=dict)  # size -> root hex, at wanted sizes
    leaves: list[bytes] = field(default_factory=list)  # kept only when asked
    bad_row: str | None = None


def read_exports(paths: Sequence[Path]) -> Iterator[tuple[str, Row]]:
    """The rows of several files in order (JSON pages of ``/ledger``, say), with where each
    row is: its line, and its file when there are several."""
    for path in paths:
        for row in read_export(path):
            yield (f"{path.name} line {row.line}" if len(paths) > 1 else f"line {row.line}"), row


def walk_export(paths: Sequence[Path], wanted_sizes: set[int], keep_leaves: bool = False) -> Walk:
    """Check the chain row by row; the Merkle roots of the prefixes of ``wanted_sizes``."""
    walk = Walk()
    builder = RootBuilder()
    if 0 in wanted_sizes:
        walk.roots[0] = builder.root().hex()
    prev_hash = GENESIS_HASH
    for place, row in read_exports(paths):
        expected_seq = walk.entries + 1
        where = f"{place} (seq {row.values.get('seq') or '?'})"
        try:
            canonical = canonical_json(row.values)
        except BadRow as exc:
            walk.bad_row = f"{where}: {exc}"
            return walk
        seq = int(row.values["seq"])
        if seq != expected_seq:
            walk.bad_row = f"{where}: expected seq {expected_seq} (an entry missing or moved)"
            return walk
        if row.values.get("prev_hash") != prev_hash:
            walk.bad_row = f"{where}: prev_hash is not the entry_hash of the entry before"
            return walk
        if chain_hash(prev_hash, canonical) != row.values.get("entry_hash"):
            walk.bad_row = f"{where}: entry_hash does not match the entry's content"
            return walk
        prev_hash = str(row.values["entry_hash"])
        leaf = leaf_hash(canonical)
        builder.add(leaf)
        if keep_leaves:
            walk.leaves.append(leaf)
        walk.entries += 1
        if walk.entries in wanted_sizes:
            walk.roots[walk.entries] = builder.root().hex()
    return walk


def verify(
    export: Sequence[Path],
    checkpoint_path: Path,
    public_key_path: Path,
    older_checkpoint_path: Path | None = None,
    older_export: Sequence[Path] | None = None,
) -> Report:
    report = Report()
    key = load_public_key(public_key_path)
    newer = check_checkpoint("checkpoint", checkpoint_path, key, report)
    older = (
        check_checkpoint("older checkpoint", older_checkpoint_path, key, report)
        if older_checkpoint_path
        else None
    )
    if newer is None or (older_checkpoint_path and older is None):
        return report
    sizes = {newer.size} | ({older.size} if older else set())
    walk = walk_export(export, sizes, keep_leaves=bool(older_export))
    if walk.bad_row:
        report.add("chain", False, f"first bad row: {walk.bad_row}", first_bad_row=walk.bad_row)
    else:
        report.add("chain", True, f"{walk.entries} entries, every hash and link verifies")
    if walk.entries < newer.size:
        report.add(
            "checkpoint root",
            False,
            f"the export has {walk.entries} valid entries; the checkpoint covers {newer.size}",
        )
    elif walk.roots[newer.size] != newer.root:
        report.add(
            "checkpoint root",
            False,
            f"the Merkle root of the export's first {newer.size} entries is "
            f"{walk.roots[newer.size]}, not the checkpoint's {newer.root}: the export is not "
            "the checkpointed ledger",
        )
    else:
        after = walk.entries - newer.size
        detail = f"the export's first {newer.size} entries are exactly the checkpointed ledger"
        if after:
            detail += f"; the {after} entries after them are not covered by this checkpoint"
        report.add("checkpoint root", True, detail, uncovered_entries=after)
    if older is not None:
        _check_consistency(older, newer, walk, report)
        if older_export:
            _locate_rewrite(older_export, older, walk, report)
    return report


def _check_consistency(older: Checkpoint, newer: Checkpoint, walk: Walk, report: Report) -> None:
    if older.size > newer.size:
        report.add("consistency", False, "the older checkpoint is larger than the newer one")
    elif older.size not in walk.roots:
        report.add(
            "consistency",
            False,
            f"the export stops before entry {older.size}: the older checkpoint cannot be checked",
        )
    elif walk.roots[older.size] != older.root:
        report.add(
            "consistency",
            False,
            f"the export's first {older.size} entries do not have the older checkpoint's root: "
            f"the ledger was rewritten among entries 1–{older.size} after {older.document['time']}",
        )
    else:
        report.add(
            "consistency",
            True,
            f"the older checkpoint (size {older.size}) is a prefix of the export",
        )


def _locate_rewrite(
    older_export: Sequence[Path], older: Checkpoint, walk: Walk, report: Report
) -> None:
    """Compare row by row with an export kept from the time of the older checkpoint."""
    kept = walk_export(older_export, {older.size}, keep_leaves=True)
    if kept.bad_row or kept.roots.get(older.size) != older.root:
        report.add(
            "older export",
            False,
            "the kept export is not the ledger of the older checkpoint either",
        )
        return
    pairs = zip(kept.leaves[: older.size], walk.leaves, strict=False)  # the shorter decides
    for position, (was, now) in enumerate(pairs, 1):
        if was != now:
            report.add(
                "first rewritten row",
                False,
                f"entry seq {position} differs from the export kept with the older checkpoint",
                first_bad_row=f"seq {position}",
            )
            return
    report.add("older export", True, "the kept export agrees row by row with this one")


# --- claim manifests ----------------------------------------------------------------------------

MANIFEST_FORMAT = "strongchain-claim-manifest/1"


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to from the leaf at ``index`` of a
    tree of ``size``, or None if it cannot be a proof for that index and size."""
    if not 0 <= index < size:
        return None
    fn, sn, result = index, size - 1, leaf
    for sibling in proof:
        if len(sibling) != 32 or sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    return result if sn == 0 else None


def key_id_of(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _object(document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name)
    return value if isinstance(value, dict) else {}


def _hex_list(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(node, str) for node in value):
        raise BadRow("inclusion_proof is not a list of hex strings")
    try:
        return [bytes.fromhex(node) for node in value]
    except ValueError as exc:
        raise BadRow("inclusion_proof has a node that is not hex") from exc


def check_manifest_entry(
    item: Any, checkpoint: Checkpoint, claim: dict[str, Any], after_seq: int
) -> dict[str, Any]:
    """One entry of a manifest: canonical, its own leaf and chain hash, in the checkpoint, the
    claim's OEM and year. Returns its canonical document; raises BadRow naming what is wrong."""
    if not isinstance(item, dict) or not isinstance(item.get("canonical_json"), str):
        raise BadRow("no canonical_json")
    seq, text = item.get("seq"), item["canonical_json"]
    if not isinstance(seq, int) or seq <= after_seq:
        raise BadRow(f"seq {seq!r} is not after the entry before ({after_seq})")
    if item.get("leaf_index") != seq - 1 or seq > checkpoint.size:
        raise BadRow(f"leaf_index is not seq − 1 within the checkpoint's {checkpoint.size}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRow(f"canonical_json is not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("seq") != seq:
        raise BadRow("canonical_json is not this entry")
    if canonical_json(document) != text:
        raise BadRow("canonical_json is not in canonical form")
    if (document["oem_org_id"], document["year"]) != (claim.get("oem_id"), claim.get("year")):
        raise BadRow("the entry is not of the claim's OEM and year")
    leaf = leaf_hash(text)
    if item.get("leaf_hash") != leaf.hex():
        raise BadRow("leaf_hash is not SHA-256(0x00 ‖ canonical_json)")
    if chain_hash(str(item.get("prev_hash")), text) != item.get("entry_hash"):
        raise BadRow("entry_hash is not SHA-256(prev_hash ‖ canonical_json)")
    proof = _hex_list(item.get("inclusion_proof"))
    if root_from_inclusion(seq - 1, checkpoint.size, leaf, proof) != bytes.fromhex(checkpoint.root):
        raise BadRow(
            f"the inclusion proof does not lead to the root of checkpoint {checkpoint.size}"
        )
    return canonical_document(document)


def _check_manifest_entries(
    manifest: dict[str, Any], checkpoint: Checkpoint, report: Report
) -> list[dict[str, Any]] | None:
    entries = manifest.get("entries")
    if not isinstance(entries, list):
        report.add("entries", False, "the manifest has no list of entries")
        return None
    claim = _object(manifest, "claim")
    documents: list[dict[str, Any]] = []
    for position, item in enumerate(entries, start=1):
        seq = item.get("seq") if isinstance(item, dict) else None
        try:
            documents.append(
                check_manifest_entry(
                    item, checkpoint, claim, documents[-1]["seq"] if documents else 0
                )
            )
        except (BadRow, KeyError, TypeError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, BadRow) else f"malformed ({exc!r})"
            where = f"seq {seq} (entry {position} of the manifest)"
            report.add("entries", False, f"first bad entry: {where}: {reason}", first_bad_entry=seq)
            return None
    report.add(
        "entries",
        True,
        f"{len(documents)} entries: each canonical, its leaf and chain hash recomputed, "
        f"included in the checkpoint of size {checkpoint.size}",
    )
    return documents


def _sum(documents: Sequence[dict[str, Any]], name: str, near_only: bool = False) -> Decimal:
    return sum(
        (Decimal(d[name]) for d in documents if d["near_shore"] or not near_only), Decimal(0)
    )


def _check_totals(
    manifest: dict[str, Any], documents: list[dict[str, Any]], report: Report
) -> None:
    """The stated entry totals are the sums of the entries."""
    stated = _object(manifest, "entry_totals")
    computed = {
        "entries": len(documents),
        "amount": _sum(documents, "amount"),
        "near_shore_amount": _sum(documents, "amount", near_only=True),
        "increment": _sum(documents, "increment"),
        "subsidy": _sum(documents, "subsidy"),
    }
    for name, value in computed.items():
        try:
            agrees = stated.get(name) is not None and Decimal(str(stated[name])) == value
        except InvalidOperation:
            agrees = False
        if not agrees:
            report.add(
                "entry totals",
                False,
                f"{name}: the entries sum to {value}, the manifest states {stated.get(name)}",
            )
            return
    report.add(
        "entry totals",
        True,
        f"increments sum to {computed['increment']}, subsidies to {computed['subsidy']}, as stated",
    )


# Each figure of the claim, and the field of the last (format-2) entry that states it.
FIGURE_FIELDS = {
    "near_shore_total": "near_shore_total",
    "increment": "increment_total",
    "subsidy": "subsidy_total",
    "baseline": "baseline",
    "held": "held",
}


def _figures_disagree(figures: dict[str, Any], last: dict[str, Any]) -> str | None:
    for figure, name in FIGURE_FIELDS.items():
        if figure not in figures:
            continue
        claimed, stated = figures[figure], last[name]
        if name in MONEY_FIELDS and claimed is not None and stated is not None:
            try:
                same = Decimal(str(claimed)) == Decimal(stated)
            except InvalidOperation:
                same = False
        else:
            same = claimed == stated
        if not same:
            return (
                f"{figure} is {claimed}, but the claim's last entry (seq {last['seq']}) "
                f"leaves {name} at {stated}"
            )
    return None


def _running_gap(documents: list[dict[str, Any]]) -> str | None:
    """Each entry continues the running totals of the one before: no entry of the OEM's year
    between them is left out of the claim, and Σ changes = the totals' change."""
    for before, entry in pairwise(documents):
        for total, change in (("increment_total", "increment"), ("subsidy_total", "subsidy")):
            if Decimal(entry[total]) - Decimal(entry[change]) != Decimal(before[total]):
                return (
                    f"seq {entry['seq']}: {total} − {change} is not the {total} of seq "
                    f"{before['seq']} (an entry of the year left out, or a changed figure)"
                )
        if Decimal(entry["near_shore_total_before"]) != Decimal(before["near_shore_total"]):
            return f"seq {entry['seq']}: near_shore_total_before is not seq {before['seq']}'s total"
    return None


def _check_figures(
    manifest: dict[str, Any], documents: list[dict[str, Any]], report: Report
) -> None:
    """The claim's figures are the position its entries arrive at (format 2 entries state it)."""
    figures = _object(manifest, "figures")
    if not documents or any(d.get("format") != 2 for d in documents):
        report.add("figures", True, "not checked: only format-2 entries state running totals")
        return
    problem = _running_gap(documents) or _figures_disagree(figures, documents[-1])
    if problem:
        report.add("figures", False, problem)
        return
    first = documents[0]
    start = Decimal(first["increment_total"]) - Decimal(first["increment"])
    report.add(
        "figures",
        True,
        f"the entries run without a gap from I* {start} to I* {documents[-1]['increment_total']}"
        f" and S* {documents[-1]['subsidy_total']}: the claim's figures",
    )


def _check_evidence(manifest: dict[str, Any], folder: Path, report: Report) -> None:
    """Each file of the evidence index is in ``folder`` (by content: its SHA-256 and size,
    whatever name it was saved under)."""
    try:
        files = [path for path in folder.iterdir() if path.is_file()]
        present = {(hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size) for p in files}
    except OSError as exc:
        raise VerifyError(f"evidence folder {folder}: cannot be read ({exc.strerror})") from exc
    listed = manifest.get("evidence")
    index: list[Any] = listed if isinstance(listed, list) else []
    for item in index:
        if not isinstance(item, dict) or (item.get("sha256"), item.get("size")) not in present:
            name = item.get("filename") if isinstance(item, dict) else item
            report.add("evidence", False, f"{name!r}: no file in {folder} has its SHA-256 and size")
            return
    report.add("evidence", True, f"{len(index)} files of the index found by their SHA-256")


def verify_manifest(
    manifest_path: Path, public_key_path: Path, evidence_folder: Path | None = None
) -> Report:
    """A claim manifest: its checkpoint signed by the key, every entry included, the sums."""
    report = Report()
    key = load_public_key(public_key_path)
    manifest = load_json(manifest_path, "manifest")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise VerifyError(f"manifest {manifest_path}: not a {MANIFEST_FORMAT} manifest")
    document = manifest.get("checkpoint")
    named = document.get("key_id") if isinstance(document, dict) else None
    if named is not None and named != key_id_of(key):
        report.add(
            "checkpoint key",
            False,
            f"the checkpoint names key {named}; the public key given is {key_id_of(key)}",
        )
    checkpoint = check_checkpoint_document(
        "checkpoint", document, f"the checkpoint of {manifest_path}", key, report
    )
    if checkpoint is None:
        return report
    documents = _check_manifest_entries(manifest, checkpoint, report)
    if documents is not None:
        _check_totals(manifest, documents, report)
        _check_figures(manifest, documents, report)
    if evidence_folder is not None:
        _check_evidence(manifest, evidence_folder, report)
    return report


def _print(report: Report, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": report.ok, "checks": report.checks}, ensure_ascii=False, indent=2))
    else:
        for check in report.checks:
            print(f"[{'ok' if check['ok'] else 'FAIL'}] {check['check']}: {check['detail']}")
        print("VERIFIED" if report.ok else "NOT VERIFIED")
    return 0 if report.ok else 1


def manifest_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="strongchain-verify manifest",
        description="Check a claim manifest (checkpoint, entries, inclusion proofs), offline.",
    )
    parser.add_argument("manifest", type=Path, help="the claim's manifest JSON")
    parser.add_argument(
        "--public-key", type=Path, required=True, help="PEM, /ledger/public-key JSON, or base64"
    )
    parser.add_argument(
        "--evidence", type=Path, help="a folder with the evidence files, checked by SHA-256"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = verify_manifest(args.manifest, args.public_key, args.evidence)
    except (VerifyError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _print(report, args.json)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["manifest"]:
        return manifest_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="strongchain-verify",
        description="Check a StrongChain ledger export against signed checkpoints, offline "
        "(or a claim manifest: strongchain-verify manifest MANIFEST --public-key KEY).",
    )
    parser.add_argument(
        "--export",
        type=Path,
        action="append",
        required=True,
        help="ledger CSV or JSON export; repeat it for JSON pages, in order",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint JSON")
    parser.add_argument(
        "--public-key", type=Path, required=True, help="PEM, /ledger/public-key JSON, or base64"
    )
    parser.add_argument("--older-checkpoint", type=Path, help="an earlier checkpoint JSON")
    parser.add_argument(
        "--older-export",
        type=Path,
        action="append",
        help="the export kept with the older checkpoint (repeatable, like --export)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.older_export and not args.older_checkpoint:
        parser.error("--older-export needs --older-checkpoint")
    try:
        report = verify(
            args.export, args.checkpoint, args.public_key, args.older_checkpoint, args.older_export
        )
    except (VerifyError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _print(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
