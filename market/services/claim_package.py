"""A claim's package for auditors: the facts :mod:`market.ledger.package` turns into the XLSX
workbook and the JSON manifest (the ledger package never imports the claims models)."""

from __future__ import annotations

from sqlalchemy import select

from market.errors import Conflict
from market.extensions import db
from market.ledger.package import ClaimPackageFacts, EvidenceInfo
from market.models import ClaimLine, EvidenceDocument, Organization, User
from market.services.claims import find_claim


def package_facts(user: User, claim_id: int) -> ClaimPackageFacts:
    """The facts of a submitted claim the user may see (404 otherwise, 409 for a draft)."""
    claim = find_claim(user, claim_id)
    if claim.checkpoint_size is None or claim.entry_seqs is None:
        raise Conflict("A draft has no package yet: it is built from the submitted figures.")
    oem = db.session.get(Organization, claim.oem_org_id)
    lines = db.session.scalars(select(ClaimLine).where(ClaimLine.claim_id == claim.id))
    documents = db.session.scalars(
        select(EvidenceDocument)
        .where(EvidenceDocument.claim_id == claim.id)
        .order_by(EvidenceDocument.id)
    )
    return ClaimPackageFacts(
        claim_id=claim.id,
        oem_id=claim.oem_org_id,
        oem_name=oem.legal_name if oem else "",
        year=claim.year,
        state=claim.state.value,
        kind=claim.kind.value,
        figures={
            "near_shore_total": claim.near_shore_total,
            "baseline": claim.baseline,
            "increment": claim.increment,
            "subsidy": claim.subsidy,
            "held": claim.held,
            "cap": claim.annual_cap,
            "approved_amount": claim.approved_amount,
        },
        checkpoint_size=claim.checkpoint_size,
        entry_seqs=list(claim.entry_seqs),
        decisions={line.purchase_id: (line.decision.value, line.reason) for line in lines},
        evidence=[
            EvidenceInfo(
                purchase_id=d.purchase_id,
                kind=d.kind.value,
                filename=d.filename,
                content_type=d.content_type,
                size=d.size,
                sha256=d.sha256,
                uploaded_at=d.uploaded_at,
            )
            for d in documents
        ],
    )
