"""Signed checkpoints of the ledger: {size, root, time} under Ed25519, and their proofs.

- The tree: :func:`grow_tree` hashes the entries not yet in ``ledger_tree_nodes`` (leaf data =
  the entry's canonical JSON, the bytes its chain hash covers), checking each one's chain link
  on the way, and stores every perfect subtree that completes. It runs lazily, from
  :func:`issue_checkpoint`; appending entries never waits for it.
- A checkpoint signs the root of the first ``size`` entries. The signed message is the canonical
  JSON (sorted keys, no spaces, UTF-8) of ``{"origin", "root", "size", "time"}``; the ``origin``
  keeps a signature from meaning anything anywhere else. MERGE-NOTES.md has it byte for byte.
- The key comes from ``LEDGER_SIGNING_KEY`` (PEM text or a file path). Unset, the embedded
  default and tests generate one into ``instance/``; production refuses to make one up. A key
  that cannot be read fails issuance (logged, and recorded in ``ledger_checkpoint_failures``),
  never the ledger: entries are still appended, and the next issuance covers them all.
- Proofs read O(log n) stored nodes (:mod:`market.ledger.merkle`), whatever the ledger's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app
from sqlalchemy import Table, and_, func, insert, or_, select, text

from market.extensions import db
from market.ledger import merkle
from market.ledger.chain import ALL_HASHED_FIELDS, GENESIS_HASH, canonical_json, chain_hash
from market.models import CheckpointFailure, LedgerCheckpoint, LedgerEntry, LedgerTreeNode
from market.services.pagination import Page, paginate

log = logging.getLogger(__name__)

ORIGIN = "strongchain-exchange/ledger/v1"
ALGORITHM = "Ed25519"
KEY_FILE_NAME = "ledger_signing_key.pem"
# Entries hashed per transaction when the tree grows (bounded memory and lock time).
GROW_BATCH = 5000
# pg_advisory_xact_lock key of tree growth and issuance ("CHKPNT" in ASCII).
CHECKPOINT_LOCK_KEY = 0x43484B504E54
# Proof sizes an API caller may name: far beyond any real ledger, well inside BIGINT.
MAX_TREE_SIZE = 2**48


class CheckpointError(Exception):
    """A checkpoint could not be issued; the reason is safe to show to admins."""


class SigningKeyUnavailable(CheckpointError):
    pass


class BrokenLedger(CheckpointError):
    """An entry is missing or does not hash to its chain: nothing past it is certified."""


class ProofRequestError(ValueError):
    """A proof asked of sizes or entries the tree does not have; ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- the key ----------------------------------------------------------------------------------


def _default_key_file() -> Path:
    return Path(current_app.config["INSTANCE_DIR"]) / KEY_FILE_NAME


