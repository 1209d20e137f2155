"""The figures of a claim, read from the ledger entries a signed checkpoint covers.

Everything here is a pure read of ``ledger_entries`` (the record), never of the running totals:
an auditor can redo each figure from the entries the claim lists.

- :func:`snapshot` — at submission: T, B, I*, S*, held, the policy's rate and cap of (OEM, year)
  as the first ``size`` entries leave them, the entries in the claim's range and the near-shore
  purchases they count (the claim's lines).
- :func:`family_approved_total` — the rule of DESIGN.md evaluated without the rejected
  purchases: min(cap, round_half_up(max(0, T_approved − B) × rate, 0.01)).
- :func:`delta_since` — the entries of (OEM, year) appended after a claim's checkpoint, which a
  supplementary claim can take up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, case, func, select

from market.database import CENT
from market.extensions import db
from market.ledger import load_policy_terms
from market.ledger.rules import ZERO, money
from market.models import Claim, ClaimLine, ClaimState, EntryKind, LedgerEntry, LineDecision


@dataclass(frozen=True)
class Line:
    purchase_id: int
    record_seq: int
    amount: Decimal


@dataclass
class Snapshot:
    """(OEM, year) as the first ``size`` entries of the ledger leave it."""

    size: int
    covered_after: int
    entry_seqs: list[int]
    near_shore_total: Decimal
    baseline: Decimal | None
    baseline_source: str | None
    held: bool
    increment: Decimal
    subsidy: Decimal
    policy_version: int | None
    rate: Decimal | None
    annual_cap: Decimal | None
    lines: list[Line] = field(default_factory=list)


def _year_entries(oem: int, year: int, after: int, upto: int) -> Select[Any]:
    return select(LedgerEntry).where(
        LedgerEntry.oem_org_id == oem,
        LedgerEntry.year == year,
        LedgerEntry.seq > after,
        LedgerEntry.seq <= upto,
    )


def _sums(oem: int, year: int, upto: int) -> Any:
    near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=ZERO))
    return db.session.execute(
        select(
            near.label("near"),
            func.sum(LedgerEntry.increment).label("increment"),
            func.sum(LedgerEntry.subsidy).label("subsidy"),
        ).where(LedgerEntry.oem_org_id == oem, LedgerEntry.year == year, LedgerEntry.seq <= upto)
    ).one()


def _counted_lines(oem: int, year: int, upto: int) -> list[Line]:
    """The near-shore purchases of (oem, year) counted at ``upto`` (records less reversals)."""
    rows = db.session.execute(
        select(
            LedgerEntry.purchase_id,
            func.sum(LedgerEntry.amount).label("amount"),
            func.max(case((LedgerEntry.kind == EntryKind.RECORD, LedgerEntry.seq))).label("seq"),
        )
        .where(
            LedgerEntry.oem_org_id == oem,
            LedgerEntry.year == year,
            LedgerEntry.seq <= upto,
            LedgerEntry.purchase_id.is_not(None),
            LedgerEntry.near_shore.is_(True),
        )
        .group_by(LedgerEntry.purchase_id)
        .order_by(LedgerEntry.purchase_id)
    )
    return [
        Line(row.purchase_id, row.seq, money(row.amount)) for row in rows if money(row.amount) > 0
    ]


def snapshot(oem: int, year: int, size: int, *, covered_after: int = 0) -> Snapshot:
    """The claim's figures at checkpoint ``size``; its range is (covered_after, size]."""
    last = db.session.scalar(
        _year_entries(oem, year, 0, size).order_by(LedgerEntry.seq.desc()).limit(1)
    )
    seqs = list(
        db.session.scalars(
            _year_entries(oem, year, covered_after, size)
            .with_only_columns(LedgerEntry.seq)
            .order_by(LedgerEntry.seq)
        )
    )
    sums = _sums(oem, year, size)
    terms = _terms(last.policy_version) if last is not None else None
    return Snapshot(
        size=size,
        covered_after=covered_after,
        entry_seqs=seqs,
        near_shore_total=money(sums.near or ZERO),
        baseline=money(last.baseline) if last is not None and last.baseline is not None else None,
        baseline_source=last.baseline_source if last is not None else None,
        held=bool(last.held) if last is not None else False,
        increment=money(sums.increment or ZERO),
        subsidy=money(sums.subsidy or ZERO),
        policy_version=last.policy_version if last is not None else None,
        rate=terms[0] if terms else None,
        annual_cap=terms[1] if terms else None,
        lines=_counted_lines(oem, year, size),
    )


