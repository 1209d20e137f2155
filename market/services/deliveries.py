"""Delivery records on purchases and the supplier scorecard they feed.

The buyer of a purchase records how it arrived: the promised and the delivered date, the
accepted and the rejected quantity. The supplier sees its purchases' records; auditors (their
jurisdiction) and admins see them all. Records are append-only (a correction is another record).

**The scorecard window** (after Xometry's partner rating: 90 days or 10 jobs). With today the
business date in Asia/Shanghai, the *recent* deliveries are those delivered in the 90 days up to
today (``delivered_on > today − 90 days``). The window is the recent deliveries if there are at
least 10 of them; otherwise the 10 latest deliveries (by delivered date, then record id), which
contain every recent one. So a supplier is judged on at least 10 deliveries when it has them, and
on every delivery of the last 90 days when there are more.

- on-time rate = deliveries with ``delivered_on ≤ promised_on`` / deliveries in the window;
- quality rate = Σ accepted / Σ (accepted + rejected) over the window;
- no delivery: both are "no data" (null with a reason), never 100 % or 0 %.

**The ranking factor** f_p = 0.5 + 0.25 × on-time rate + 0.25 × quality rate (exact fractions,
rounded half-up to 4 decimals, stored in basis points on the supplier): from 0.5 (never on time,
everything rejected) to 1.0. Recording a delivery recomputes it and, when it changed, bumps the
supplier's version and commits a ``search.sync`` outbox row, so the index follows through the
usual path. The window moves with the calendar: :func:`refresh_performance_job` (a periodic job
of ``workers.scheduler``) recomputes every supplier's score between deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import select

from market.clock import business_today
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import check_id
from market.models import (
    Delivery,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxTopic,
    Purchase,
    PurchaseStatus,
    Role,
    User,
)
from market.permissions import (
    auditor_city_prefixes,
    city_in_jurisdiction,
    require_active_org,
)
from market.services.purchases import visible_purchases
from market.services.unit_of_work import commit, emit
from search import spec

WINDOW_DAYS = 90
WINDOW_DELIVERIES = 10
RATE = Decimal("0.0001")
NO_DELIVERIES = "no deliveries recorded"


def _purchase(user: User, purchase_id: int) -> Purchase:
    check_id(purchase_id, "Purchase")
    purchase = db.session.scalar(
        select(Purchase).where(Purchase.id == purchase_id, visible_purchases(user))
    )
    if purchase is None:
        raise NotFound("Purchase not found.")
    return purchase


def _check_dates(purchase: Purchase, data: dict[str, Any]) -> None:
    today = business_today()
    errors: dict[str, list[str]] = {}
    for name in ("promised_on", "delivered_on"):
        if data[name] < purchase.purchased_on:
            errors[name] = ["Must be on or after the purchase date."]
    if data["delivered_on"] > today and "delivered_on" not in errors:
        errors["delivered_on"] = ["Must not be in the future (Asia/Shanghai)."]
    if data["accepted_qty"] + data["rejected_qty"] <= 0:
        errors["accepted_qty"] = ["accepted_qty + rejected_qty must be more than 0."]
    if errors:
        raise ValidationFailed(fields=errors)


def delivery_record(user: User, purchase_id: int, data: dict[str, Any]) -> Delivery:
    """The buyer of a confirmed purchase records a delivery; the supplier's score follows."""
    if user.role is not Role.BUYER:
        raise Forbidden("Only the buyer of a purchase records its deliveries.")
    org = require_active_org(user, OrgKind.OEM, "record deliveries")
    purchase = _purchase(user, purchase_id)
    if purchase.oem_org_id != org.id:
        raise NotFound("Purchase not found.")
    if purchase.status is not PurchaseStatus.CONFIRMED:
        raise Conflict("Only confirmed purchases take delivery records.")
    _check_dates(purchase, data)
    delivery = Delivery(
        purchase_id=purchase.id,
        supplier_org_id=purchase.supplier_org_id,
        promised_on=data["promised_on"],
        delivered_on=data["delivered_on"],
        accepted_qty=data["accepted_qty"],
        rejected_qty=data["rejected_qty"],
        note=data.get("note"),
        recorded_by_id=user.id,
    )
    db.session.add(delivery)
    db.session.flush()
    update_performance(purchase.supplier_org_id)
    commit()
    return delivery


def delivery_list(user: User, purchase_id: int) -> list[Delivery]:
    """A purchase's deliveries, oldest record first (whoever may see the purchase)."""
    purchase = _purchase(user, purchase_id)
    return list(
        db.session.scalars(
            select(Delivery).where(Delivery.purchase_id == purchase.id).order_by(Delivery.id)
        )
    )


# --- the scorecard ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The deliveries a scorecard is computed over, and why those."""

    rule: str  # "last_90_days" or "last_10_deliveries"
    deliveries: list[Delivery]

    @property
    def on_time(self) -> int:
        return sum(1 for d in self.deliveries if d.delivered_on <= d.promised_on)

    @property
    def accepted(self) -> int:
        return sum(d.accepted_qty for d in self.deliveries)

    @property
    def rejected(self) -> int:
        return sum(d.rejected_qty for d in self.deliveries)

    def rates(self) -> tuple[Fraction, Fraction] | None:
        """(on-time, quality) as exact fractions; None without deliveries."""
        if not self.deliveries:
            return None
        quality = Fraction(self.accepted, self.accepted + self.rejected)
        return Fraction(self.on_time, len(self.deliveries)), quality


