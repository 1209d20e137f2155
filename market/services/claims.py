"""Subsidy claims (申报): filing, review, evidence and decisions (DESIGN.md, "Claims").

States: draft → submitted → under_review ⇄ evidence_requested → approved | partially_approved |
rejected. The OEM's buyers file a draft for a year that has ended (Asia/Shanghai) and submit it:
the submission snapshots the year's figures from the ledger entries a signed checkpoint covers
(``checkpoint_now()`` in the same transaction) and the near-shore purchases they count, its
lines. Auditors whose jurisdiction holds one of the OEM's plants (and admins) take it into
review, may request evidence for named lines, decide each line and then the claim. The approved
amount is the rule without the rejected purchases (:mod:`market.services.claim_figures`), so it
can never exceed what was claimed.

After a decision, entries of (OEM, year) appended later show on the claim as a delta; a
supplementary claim (parent: the year's latest decided claim) covers exactly those entries, and
its approved amount is the year's approved total less what the earlier claims approved.

Every transition records who, when and why (``claim_transitions``, insert-only), writes the
audit log and announces a domain event to the OEM, in the transaction of the change. One open
claim per (OEM, year) is a partial unique index, so two concurrent filings cannot both win.
Suppliers never see claims; others see what they may (buyers their organisation's, auditors
their jurisdiction's): anything else does not exist for them (404).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.exc import IntegrityError

from market.clock import business_year, utcnow
from market.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from market.extensions import db
from market.http import check_id
from market.ledger.checkpoints import CheckpointError, checkpoint_now
from market.ledger.reports import oems_in
from market.ledger.rules import ZERO, money
from market.models import (
    Claim,
    ClaimKind,
    ClaimLine,
    ClaimState,
    ClaimTransition,
    EvidenceRequest,
    LineDecision,
    OrgKind,
    Role,
    User,
)
from market.models.claims import DECIDED_STATES, OPEN_STATES
from market.permissions import auditor_city_prefixes, require_active_org
from market.services import claim_figures
from market.services.audit import audit
from market.services.events import EventKind, emit_event
from market.services.pagination import Page, order_by, paginate
from market.services.unit_of_work import commit, rollback

_SORT_COLUMNS: Mapping[str, Any] = {"id": Claim.id, "year": Claim.year, "state": Claim.state}
# Which states each action may start from.
_FROM: Mapping[str, tuple[ClaimState, ...]] = {
    "submit": (ClaimState.DRAFT,),
    "review": (ClaimState.SUBMITTED, ClaimState.EVIDENCE_REQUESTED),
    "request evidence for": (ClaimState.UNDER_REVIEW,),
    "hand in evidence for": (
        ClaimState.SUBMITTED,
        ClaimState.UNDER_REVIEW,
        ClaimState.EVIDENCE_REQUESTED,
    ),
    "decide purchases of": (ClaimState.UNDER_REVIEW,),
    "decide": (ClaimState.UNDER_REVIEW,),
}


# --- who sees what -------------------------------------------------------------------------------


def visible_claims(user: User) -> ColumnElement[bool]:
    """The claims ``user`` may see, as a WHERE clause: admins all; auditors those of OEMs
    with a plant in their jurisdiction; buyers their organisation's; nobody else any."""
    if user.role is Role.ADMIN:
        return true()
    if user.role is Role.AUDITOR:
        prefixes = auditor_city_prefixes(user)
        if prefixes is None:
            return true()
        return Claim.oem_org_id.in_(oems_in(prefixes)) if prefixes else false()
    if user.role is Role.BUYER and user.organization_id is not None:
        return Claim.oem_org_id == user.organization_id
    return false()


def find_claim(user: User, claim_id: int, *, lock: bool = False) -> Claim:
    """A claim ``user`` may see (404 otherwise); ``lock`` takes its row lock for a change."""
    check_id(claim_id, "Claim")
    query = select(Claim).where(Claim.id == claim_id, visible_claims(user))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    claim = db.session.scalar(query)
    if claim is None:
        raise NotFound("Claim not found.")
    return claim


def require_state(claim: Claim, doing: str) -> None:
    """409 unless the claim is in a state ``doing`` may start from."""
    allowed = _FROM[doing]
    if claim.state not in allowed:
        states = ", ".join(state.value for state in allowed)
        raise Conflict(
            f"A claim that is {claim.state.value} cannot be changed this way: "
            f"you can {doing} a claim that is {states}."
        )


# --- transitions ---------------------------------------------------------------------------------


