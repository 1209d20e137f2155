"""Evidence of a claim: documents the OEM hands in for its purchases, and their download.

The bytes decide what a document is (:mod:`market.services.evidence_files`); they are stored
in the database with their SHA-256, so a claim and its evidence commit together and are backed
up together. Documents and requests are insert-only. When every (purchase, kind) the open
evidence request names has a document handed in since the request, the claim goes back to
``under_review`` by itself (the uploader is recorded as the one who moved it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import undefer

from market.clock import utcnow
from market.errors import Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import check_id
from market.models import (
    Claim,
    ClaimState,
    EvidenceDocument,
    EvidenceKind,
    EvidenceRequest,
    OrgKind,
    Role,
    User,
)
from market.permissions import require_active_org
from market.services import evidence_files
from market.services.audit import audit
from market.services.claims import find_claim, line_ids, move, require_state
from market.services.unit_of_work import commit


def latest_request(claim: Claim) -> EvidenceRequest | None:
    return db.session.scalar(
        select(EvidenceRequest)
        .where(EvidenceRequest.claim_id == claim.id)
        .order_by(EvidenceRequest.id.desc())
        .limit(1)
    )


def outstanding(claim: Claim, request: EvidenceRequest) -> list[tuple[int, str]]:
    """The (purchase, kind) pairs of ``request`` with no document handed in since it."""
    handed_in = set(
        db.session.execute(
            select(EvidenceDocument.purchase_id, EvidenceDocument.kind).where(
                EvidenceDocument.claim_id == claim.id,
                EvidenceDocument.uploaded_at >= request.requested_at,
            )
        ).all()
    )
    have = {(purchase_id, str(kind)) for purchase_id, kind in handed_in}
    return [(p, k) for p in request.purchase_ids for k in request.kinds if (p, k) not in have]


@dataclass(frozen=True)
class Upload:
    purchase_id: int
    kind: EvidenceKind
    filename: str | None
    data: bytes


def _require_owner(user: User, claim: Claim) -> None:
    if user.role is not Role.BUYER or user.organization_id != claim.oem_org_id:
        raise Forbidden("Only the claiming organization's buyers hand in evidence.")
    require_active_org(user, OrgKind.OEM, "hand in evidence")


def evidence_upload(user: User, claim_id: int, upload: Upload) -> EvidenceDocument:
    """The OEM hands in a document for a purchase of its claim (PDF/JPEG/PNG ≤ 10 MB)."""
    claim = find_claim(user, claim_id, lock=True)
    _require_owner(user, claim)
    require_state(claim, "hand in evidence for")
    if upload.purchase_id not in line_ids(claim):
        raise ValidationFailed(fields={"purchase_id": ["Not a purchase of this claim."]})
    detected = evidence_files.detect(upload.data)
    document = EvidenceDocument(
        claim_id=claim.id,
        purchase_id=upload.purchase_id,
        kind=upload.kind,
        filename=evidence_files.clean_filename(upload.filename),
        content_type=detected.content_type,
        size=detected.size,
        sha256=detected.sha256,
        active_content=detected.active_content,
        content=upload.data,
        uploaded_by_id=user.id,
        uploaded_at=utcnow(),
    )
    db.session.add(document)
    db.session.flush()
    audit(
        "claim.evidence_uploaded",
        f"claim:{claim.id}",
        {"document_id": document.id, "purchase_id": upload.purchase_id, "sha256": detected.sha256},
        organization_id=claim.oem_org_id,
    )
    _maybe_back_to_review(claim, user)
    commit()
    return document


def _maybe_back_to_review(claim: Claim, user: User) -> None:
    if claim.state is not ClaimState.EVIDENCE_REQUESTED:
        return
    request = latest_request(claim)
    if request is not None and not outstanding(claim, request):
        move(claim, ClaimState.UNDER_REVIEW, user, "The evidence requested was handed in.")


def evidence_list(user: User, claim_id: int) -> list[EvidenceDocument]:
    """The documents of a claim, oldest first (metadata only: the bytes stay in the table)."""
    claim = find_claim(user, claim_id)
    return list(
        db.session.scalars(
            select(EvidenceDocument)
            .where(EvidenceDocument.claim_id == claim.id)
            .order_by(EvidenceDocument.id)
        )
    )


def evidence_get(user: User, claim_id: int, document_id: int) -> EvidenceDocument:
    """One document of a claim the user may see, with its bytes (404 otherwise)."""
    claim = find_claim(user, claim_id)
    check_id(document_id, "Document")
    document = db.session.scalar(
        select(EvidenceDocument)
        .where(EvidenceDocument.id == document_id, EvidenceDocument.claim_id == claim.id)
        .options(undefer(EvidenceDocument.content))
    )
    if document is None:
        raise NotFound("Document not found.")
    return document


def requests_of(claim: Claim) -> list[dict[str, Any]]:
    """The claim's evidence requests, oldest first, each with what is still outstanding."""
    requests = list(
        db.session.scalars(
            select(EvidenceRequest)
            .where(EvidenceRequest.claim_id == claim.id)
            .order_by(EvidenceRequest.id)
        )
    )
    return [
        {
            "id": request.id,
            "purchase_ids": request.purchase_ids,
            "kinds": request.kinds,
            "note": request.note,
            "requested_by_id": request.requested_by_id,
            "requested_at": request.requested_at,
            "outstanding": [{"purchase_id": p, "kind": k} for p, k in outstanding(claim, request)],
        }
        for request in requests
    ]