def _terms(version: int) -> tuple[Decimal, Decimal] | None:
    for terms in load_policy_terms():
        if terms.version == version:
            return terms.rate, terms.annual_cap
    return None


def subsidy_of(total: Decimal, baseline: Decimal, rate: Decimal, cap: Decimal) -> Decimal:
    """min(cap, round_half_up(max(0, total − baseline) × rate, 0.01))."""
    increment = max(ZERO, total - baseline)
    return money(min(cap, (increment * rate).quantize(CENT, ROUND_HALF_UP)))


def family(claim: Claim) -> list[Claim]:
    """The claims of the same (OEM, year) filed up to ``claim`` (the primary first)."""
    return list(
        db.session.scalars(
            select(Claim)
            .where(
                Claim.oem_org_id == claim.oem_org_id,
                Claim.year == claim.year,
                Claim.id <= claim.id,
                Claim.checkpoint_size.is_not(None),
            )
            .order_by(Claim.id)
        )
    )


def rejected_contribution(claim: Claim, purchase_ids: Iterable[int]) -> Decimal:
    """What the rejected purchases add to T at the claim's checkpoint."""
    ids = sorted(set(purchase_ids))
    if not ids:
        return ZERO
    total = db.session.scalar(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.oem_org_id == claim.oem_org_id,
            LedgerEntry.year == claim.year,
            LedgerEntry.seq <= claim.checkpoint_size,
            LedgerEntry.near_shore.is_(True),
            LedgerEntry.purchase_id.in_(ids),
        )
    )
    return money(total or ZERO)


def family_approved_total(claim: Claim, *, reject_all: bool = False) -> Decimal:
    """The subsidy of (OEM, year) at this claim's checkpoint without every purchase rejected
    in this claim or an earlier one of the year (``reject_all``: this claim's lines too)."""
    members = [c.id for c in family(claim)]
    query = select(ClaimLine.purchase_id).where(ClaimLine.claim_id.in_(members))
    if reject_all:
        query = query.where(
            (ClaimLine.decision == LineDecision.REJECTED) | (ClaimLine.claim_id == claim.id)
        )
    else:
        query = query.where(ClaimLine.decision == LineDecision.REJECTED)
    rejected = rejected_contribution(claim, db.session.scalars(query))
    assert claim.near_shore_total is not None and claim.baseline is not None
    assert claim.rate is not None and claim.annual_cap is not None
    approved_total = claim.near_shore_total - rejected
    return subsidy_of(approved_total, claim.baseline, claim.rate, claim.annual_cap)


def approved_before(claim: Claim) -> Decimal:
    """What the earlier decided claims of the same (OEM, year) approved."""
    decided = [
        c.approved_amount or ZERO
        for c in family(claim)
        if c.id != claim.id and c.state in (ClaimState.APPROVED, ClaimState.PARTIALLY_APPROVED)
    ]
    return money(sum(decided, ZERO))


def delta_since(claim: Claim) -> dict[str, Any] | None:
    """The entries of (OEM, year) appended after the claim's checkpoint: their seqs and what
    they change (None before the claim is submitted)."""
    if claim.checkpoint_size is None:
        return None
    entries = list(
        db.session.scalars(
            select(LedgerEntry)
            .where(
                LedgerEntry.oem_org_id == claim.oem_org_id,
                LedgerEntry.year == claim.year,
                LedgerEntry.seq > claim.checkpoint_size,
            )
            .order_by(LedgerEntry.seq)
        )
    )
    near = sum((e.amount for e in entries if e.near_shore), ZERO)
    return {
        "since_size": claim.checkpoint_size,
        "entries": len(entries),
        "entry_seqs": [e.seq for e in entries][:1000],
        "purchase_ids": sorted({e.purchase_id for e in entries if e.purchase_id is not None}),
        "near_shore_total_change": money(near),
        "increment_change": money(sum((e.increment for e in entries), ZERO)),
        "subsidy_change": money(sum((e.subsidy for e in entries), ZERO)),
    }