def move(
    claim: Claim,
    to: ClaimState,
    actor: User | None,
    reason: str | None,
    *,
    event: EventKind = EventKind.CLAIM_STATE_CHANGED,
    details: dict[str, Any] | None = None,
    created: bool = False,
) -> None:
    """Change the claim's state (no commit): the transition row, the audit log, the event
    (``created``: the claim was just added in ``to``, from no state)."""
    before = None if created else claim.state
    claim.state = to
    db.session.add(
        ClaimTransition(
            claim_id=claim.id,
            from_state=before,
            to_state=to,
            actor_id=actor.id if actor else None,
            reason=reason,
            created_at=utcnow(),
        )
    )
    facts = {
        "from": before.value if before else None,
        "to": to.value,
        "year": claim.year,
        "kind": claim.kind.value,
        **(details or {}),
    }
    audit(f"claim.{to.value}", f"claim:{claim.id}", facts, organization_id=claim.oem_org_id)
    emit_event(
        event,
        organization_id=claim.oem_org_id,
        subject_type="claim",
        subject_id=claim.id,
        data={**facts, "claim_id": claim.id},
    )


# --- filing --------------------------------------------------------------------------------------


def _latest_decided(oem_id: int, year: int) -> Claim | None:
    return db.session.scalar(
        select(Claim)
        .where(Claim.oem_org_id == oem_id, Claim.year == year, Claim.state.in_(DECIDED_STATES))
        .order_by(Claim.id.desc())
        .limit(1)
    )


def _one_open_claim() -> Conflict:
    return Conflict(
        "Your organization already has an open claim for this year.",
        fields={"year": ["An open claim for this year exists (one at a time)."]},
    )


def _parent_for(oem_id: int, year: int, kind: ClaimKind) -> Claim | None:
    decided = _latest_decided(oem_id, year)
    if kind is ClaimKind.PRIMARY and decided is not None:
        raise Conflict(
            f"The claim for {year} was decided; file a supplementary claim for what came after.",
            fields={"kind": ["A decided claim exists for this year: use supplementary."]},
        )
    if kind is ClaimKind.SUPPLEMENTARY and decided is None:
        raise Conflict(
            f"There is no decided claim for {year} to supplement.",
            fields={"kind": ["A supplementary claim follows a decided claim."]},
        )
    return decided


def claim_create(user: User, data: dict[str, Any]) -> Claim:
    """An OEM buyer opens a draft claim for a year that has ended (Asia/Shanghai)."""
    org = require_active_org(user, OrgKind.OEM, "file subsidy claims")
    year, kind = data["year"], ClaimKind(data.get("kind", ClaimKind.PRIMARY.value))
    if year >= business_year():
        raise ValidationFailed(
            fields={
                "year": [
                    f"{year} has not ended yet (Asia/Shanghai): a claim is filed after 31 "
                    "December of its year."
                ]
            }
        )
    parent = _parent_for(org.id, year, kind)
    if db.session.scalar(
        select(Claim.id).where(
            Claim.oem_org_id == org.id, Claim.year == year, Claim.state.in_(OPEN_STATES)
        )
    ):
        raise _one_open_claim()
    claim = Claim(
        oem_org_id=org.id,
        year=year,
        kind=kind,
        parent_id=parent.id if parent else None,
        state=ClaimState.DRAFT,
        created_by_id=user.id,
        created_at=utcnow(),
    )
    try:
        db.session.add(claim)
        db.session.flush()
        move(claim, ClaimState.DRAFT, user, data.get("note"), created=True)
        commit()
    except IntegrityError:
        rollback()  # a concurrent filing took the (OEM, year) first
        raise _one_open_claim() from None
    return claim


def _checkpoint() -> Any:
    try:
        return checkpoint_now()
    except CheckpointError as exc:
        raise ServiceUnavailable(
            "The ledger checkpoint a claim refers to cannot be signed right now; nothing was "
            "submitted. Try again later."
        ) from exc


def _take_snapshot(claim: Claim) -> claim_figures.Snapshot:
    checkpoint = _checkpoint()
    parent = db.session.get(Claim, claim.parent_id) if claim.parent_id else None
    covered_after = (parent.checkpoint_size or 0) if parent else 0
    shot = claim_figures.snapshot(
        claim.oem_org_id, claim.year, checkpoint.size, covered_after=covered_after
    )
    if shot.held:
        raise ValidationFailed(
            fields={
                "year": [
                    f"The subsidy of {claim.year} is held until the baseline of "
                    f"{claim.year - 1} is declared; it cannot be claimed yet."
                ]
            }
        )
    if not shot.entry_seqs or shot.baseline is None or shot.rate is None:
        raise ValidationFailed(
            fields={"year": ["The ledger has no entries of this year for this claim to cover."]}
        )
    claim.checkpoint_root = checkpoint.root_hash
    return shot


