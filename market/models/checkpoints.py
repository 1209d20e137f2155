"""The Merkle tree over the ledger and its signed checkpoints (append-only, like the entries)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class LedgerTreeNode(Model):
    """One perfect subtree of the RFC 9162 tree over the entries: 2^level leaves from leaf
    ``position · 2^level`` (level 0: the leaf hash of the entry with seq = position + 1).

    Written once, when the tree grows past it; proofs read O(log n) of these rows.
    """

    __tablename__ = "ledger_tree_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerCheckpoint(Model):
    """A signed statement: the first ``size`` entries have the Merkle root ``root_hash``."""

    __tablename__ = "ledger_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(100))  # base64 of the 64-byte Ed25519 signature


class CheckpointFailure(Model):
    """A checkpoint that could not be issued (signing key missing, a gap in the entries): kept,
    so the failure is listed for admins and auditors, not only logged."""

    __tablename__ = "ledger_checkpoint_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    ledger_size: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
