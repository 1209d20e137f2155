"""What ``GET /claims/{id}`` shows: the claim, its lines and decisions, its history, the
evidence asked for and handed in, and the ledger's delta since its checkpoint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from market.extensions import db
from market.models import (
    Claim,
    ClaimLine,
    ClaimState,
    ClaimTransition,
    EvidenceDocument,
    Organization,
    User,
)
from market.services import claim_figures
from market.services.claim_evidence import requests_of
from market.services.claims import find_claim


def figures(claim: Claim) -> dict[str, Any]:
    """The snapshot figures (None before submission)."""
    return {
        "near_shore_total": claim.near_shore_total,
        "baseline": claim.baseline,
        "baseline_source": claim.baseline_source,
        "increment": claim.increment,
        "subsidy": claim.subsidy,
        "held": claim.held,
        "rate": claim.rate,
        "annual_cap": claim.annual_cap,
        "policy_version": claim.policy_version,
        "claimed_amount": claim.claimed_amount,
        "approved_amount": claim.approved_amount,
    }


def _approved_preview(claim: Claim) -> Any:
    """Under review: what approving now would grant with the decisions so far (pending
    purchases counted as approved)."""
    if claim.state is not ClaimState.UNDER_REVIEW:
        return None
    total = claim_figures.family_approved_total(claim)
    return claim_figures.money(total - claim_figures.approved_before(claim))


def _supplementary_of(claim: Claim) -> int | None:
    return db.session.scalar(
        select(Claim.id).where(Claim.parent_id == claim.id).order_by(Claim.id.desc()).limit(1)
    )


def claim_detail(user: User, claim_id: int) -> dict[str, Any]:
    claim = find_claim(user, claim_id)
    oem = db.session.get(Organization, claim.oem_org_id)
    lines = db.session.scalars(
        select(ClaimLine).where(ClaimLine.claim_id == claim.id).order_by(ClaimLine.purchase_id)
    )
    transitions = db.session.scalars(
        select(ClaimTransition)
        .where(ClaimTransition.claim_id == claim.id)
        .order_by(ClaimTransition.id)
    )
    evidence = db.session.scalars(
        select(EvidenceDocument)
        .where(EvidenceDocument.claim_id == claim.id)
        .order_by(EvidenceDocument.id)
    )
    return {
        "claim": claim,
        "oem_name": oem.legal_name if oem else None,
        "figures": figures(claim),
        "approved_preview": _approved_preview(claim),
        "lines": list(lines),
        "transitions": list(transitions),
        "evidence_requests": requests_of(claim),
        "evidence": list(evidence),
        "delta": claim_figures.delta_since(claim),
        "supplementary_claim_id": _supplementary_of(claim),
    }