def _earlier_lines(claim: Claim) -> set[int]:
    members = select(Claim.id).where(
        Claim.oem_org_id == claim.oem_org_id, Claim.year == claim.year, Claim.id != claim.id
    )
    return set(
        db.session.scalars(select(ClaimLine.purchase_id).where(ClaimLine.claim_id.in_(members)))
    )


def _store_snapshot(claim: Claim, shot: claim_figures.Snapshot) -> None:
    claim.checkpoint_size = shot.size
    claim.covered_after = shot.covered_after
    claim.entry_seqs = shot.entry_seqs
    claim.policy_version, claim.rate, claim.annual_cap = (
        shot.policy_version,
        shot.rate,
        shot.annual_cap,
    )
    claim.near_shore_total, claim.baseline = shot.near_shore_total, shot.baseline
    claim.baseline_source, claim.held = shot.baseline_source, shot.held
    claim.increment, claim.subsidy = shot.increment, shot.subsidy
    parent = db.session.get(Claim, claim.parent_id) if claim.parent_id else None
    claim.claimed_amount = money(shot.subsidy - ((parent.subsidy or ZERO) if parent else 0))
    earlier = _earlier_lines(claim)
    db.session.add_all(
        ClaimLine(
            claim_id=claim.id,
            purchase_id=line.purchase_id,
            record_seq=line.record_seq,
            amount=line.amount,
        )
        for line in shot.lines
        if line.purchase_id not in earlier
    )


def claim_submit(user: User, claim_id: int, reason: str | None) -> Claim:
    """The OEM submits its draft: the figures and lines are frozen, covered by a checkpoint."""
    claim = find_claim(user, claim_id, lock=True)
    require_active_org(user, OrgKind.OEM, "submit subsidy claims")
    require_state(claim, "submit")
    shot = _take_snapshot(claim)
    _store_snapshot(claim, shot)
    claim.submitted_at = utcnow()
    move(
        claim,
        ClaimState.SUBMITTED,
        user,
        reason,
        details={"checkpoint_size": shot.size, "claimed_amount": str(claim.claimed_amount)},
    )
    commit()
    return claim


# --- review --------------------------------------------------------------------------------------


def claim_review(user: User, claim_id: int, reason: str | None) -> Claim:
    """An auditor takes a submitted claim into review, or takes back one waiting for evidence."""
    claim = find_claim(user, claim_id, lock=True)
    require_state(claim, "review")
    if claim.state is ClaimState.EVIDENCE_REQUESTED and not reason:
        raise ValidationFailed(
            fields={"reason": ["Say why the claim is reviewed without the evidence requested."]}
        )
    move(claim, ClaimState.UNDER_REVIEW, user, reason)
    commit()
    return claim


def line_ids(claim: Claim) -> set[int]:
    return set(
        db.session.scalars(select(ClaimLine.purchase_id).where(ClaimLine.claim_id == claim.id))
    )


def _not_in_claim(field: str, missing: Sequence[int]) -> ValidationFailed:
    listed = ", ".join(str(i) for i in sorted(missing)[:20])
    return ValidationFailed(
        fields={field: [f"Not purchases of this claim: {listed}."]},
    )


def claim_request_evidence(user: User, claim_id: int, data: dict[str, Any]) -> Claim:
    """An auditor asks the OEM for documents of named purchases of the claim."""
    claim = find_claim(user, claim_id, lock=True)
    require_state(claim, "request evidence for")
    purchase_ids = sorted(set(data["purchase_ids"]))
    missing = set(purchase_ids) - line_ids(claim)
    if missing:
        raise _not_in_claim("purchase_ids", sorted(missing))
    kinds = sorted(set(data["kinds"]))
    request = EvidenceRequest(
        claim_id=claim.id,
        purchase_ids=purchase_ids,
        kinds=kinds,
        note=data.get("note"),
        requested_by_id=user.id,
        requested_at=utcnow(),
    )
    db.session.add(request)
    db.session.flush()
    move(
        claim,
        ClaimState.EVIDENCE_REQUESTED,
        user,
        data.get("note"),
        event=EventKind.CLAIM_EVIDENCE_REQUESTED,
        details={"request_id": request.id, "purchase_ids": purchase_ids, "kinds": kinds},
    )
    commit()
    return claim


