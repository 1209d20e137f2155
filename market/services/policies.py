"""Subsidy policy versions and declared baselines: the admin use cases.

A policy is never edited: a change of rules is a new version. A version starts on 1 January of
a year that has not begun yet and, if it ends, ends on 31 December, so it governs whole years
and never applies retroactively (DESIGN.md v2); the version governing a year is the highest one
covering all of it (``market.ledger.policy``).

Version 1 (the programme's published terms) is seeded by migration ``0005_ledger``; the ledger
worker seeds it again under its lock if the table is ever found empty (a wiped database), so a
recorded entry always names a policy row that exists.

A declared baseline is an OEM's near-shore purchasing total of a year the platform did not see
in full. It is B of the following year *in preference to* the platform's own total. It may be
declared at any time after the year ended, and corrected: either way an outbox row asks the
ledger to settle the following year, which appends an ``adjustment`` entry carrying the change
(the entries before it, and the baselines they used, stay as they were).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select

from market.clock import business_year, utcnow
from market.errors import Forbidden, ValidationFailed
from market.extensions import db
from market.ledger import acquire_ledger_lock
from market.ledger.policy import forget_policy_terms
from market.models import (
    DeclaredBaseline,
    Organization,
    OrgKind,
    OutboxTopic,
    Role,
    SubsidyPolicy,
    User,
)
from market.services.unit_of_work import commit, emit


def _require_admin(by: User | None) -> None:
    """``by=None`` is the operator at the console (the CLI); over HTTP it is the caller."""
    if by is not None and by.role is not Role.ADMIN:
        raise Forbidden()


def policy_list() -> list[SubsidyPolicy]:
    """Every policy version, oldest first."""
    return list(db.session.scalars(select(SubsidyPolicy).order_by(SubsidyPolicy.version)))


def policy_add(data: dict[str, Any], *, by: User | None) -> SubsidyPolicy:
    """Add the next policy version (admins only): from 1 January of a year not begun yet."""
    _require_admin(by)
    effective_from: date = data["effective_from"]
    effective_until: date | None = data.get("effective_until")
    errors: dict[str, list[str]] = {}
    if (effective_from.month, effective_from.day) != (1, 1):
        errors["effective_from"] = ["A policy version starts on 1 January (whole years)."]
    elif effective_from.year <= business_year():
        errors["effective_from"] = [
            f"Must be 1 January of a year after {business_year()}: "
            "policies never apply retroactively nor change a year under way."
        ]
    if effective_until is not None and effective_until < effective_from:
        errors["effective_until"] = ["Must be on or after effective_from."]
    elif effective_until is not None and (effective_until.month, effective_until.day) != (12, 31):
        errors["effective_until"] = ["A policy version ends on 31 December (whole years)."]
    if errors:
        raise ValidationFailed(fields=errors)
    # Under the ledger lock, like every write the ledger reads.
    acquire_ledger_lock()
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
    forget_policy_terms()  # other processes see the new fingerprint on their next read
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
    """Declare (or correct) an OEM's near-shore total of a past year; the ledger then settles
    the following year with an adjustment entry."""
    _require_admin(by)
    oem_org_id: int = data["oem_org_id"]
    year: int = data["year"]
    oem = db.session.get(Organization, oem_org_id)
    if oem is None or oem.kind is not OrgKind.OEM:
        raise ValidationFailed(fields={"oem_org_id": ["No OEM organization has this id."]})
    if year >= business_year():
        raise ValidationFailed(
            fields={"year": ["Only a year that has ended can be declared as a baseline."]}
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
    baseline.created_at = utcnow()
    db.session.flush()
    emit(
        OutboxTopic.LEDGER_REBASE,
        baseline.id,
        {"oem_org_id": oem_org_id, "year": year + 1},
    )
    commit()
    return baseline