def signing_key() -> Ed25519PrivateKey:
    """The configured private key (generated into instance/ outside production if unset)."""
    configured = current_app.config.get("LEDGER_SIGNING_KEY")
    if configured and configured.lstrip().startswith("-----BEGIN"):
        pem = configured.encode()
    else:
        if configured:
            path = Path(configured)
        elif current_app.config.get("NAME") == "production":
            raise SigningKeyUnavailable("LEDGER_SIGNING_KEY is not set")
        else:
            path = _default_key_file()
            if not path.exists():
                generate_key_file(path)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SigningKeyUnavailable(
                f"the signing key file cannot be read ({type(exc).__name__})"
            ) from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyUnavailable("the signing key is not an unencrypted PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyUnavailable("the signing key is not an Ed25519 key")
    return key


def generate_key_file(path: Path) -> None:
    """A new Ed25519 key as an unencrypted PKCS#8 PEM file (mode 600), unless one is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two processes starting at once keep the first key, never overwrite it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    log.warning("generated a ledger signing key", extra={"path": str(path)})


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_document() -> dict[str, str]:
    """The public key as PEM and raw base64, with its id (what auditors keep)."""
    public_key = signing_key().public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id_of(public_key),
        "public_key": base64.b64encode(raw).decode(),
        "pem": pem.decode(),
        "origin": ORIGIN,
    }


# --- the signed statement ---------------------------------------------------------------------


def checkpoint_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def signed_message(size: int, root_hex: str, time: str) -> bytes:
    """The bytes a checkpoint's signature covers."""
    body = {"origin": ORIGIN, "root": root_hex, "size": size, "time": time}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def checkpoint_document(checkpoint: LedgerCheckpoint) -> dict[str, Any]:
    """A checkpoint as published: what the offline verifier reads."""
    return {
        "origin": ORIGIN,
        "size": checkpoint.size,
        "root": checkpoint.root_hash,
        "time": checkpoint_time(checkpoint.issued_at),
        "algorithm": ALGORITHM,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def signature_valid(document: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(
            base64.b64decode(document["signature"]),
            signed_message(document["size"], document["root"], document["time"]),
        )
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


# --- the tree ---------------------------------------------------------------------------------


def _lock() -> None:
    """Serialise tree growth and issuance until the end of the transaction."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK_KEY})
    else:  # SQLite: take the database write lock with a write that changes nothing
        db.session.execute(text("UPDATE subsidy_policies SET version = version WHERE 1 = 0"))


def tree_size() -> int:
    """How many entries the stored tree covers."""
    top = db.session.scalar(
        select(func.max(LedgerTreeNode.position)).where(LedgerTreeNode.level == 0)
    )
    return 0 if top is None else top + 1


def ledger_size() -> int:
    """The last entry's seq (entries are numbered from 1 without gaps)."""
    return db.session.scalar(select(func.max(LedgerEntry.seq))) or 0


def leaf_data(values: dict[str, Any]) -> bytes:
    """The Merkle leaf data of an entry: its canonical JSON, UTF-8."""
    return canonical_json(values).encode("utf-8")


def _stored_nodes(wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
    if not wanted:
        return {}
    by_level: dict[int, list[int]] = {}
    for level, position in sorted(wanted):
        by_level.setdefault(level, []).append(position)
    # One "level = L AND position IN (…)" per level: index ranges of the primary key, where a
    # (level, position) IN list of thousands of pairs (a claim's proofs) is matched row by row.
    rows = db.session.execute(
        select(LedgerTreeNode.level, LedgerTreeNode.position, LedgerTreeNode.hash).where(
            or_(
                *(
                    and_(LedgerTreeNode.level == level, LedgerTreeNode.position.in_(positions))
                    for level, positions in by_level.items()
                )
            )
        )
    )
    found = {(row.level, row.position): bytes(row.hash) for row in rows}
    missing = wanted - found.keys()
    if missing:
        raise CheckpointError(f"the stored tree lacks nodes {sorted(missing)[:3]}")
    return found


_CHAIN_COLUMNS = [LedgerEntry.prev_hash, LedgerEntry.entry_hash] + [
    getattr(LedgerEntry, name) for name in ALL_HASHED_FIELDS
]


def _grow_batch(start: int) -> int:
    """Hash up to GROW_BATCH entries after the first ``start`` into the tree (no commit);
    returns the new tree size."""
    rows = list(
        db.session.execute(
            select(*_CHAIN_COLUMNS)
            .where(LedgerEntry.seq > start)
            .order_by(LedgerEntry.seq)
            .limit(GROW_BATCH)
        )
    )
    if not rows:
        return start
    prev_hash = (
        db.session.scalar(select(LedgerEntry.entry_hash).where(LedgerEntry.seq == start))
        if start
        else GENESIS_HASH
    )
    leaves: list[bytes] = []
    for expected_seq, row in enumerate(rows, start=start + 1):
        values = row._asdict()
        if row.seq != expected_seq:
            raise BrokenLedger(f"entry {expected_seq} is missing")
        if row.prev_hash != prev_hash or chain_hash(row.prev_hash, values) != row.entry_hash:
            raise BrokenLedger(f"entry {expected_seq} does not verify against the chain")
        prev_hash = row.entry_hash
        leaves.append(merkle.leaf_hash(leaf_data(values)))
    new_nodes = _new_perfect_nodes(start, leaves)
    db.session.execute(
        insert(cast(Table, LedgerTreeNode.__table__)),
        [{"level": level, "position": pos, "hash": value} for (level, pos), value in new_nodes],
    )
    return start + len(leaves)


def _new_perfect_nodes(start: int, leaves: list[bytes]) -> list[tuple[merkle.Node, bytes]]:
    """The perfect nodes that leaves [start, start + len) complete, leaves included.

    At level L the new nodes are positions [start >> L, end >> L); a new node whose left
    child is older than this batch (start >> L odd) reads that child from the table.
    """
    end = start + len(leaves)
    older = {
        (level, (start >> level) - 1)
        for level in range(end.bit_length())
        if (start >> level) & 1 and (start >> level) < (end >> level)
    }
    stored = _stored_nodes(older)
    current = {start + i: leaf for i, leaf in enumerate(leaves)}
    made: list[tuple[merkle.Node, bytes]] = [((0, pos), value) for pos, value in current.items()]
    level = 0
    while (end >> (level + 1)) > (start >> (level + 1)):
        above: dict[int, bytes] = {}
        for pos in range(start >> (level + 1), end >> (level + 1)):
            left = current.get(2 * pos) or stored[(level, 2 * pos)]
            above[pos] = merkle.node_hash(left, current[2 * pos + 1])
        level += 1
        current = above
        made.extend(((level, pos), value) for pos, value in above.items())
    return made


def grow_tree(*, commit_each_batch: bool = False) -> int:
    """Bring the stored tree up to the last entry; returns its size.

    Each batch runs under the checkpoint lock; ``commit_each_batch`` commits between batches
    (the tree is derived data: a batch committed is never wrong, only a step ahead).
    """
    while True:
        _lock()
        size = tree_size()
        grown = _grow_batch(size)
        if commit_each_batch:
            db.session.commit()
        if grown - size < GROW_BATCH:
            return grown


def root_at(size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return merkle.subtree_hashes([(0, size)], _stored_nodes)[0]


# --- issuing ----------------------------------------------------------------------------------


def latest_checkpoint() -> LedgerCheckpoint | None:
    return db.session.scalar(
        select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc()).limit(1)
    )


def checkpoint_now() -> LedgerCheckpoint:
    """A checkpoint of the whole ledger as it is now, in the caller's transaction (no commit):
    the latest one if the ledger has not grown since, else a new one, signed."""
    key = signing_key()  # before any work: no key, no checkpoint
    size = grow_tree()
    _lock()
    latest = latest_checkpoint()
    if latest is not None and latest.size >= size:
        return latest
    issued_at = datetime.now(UTC)
    root_hex = root_at(size).hex()
    signature = key.sign(signed_message(size, root_hex, checkpoint_time(issued_at)))
    checkpoint = LedgerCheckpoint(
        size=size,
        root_hash=root_hex,
        issued_at=issued_at,
        key_id=key_id_of(key.public_key()),
        signature=base64.b64encode(signature).decode(),
    )
    db.session.add(checkpoint)
    db.session.flush()
    return checkpoint


def issue_checkpoint() -> LedgerCheckpoint:
    """Issue a signed checkpoint covering every entry now in the ledger, and commit.

    Returns the latest checkpoint when the ledger has not grown. On failure (no signing key,
    a broken chain) the failure is logged and recorded for admins, and the error re-raised;
    the entries are untouched and the next issuance covers them.
    """
    try:
        grow_tree(commit_each_batch=True)  # a large backlog in steps, not one long transaction
        checkpoint = checkpoint_now()
        db.session.commit()
        return checkpoint
    except CheckpointError as exc:
        db.session.rollback()
        _record_failure(str(exc))
        raise


def _record_failure(reason: str) -> None:
    size = ledger_size()
    log.error("ledger checkpoint not issued", extra={"reason": reason, "ledger_size": size})
    db.session.add(CheckpointFailure(ledger_size=size, reason=reason[:500]))
    db.session.commit()


def issue_checkpoint_job() -> dict[str, Any]:
    """Periodic job: a checkpoint when the ledger grew. Failing, it raises (RQ lists the job
    as failed) after the failure was logged and recorded."""
    before = latest_checkpoint()
    checkpoint = issue_checkpoint()
    issued = before is None or checkpoint.size != before.size
    if issued:
        log.info(
            "ledger checkpoint issued",
            extra={"size": checkpoint.size, "root": checkpoint.root_hash},
        )
    return {"size": checkpoint.size, "root": checkpoint.root_hash, "issued": issued}


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointStatus:
    ledger_size: int
    tree_size: int
    latest: LedgerCheckpoint | None
    failures: list[CheckpointFailure]

    @property
    def uncovered_entries(self) -> int:
        return self.ledger_size - (self.latest.size if self.latest else 0)


def checkpoint_status() -> CheckpointStatus:
    """How far checkpoints cover the ledger, and the failures since the latest one."""
    latest = latest_checkpoint()
    query = select(CheckpointFailure).order_by(CheckpointFailure.id.desc()).limit(20)
    if latest is not None:
        query = query.where(CheckpointFailure.attempted_at > latest.issued_at)
    return CheckpointStatus(
        ledger_size=ledger_size(),
        tree_size=tree_size(),
        latest=latest,
        failures=list(db.session.scalars(query)),
    )


def checkpoint_page(page: int, per_page: int) -> Page:
    """Published checkpoints, newest first."""
    query = select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc())
    result = paginate(query, page, per_page)
    result.items = [checkpoint_document(item) for item in result.items]
    return result


def checkpoint_at(size: int) -> LedgerCheckpoint | None:
    return db.session.scalar(select(LedgerCheckpoint).where(LedgerCheckpoint.size == size))


def _check_size(field: str, size: int, available: int) -> None:
    if size < 1:
        raise ProofRequestError(field, "Must be at least 1.")
    if size > available:
        raise ProofRequestError(field, f"Beyond the tree: {available} entries are covered so far.")


def inclusion_proof(seq: int, size: int) -> dict[str, Any]:
    """The audit path of entry ``seq`` in the tree of the first ``size`` entries."""
    available = tree_size()
    _check_size("size", size, available)
    if not 1 <= seq <= size:
        raise ProofRequestError("seq", f"Must be between 1 and size ({size}).")
    ranges = merkle.inclusion_ranges(seq - 1, size)
    # One read: the path, the root and the leaf itself.
    *path, root, leaf = merkle.subtree_hashes([*ranges, (0, size), (seq - 1, seq)], _stored_nodes)
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "size": size,
        "leaf_hash": leaf.hex(),
        "root": root.hex(),
        "proof": [node.hex() for node in path],
        "checkpoint": _document_or_none(size),
    }


def inclusion_paths(indices: Sequence[int], size: int, *, batch: int = 256) -> list[list[bytes]]:
    """The audit paths of many leaves in the tree of the first ``size`` entries, in the order
    of ``indices``: one read of the stored nodes per ``batch`` leaves (nodes they share are
    read once), never a recompute of the tree."""
    if not 0 < size <= tree_size():
        raise ProofRequestError("size", "Beyond the tree.")
    paths: list[list[bytes]] = []
    for start in range(0, len(indices), batch):
        chosen = [merkle.inclusion_ranges(i, size) for i in indices[start : start + batch]]
        flat = [subtree for ranges in chosen for subtree in ranges]
        hashes = iter(merkle.subtree_hashes(flat, _stored_nodes))
        paths.extend([next(hashes) for _ in ranges] for ranges in chosen)
    return paths


def consistency_proof(old_size: int, new_size: int) -> dict[str, Any]:
    """The proof that the first ``old_size`` entries are a prefix of the first ``new_size``."""
    available = tree_size()
    _check_size("new_size", new_size, available)
    if not 1 <= old_size <= new_size:
        raise ProofRequestError("old_size", f"Must be between 1 and new_size ({new_size}).")
    ranges = merkle.consistency_ranges(old_size, new_size)
    hashes = merkle.subtree_hashes([*ranges, (0, old_size), (0, new_size)], _stored_nodes)
    return {
        "old_size": old_size,
        "new_size": new_size,
        "old_root": hashes[-2].hex(),
        "new_root": hashes[-1].hex(),
        "proof": [node.hex() for node in hashes[:-2]],
        "old_checkpoint": _document_or_none(old_size),
        "new_checkpoint": _document_or_none(new_size),
    }


def _document_or_none(size: int) -> dict[str, Any] | None:
    checkpoint = checkpoint_at(size)
    return checkpoint_document(checkpoint) if checkpoint else None