def window(supplier_org_id: int, today: date | None = None) -> Window:
    """The last 90 days' deliveries if at least 10, else the 10 latest (see the module doc)."""
    today = today or business_today()
    since = today - timedelta(days=WINDOW_DAYS)
    base = select(Delivery).where(
        Delivery.supplier_org_id == supplier_org_id, Delivery.delivered_on <= today
    )
    newest_first = (Delivery.delivered_on.desc(), Delivery.id.desc())
    recent = list(
        db.session.scalars(base.where(Delivery.delivered_on > since).order_by(*newest_first))
    )
    if len(recent) >= WINDOW_DELIVERIES:
        return Window("last_90_days", recent)
    latest = list(db.session.scalars(base.order_by(*newest_first).limit(WINDOW_DELIVERIES)))
    return Window("last_10_deliveries", latest)


def _decimal(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        RATE, rounding=ROUND_HALF_UP
    )


def performance_bp(rates: tuple[Fraction, Fraction] | None) -> int | None:
    """f_p in basis points: 5000 + 2500 × on-time + 2500 × quality, rounded half-up."""
    if rates is None:
        return None
    exact = 5000 + 2500 * rates[0] + 2500 * rates[1]
    value = Decimal(exact.numerator) / Decimal(exact.denominator)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def update_performance(supplier_org_id: int, today: date | None = None) -> bool:
    """Recompute a supplier's stored score; on a change, a new version and a search sync."""
    org = db.session.scalars(
        select(Organization).where(Organization.id == supplier_org_id).with_for_update()
    ).one()
    score = performance_bp(window(supplier_org_id, today).rates())
    if score == org.performance_bp:
        return False
    org.performance_bp = score
    org.bump_version()
    db.session.flush()
    emit(OutboxTopic.SEARCH_SYNC, org.id, {"version": org.version})
    return True


def refresh_performance_scores(today: date | None = None) -> int:
    """Recompute every supplier with deliveries (the window moves with the calendar); commits.
    Returns how many scores changed."""
    ids = db.session.scalars(select(Delivery.supplier_org_id).distinct()).all()
    changed = sum(1 for org_id in sorted(ids) if update_performance(org_id, today))
    commit()
    return changed


def refresh_performance_job() -> dict[str, int]:
    """RQ job (periodic, workers.scheduler): :func:`refresh_performance_scores` as of today."""
    return {"changed": refresh_performance_scores()}


def _scorecard_supplier(user: User, org_id: int) -> Organization:
    """Who sees a scorecard: the supplier itself, buyers of active OEMs (a buying aid, as the
    ranking factor is), auditors of the supplier's city, admins. 404 for anyone else."""
    check_id(org_id, "Supplier")
    org = db.session.get(Organization, org_id)
    if org is None or org.kind is not OrgKind.SUPPLIER:
        raise NotFound("Supplier not found.")
    if user.role is Role.ADMIN or user.organization_id == org.id:
        return org
    if user.role is Role.AUDITOR and city_in_jurisdiction(
        org.city_code, auditor_city_prefixes(user)
    ):
        return org
    if user.role is Role.BUYER and org.status is OrgStatus.ACTIVE:
        require_active_org(user, OrgKind.OEM, "read supplier scorecards")
        return org
    raise NotFound("Supplier not found.")


def _rate(value: Fraction | None, reason: str, **counts: int) -> dict[str, Any]:
    return {
        "value": None if value is None else _decimal(value),
        "reason": reason if value is None else None,
        **counts,
    }


def scorecard(user: User, org_id: int) -> dict[str, Any]:
    """On-time and quality rates over the window, the stored ranking factor, the window."""
    org = _scorecard_supplier(user, org_id)
    today = business_today()
    chosen = window(org.id, today)
    rates = chosen.rates()
    dates = [d.delivered_on for d in chosen.deliveries]
    stored = org.performance_bp
    return {
        "supplier_org_id": org.id,
        "supplier_name": org.legal_name,
        "as_of": today,
        "window": {
            "rule": chosen.rule,
            "deliveries": len(chosen.deliveries),
            "first_delivered_on": min(dates) if dates else None,
            "last_delivered_on": max(dates) if dates else None,
        },
        "on_time_rate": _rate(
            rates and rates[0],
            NO_DELIVERIES,
            on_time=chosen.on_time,
            deliveries=len(chosen.deliveries),
        ),
        "quality_rate": _rate(
            rates and rates[1],
            NO_DELIVERIES,
            accepted=chosen.accepted,
            rejected=chosen.rejected,
        ),
        "performance_score": None if stored is None else (Decimal(stored) / 10_000).quantize(RATE),
        "ranking_factor": (
            Decimal(stored) / 10_000
            if stored is not None
            else Decimal(str(spec.NEUTRAL_PERFORMANCE))
        ).quantize(RATE),
    }
