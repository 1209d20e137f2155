"""The claim package: the auditors' workbook (XLSX) and the JSON manifest of a claim.

A claim is filed against a signed checkpoint; the package lets an auditor check it without
trusting the platform: the workbook for reading, the manifest (the checkpoint, each entry's
canonical JSON and its RFC 9162 inclusion proof) for ``strongchain-verify manifest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
    # (Decimal / bool / None)
    figures: Mapping[str, Any]
    # The signed checkpoint the claim refers to.
    checkpoint_size: int
    # The ledger entries of the claim, by seq.
    entry_seqs: Sequence[int]
    # purchase id -> (approved | rejected | pending, reason)
    decisions: Mapping[int, tuple[str, str | None]]
    evidence: Sequence[EvidenceInfo]


def claim_workbook(facts: ClaimPackageFacts) -> bytes:
    """The claim as an XLSX workbook: summary, entries, evidence index."""
    raise NotImplementedError  # filled in next on wip/exports


def claim_manifest(facts: ClaimPackageFacts) -> dict[str, Any]:
    """The claim's JSON manifest: checkpoint, entries' canonical JSON and inclusion proofs."""
    raise NotImplementedError  # filled in next on wip/exports
