"""Subsidy policy versions and declared baselines: the admin use cases.

A policy is never edited: a change of rules is a new version with its own effective date range.
The version in force on a day is the highest version whose range covers that day. A new version
may not start on or before a day the ledger has already recorded (no retroactive rules), so
every entry keeps agreeing with "the policy in force on its purchase date".

Version 1 (the programme's published terms) is seeded by migration ``0005_ledger``; the ledger
worker seeds it again under its lock if the table is ever found empty (a wiped database), so a
recorded entry always names a policy row that exists.

A declared baseline is an OEM's near-shore purchasing total of a year the platform did not see
(fully). It is used as the baseline of the following year *in preference to* the ledger's own
total for that year (an OEM that joins in October would otherwise get a tiny baseline and an
inflated "increment"). It can be corrected until the ledger has used it, never afterwards.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select

from market.errors import Conflict, Forbidden, ValidationFailed
from market.extensions import db
from market.models import (
    DeclaredBaseline,
    LedgerEntry,
    Organization,
    OrgKind,
    Role,
    SubsidyPolicy,
    User,
)
from market.services.ledger import acquire_ledger_lock
from market.services.unit_of_work import commit


def _require_admin(by: User | None) -> None:
    """``by=None`` is the operator at the console (the CLI); over HTTP it is the caller."""
    if by is not None and by.role is not Role.ADMIN:
        raise Forbidden()


def policy_list() -> list[SubsidyPolicy]:
    """Every policy version, oldest first."""
    return list(db.session.scalars(select(SubsidyPolicy).order_by(SubsidyPolicy.version)))


def policy_add(data: dict[str, Any], *, by: User | None) -> SubsidyPolicy:
    """Add the next policy version (admins only); it applies from ``effective_from`` on."""
    _require_admin(by)
    # Under the ledger lock: no entry can be appended between the check and the commit.
    acquire_ledger_lock()
    effective_from: date = data["effective_from"]
    effective_until: date | None = data.get("effective_until")
    if effective_until is not None and effective_until < effective_from:
        raise ValidationFailed(fields={"effective_until": ["Must be on or after effective_from."]})
    last_recorded = db.session.scalar(select(func.max(LedgerEntry.purchased_on)))
    if last_recorded is not None and effective_from <= last_recorded:
        raise ValidationFailed(
            fields={
                "effective_from": [
                    "Must be after the last purchase date already in the ledger "
                    f"({last_recorded.isoformat()}): policies never apply retroactively."
                ]
            }
        )
    version = (db.session.scalar(select(func.max(SubsidyPolicy.version))) or 0) + 1
    policy = SubsidyPolicy(
        version=version,
        effective_from=effective_from,
        effective_until=effective_until,
        province_prefix=data["province_prefix"],
        max_distance_km=data["max_distance_km"],
        rate=data["rate"],
        annual_cap=data["annual_cap"],
        note=data.get("note"),
    )
    db.session.add(policy)
    commit()
    return policy


def baseline_list(*, oem_org_id: int | None = None, year: int | None = None) -> list[Any]:
    """Declared baselines, by OEM then year."""
    query = select(DeclaredBaseline).order_by(DeclaredBaseline.oem_org_id, DeclaredBaseline.year)
    if oem_org_id is not None:
        query = query.where(DeclaredBaseline.oem_org_id == oem_org_id)
    if year is not None:
        query = query.where(DeclaredBaseline.year == year)
    return list(db.session.scalars(query))


def baseline_declare(data: dict[str, Any], *, by: User | None) -> DeclaredBaseline:
    """Declare (or, until the ledger has used it, correct) an OEM's near-shore total of a year."""
    _require_admin(by)
    # Under the ledger lock: no entry can use the old baseline between the check and the commit.
    acquire_ledger_lock()
    oem_org_id: int = data["oem_org_id"]
    year: int = data["year"]
    oem = db.session.get(Organization, oem_org_id)
    if oem is None or oem.kind is not OrgKind.OEM:
        raise ValidationFailed(fields={"oem_org_id": ["No OEM organization has this id."]})
    if year >= datetime.now(UTC).year:
        raise ValidationFailed(
            fields={"year": ["Only a past year's total can be declared as a baseline."]}
        )
    used = db.session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.oem_org_id == oem_org_id, LedgerEntry.year == year + 1)
    )
    if used:
        raise Conflict(
            f"The ledger already computed {year + 1} increments for this OEM against its "
            f"{year} baseline; a baseline the ledger has used cannot change."
        )
    baseline = db.session.scalar(
        select(DeclaredBaseline).where(
            DeclaredBaseline.oem_org_id == oem_org_id, DeclaredBaseline.year == year
        )
    )
    if baseline is None:
        baseline = DeclaredBaseline(oem_org_id=oem_org_id, year=year, amount=data["amount"])
        db.session.add(baseline)
    baseline.amount = data["amount"]
    baseline.note = data.get("note")
    baseline.declared_by_id = by.id if by is not None else None
    baseline.created_at = datetime.now(UTC)
    commit()
    return baseline
