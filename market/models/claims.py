"""Subsidy claims (申报): an OEM's claim for a year, its purchases, its history and evidence.

A claim snapshots, when it is submitted, the figures of (OEM, year) from the ledger entries a
signed checkpoint covers, and the purchases those figures are made of (its lines). Auditors
decide per line; the claim's approved amount is the subsidy rule evaluated without the rejected
lines. The claim and its lines change state; what happened to them (transitions), what was
asked for (evidence requests) and what was handed in (evidence documents, their bytes
included) are only ever added: the application's database role may not UPDATE or DELETE them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.database import utcnow
from market.extensions import Model


class ClaimState(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    EVIDENCE_REQUESTED = "evidence_requested"
    APPROVED = "approved"
    PARTIALLY_APPROVED = "partially_approved"
    REJECTED = "rejected"


# States in which a claim is still open (one open claim per OEM and year).
OPEN_STATES = (
    ClaimState.DRAFT,
    ClaimState.SUBMITTED,
    ClaimState.UNDER_REVIEW,
    ClaimState.EVIDENCE_REQUESTED,
)
DECIDED_STATES = (ClaimState.APPROVED, ClaimState.PARTIALLY_APPROVED, ClaimState.REJECTED)


class ClaimKind(enum.StrEnum):
    PRIMARY = "primary"  # the year's first claim
    SUPPLEMENTARY = "supplementary"  # takes up the entries appended after a decision


class LineDecision(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class EvidenceKind(enum.StrEnum):
    INVOICE = "invoice"
    PURCHASE_ORDER = "purchase_order"
    DELIVERY_NOTE = "delivery_note"


_OPEN_SQL = "state IN ('draft', 'submitted', 'under_review', 'evidence_requested')"


class Claim(Model):
    """One claim of an OEM for a year; the snapshot columns are set when it is submitted."""

    __tablename__ = "claims"
    __table_args__ = (
        # One open claim per (OEM, year), also under concurrency: the second insert fails.
        Index(
            "uq_claims_open_oem_year",
            "oem_org_id",
            "year",
            unique=True,
            postgresql_where=text(_OPEN_SQL),
            sqlite_where=text(_OPEN_SQL),
        ),
        Index("ix_claims_oem_org_id_year", "oem_org_id", "year"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    oem_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    year: Mapped[int]
    kind: Mapped[ClaimKind]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"), index=True)
    state: Mapped[ClaimState]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    # The snapshot: entries of (OEM, year) with covered_after < seq <= checkpoint_size.
    checkpoint_size: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_root: Mapped[str | None] = mapped_column(String(64))
    covered_after: Mapped[int | None] = mapped_column(BigInteger)
    entry_seqs: Mapped[list[int] | None] = mapped_column(JSON)
    policy_version: Mapped[int | None]
    rate: Mapped[Decimal | None] = mapped_column(Numeric(8, 6))
    annual_cap: Mapped[Decimal | None]
    near_shore_total: Mapped[Decimal | None]  # T of the year at the snapshot
    baseline: Mapped[Decimal | None]  # B
    baseline_source: Mapped[str | None] = mapped_column(String(16))
    held: Mapped[bool | None]
    increment: Mapped[Decimal | None]  # I* of the year at the snapshot
    subsidy: Mapped[Decimal | None]  # S* of the year at the snapshot
    claimed_amount: Mapped[Decimal | None]  # S* (primary) or its change since the parent
    approved_amount: Mapped[Decimal | None]


class ClaimLine(Model):
    """A near-shore purchase a claim is made of, and the auditor's decision on it."""

    __tablename__ = "claim_lines"
    __table_args__ = (UniqueConstraint("claim_id", "purchase_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"))
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    record_seq: Mapped[int] = mapped_column(BigInteger)  # the entry that counted it
    amount: Mapped[Decimal]  # what it adds to T
    decision: Mapped[LineDecision] = mapped_column(default=LineDecision.PENDING)
    reason: Mapped[str | None] = mapped_column(String(500))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    decided_at: Mapped[datetime | None]


class ClaimTransition(Model):
    """One change of a claim's state: from, to, who, when and why (insert-only)."""

    __tablename__ = "claim_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    # Its own type name: two columns of one enum type would give two CHECKs one name.
    from_state: Mapped[ClaimState | None] = mapped_column(
        Enum(
            ClaimState,
            name="fromclaimstate",
            native_enum=False,
            create_constraint=True,
            validate_strings=True,
            length=24,
            values_callable=lambda members: [m.value for m in members],
        )
    )
    to_state: Mapped[ClaimState]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvidenceRequest(Model):
    """An auditor's request for documents of named purchases of a claim (insert-only)."""

    __tablename__ = "claim_evidence_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    purchase_ids: Mapped[list[int]] = mapped_column(JSON)
    kinds: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(2000))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvidenceDocument(Model):
    """A document handed in for a purchase of a claim, its bytes included (insert-only).

    Stored in the database so the claim and its evidence commit (and back up) together; the
    bytes are loaded only when the document is downloaded.
    """

    __tablename__ = "claim_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    kind: Mapped[EvidenceKind]
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(40))  # detected from the bytes
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    active_content: Mapped[bool] = mapped_column(default=False)  # a PDF with JavaScript etc.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