# --- decisions -----------------------------------------------------------------------------------


def _checked_decisions(claim: Claim, items: list[dict[str, Any]]) -> dict[int, ClaimLine]:
    """The lines the decisions name, all checked before any changes (422 on the first bad)."""
    lines = {
        line.purchase_id: line
        for line in db.session.scalars(select(ClaimLine).where(ClaimLine.claim_id == claim.id))
    }
    seen: set[int] = set()
    for index, item in enumerate(items):
        purchase_id = item["purchase_id"]
        if purchase_id not in lines:
            raise ValidationFailed(
                fields={f"decisions.{index}.purchase_id": ["Not a purchase of this claim."]}
            )
        if purchase_id in seen:
            raise ValidationFailed(
                fields={f"decisions.{index}.purchase_id": ["Named twice in this request."]}
            )
        seen.add(purchase_id)
    return lines


def claim_decide_lines(user: User, claim_id: int, items: list[dict[str, Any]]) -> Claim:
    """An auditor approves or rejects (with a reason) purchases of a claim under review."""
    claim = find_claim(user, claim_id, lock=True)
    require_state(claim, "decide purchases of")
    lines = _checked_decisions(claim, items)
    now = utcnow()
    for item in items:
        line = lines[item["purchase_id"]]
        line.decision = LineDecision(item["decision"])
        line.reason = item.get("reason")
        line.decided_by_id, line.decided_at = user.id, now
    audit(
        "claim.purchases_decided",
        f"claim:{claim.id}",
        {"decisions": [[i["purchase_id"], i["decision"]] for i in items]},
        organization_id=claim.oem_org_id,
    )
    commit()
    return claim


def _outcome(claim: Claim) -> ClaimState:
    decisions = list(
        db.session.scalars(select(ClaimLine.decision).where(ClaimLine.claim_id == claim.id))
    )
    pending = [d for d in decisions if d is LineDecision.PENDING]
    if pending:
        raise Conflict(
            f"{len(pending)} purchase(s) of this claim are undecided: decide every purchase "
            "(POST .../decisions) before approving the claim."
        )
    rejected = [d for d in decisions if d is LineDecision.REJECTED]
    if not rejected:
        return ClaimState.APPROVED
    return ClaimState.REJECTED if len(rejected) == len(decisions) else ClaimState.PARTIALLY_APPROVED


def _reject_every_line(claim: Claim, user: User, reason: str) -> None:
    now = utcnow()
    for line in db.session.scalars(select(ClaimLine).where(ClaimLine.claim_id == claim.id)):
        if line.decision is not LineDecision.REJECTED:
            line.decision, line.reason = LineDecision.REJECTED, f"Claim rejected: {reason}"[:500]
            line.decided_by_id, line.decided_at = user.id, now


def claim_decide(user: User, claim_id: int, decision: str, reason: str) -> Claim:
    """An auditor decides the claim: approve (every purchase decided; partially if some were
    rejected) or reject it whole. The approved amount follows from the decisions."""
    claim = find_claim(user, claim_id, lock=True)
    require_state(claim, "decide")
    if decision == "reject":
        _reject_every_line(claim, user, reason)
        db.session.flush()
        outcome, amount = ClaimState.REJECTED, ZERO
    else:
        outcome = _outcome(claim)
        total = claim_figures.family_approved_total(claim)
        amount = money(total - claim_figures.approved_before(claim))
        if outcome is ClaimState.REJECTED:
            amount = ZERO
    claim.approved_amount = amount
    claim.decided_at = utcnow()
    move(claim, outcome, user, reason, details={"approved_amount": str(amount)})
    commit()
    return claim


# --- reading -------------------------------------------------------------------------------------


def claim_list(user: User, query: dict[str, Any]) -> Page:
    """The claims ``user`` may see, filtered, sorted and paginated."""
    stmt: Select[Any] = select(Claim).where(visible_claims(user))
    if "year" in query:
        stmt = stmt.where(Claim.year == query["year"])
    if "oem" in query:
        stmt = stmt.where(Claim.oem_org_id == query["oem"])
    if "state" in query:
        stmt = stmt.where(Claim.state == ClaimState(query["state"]))
    if "kind" in query:
        stmt = stmt.where(Claim.kind == ClaimKind(query["kind"]))
    stmt = stmt.order_by(*order_by(query["sort"], _SORT_COLUMNS, Claim.id))
    return paginate(stmt, query["page"], query["per_page"])
