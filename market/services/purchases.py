"""Purchases: from an awarded quote, or recorded by a buyer for an off-platform purchase.

A purchase is immutable once recorded; cancelling is its own action. Each recorded purchase and
each cancellation commits an outbox row (``ledger.record`` / ``ledger.reverse``) in the same
transaction, so the ledger worker counts it exactly once.

Who sees a purchase: the buying organization's users, the supplier's users, auditors and admins.

Responses show more than the row (:class:`PurchaseView`): a new purchase carries the subsidy
preview (``market.services.subsidy``), computed before the commit, so it is the ledger as it
stood without this purchase and is stored as such with an ``Idempotency-Key``'s response; one
purchase carries its ledger status and entries; a list item the compact status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from market.errors import Conflict, NotFound, ValidationFailed
from market.extensions import db
from market.models import (
    EntryKind,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseSource,
    PurchaseStatus,
    Role,
    Site,
    User,
)
from market.schemas.marketplace import PurchaseRecordedSchema
from market.services import idempotency, ledger
from market.services.demands import check_id, now, order_by, require_active_org
from market.services.pagination import Page, paginate
from market.services.subsidy import SubsidyPreview, preview_for_purchase
from market.services.unit_of_work import commit, emit, rollback

RECORD_ENDPOINT = "POST /api/v1/purchases"
_SORT_COLUMNS: Mapping[str, Any] = {
    "id": Purchase.id,
    "purchased_on": Purchase.purchased_on,
    "amount": Purchase.amount,
}


@dataclass(frozen=True)
class PurchaseView:
    """A purchase and what its response shows beside it (the ``Purchase*Schema`` variants)."""

    purchase: Purchase
    ledger_status: str | None = None
    ledger: dict[str, Any] | None = None
    subsidy_preview: SubsidyPreview | None = None


def duplicate_invoice() -> Conflict:
    return Conflict(
        "This supplier's invoice is already recorded as a purchase.",
        fields={"invoice_number": ["Already recorded for this supplier."]},
    )


def invoice_taken(supplier_org_id: int, invoice_number: str) -> bool:
    return (
        db.session.scalar(
            select(Purchase.id).where(
                Purchase.supplier_org_id == supplier_org_id,
                Purchase.invoice_number == invoice_number,
            )
        )
        is not None
    )


def add_purchase(
    *,
    oem_org_id: int,
    supplier_org_id: int,
    supplier_site_id: int,
    plant_id: int,
    category: str,
    amount: Decimal,
    purchased_on: date,
    invoice_number: str,
    po_number: str | None,
    source: PurchaseSource,
    created_by: User,
    quote_id: int | None = None,
) -> Purchase:
    """Add a purchase and its ledger outbox row to the current transaction (no commit)."""
    purchase = Purchase(
        oem_org_id=oem_org_id,
        supplier_org_id=supplier_org_id,
        supplier_site_id=supplier_site_id,
        plant_id=plant_id,
        category=category,
        amount=amount,
        purchased_on=purchased_on,
        invoice_number=invoice_number,
        po_number=po_number,
        source=source,
        quote_id=quote_id,
        status=PurchaseStatus.RECORDED,
        created_by_id=created_by.id,
    )
    db.session.add(purchase)
    db.session.flush()  # the id is the outbox row's aggregate id
    emit(OutboxTopic.LEDGER_RECORD, purchase.id)
    return purchase


def with_subsidy_preview(purchase: Purchase) -> PurchaseView:
    """The response of a new purchase: call it after :func:`add_purchase`, before the commit
    (after it, the inline ledger worker may already have counted the purchase itself)."""
    return PurchaseView(purchase, subsidy_preview=preview_for_purchase(purchase))


def ledger_statuses(purchase_ids: Sequence[int]) -> dict[int, str]:
    """The compact ``ledger.ledger_status`` (``pending | failed | recorded | reversed``) of
    many purchases, in one query: a page of a list costs one query, not one per purchase."""
    if not purchase_ids:
        return {}

    def has_entry(kind: EntryKind) -> Any:
        return exists().where(LedgerEntry.purchase_id == Purchase.id, LedgerEntry.kind == kind)

    dead = exists().where(
        OutboxEvent.status == OutboxStatus.DEAD,
        OutboxEvent.topic == OutboxTopic.LEDGER_RECORD,
        OutboxEvent.aggregate_id == Purchase.id,
    )
    rows = db.session.execute(
        select(
            Purchase.id,
            has_entry(EntryKind.REVERSAL).label("reversed"),
            has_entry(EntryKind.RECORD).label("recorded"),
            dead.label("dead"),
        ).where(Purchase.id.in_(purchase_ids))
    )
    # The same order of precedence as ``ledger.ledger_status``.
    statuses = {}
    for row in rows:
        if row.reversed:
            statuses[row.id] = "reversed"
        elif row.recorded:
            statuses[row.id] = "recorded"
        else:
            statuses[row.id] = "failed" if row.dead else "pending"
    return statuses


def visible_purchases(user: User) -> ColumnElement[bool]:
    """The purchases ``user`` may see, as a WHERE clause."""
    if user.role in (Role.ADMIN, Role.AUDITOR):
        return true()
    if user.organization_id is None:
        return false()
    if user.role is Role.BUYER:
        return Purchase.oem_org_id == user.organization_id
    if user.role is Role.SUPPLIER:
        return Purchase.supplier_org_id == user.organization_id
    return false()


# --- use cases -----------------------------------------------------------------------------------


def record_purchase(
    user: User, data: dict[str, Any], idempotency_key: str | None = None
) -> idempotency.StoredResponse:
    """A buyer records an off-platform purchase, answered with its subsidy preview; a repeated
    Idempotency-Key replays the first answer (preview included, as it was computed then).

    The answer is serialised once, before the commit, and sent as it is: serialising it again
    after the commit would reload the purchase and both organizations (three more queries).
    """
    org = require_active_org(user, OrgKind.OEM, "record purchases")
    request = idempotency.idempotent_request(user, RECORD_ENDPOINT, idempotency_key, data)
    if request and (stored := idempotency.find_replay(request)):
        return stored

    supplier = db.session.scalar(
        select(Organization).where(
            Organization.id == data["supplier_org_id"],
            Organization.kind == OrgKind.SUPPLIER,
            Organization.status == OrgStatus.ACTIVE,
        )
    )
    if supplier is None:
        raise ValidationFailed(fields={"supplier_org_id": ["No active supplier with this id."]})
    site = db.session.scalar(
        select(Site).where(Site.id == data["supplier_site_id"], Site.organization_id == supplier.id)
    )
    if site is None:
        raise ValidationFailed(fields={"supplier_site_id": ["Not a site of this supplier."]})
    plant = db.session.scalar(
        select(Site).where(Site.id == data["plant_id"], Site.organization_id == org.id)
    )
    if plant is None:
        raise ValidationFailed(fields={"plant_id": ["No plant with this id in your organization."]})
    if invoice_taken(supplier.id, data["invoice_number"]):
        # A twin with this key may have committed since the first look: answer as it did.
        if request and (stored := idempotency.find_replay(request)):
            return stored
        raise duplicate_invoice()

    try:
        purchase = add_purchase(
            oem_org_id=org.id,
            supplier_org_id=supplier.id,
            supplier_site_id=site.id,
            plant_id=plant.id,
            category=data["category"],
            amount=data["amount"],
            purchased_on=data["purchased_on"],
            invoice_number=data["invoice_number"],
            po_number=data.get("po_number"),
            source=PurchaseSource.DIRECT,
            created_by=user,
        )
        body = PurchaseRecordedSchema().dump(with_subsidy_preview(purchase))
        if request:
            idempotency.remember(request, 201, body)
        commit()
    except IntegrityError:
        # A concurrent twin committed first (same key, or the same invoice).
        rollback()
        if request and (stored := idempotency.find_replay(request)):
            return stored
        raise duplicate_invoice() from None
    return idempotency.StoredResponse(201, body, replayed=False)


def purchase_get(user: User, purchase_id: int) -> PurchaseView:
    """One purchase the user may see (404 otherwise), with its ledger status and entries."""
    check_id(purchase_id, "Purchase")
    purchase = db.session.scalar(
        select(Purchase).where(Purchase.id == purchase_id, visible_purchases(user))
    )
    if purchase is None:
        raise NotFound("Purchase not found.")
    return PurchaseView(purchase, ledger=ledger.ledger_status(purchase.id))


def purchase_list(user: User, query: dict[str, Any]) -> Page:
    """The purchases the user may see, filtered, sorted and paginated, each with its compact
    ledger status."""
    stmt: Select[Any] = (
        select(Purchase)
        .where(visible_purchases(user))
        .options(selectinload(Purchase.oem), selectinload(Purchase.supplier))
    )
    if "year" in query:
        year = query["year"]
        stmt = stmt.where(
            Purchase.purchased_on >= date(year, 1, 1), Purchase.purchased_on <= date(year, 12, 31)
        )
    if "supplier" in query:
        stmt = stmt.where(Purchase.supplier_org_id == query["supplier"])
    if "oem" in query:
        stmt = stmt.where(Purchase.oem_org_id == query["oem"])
    if "status" in query:
        stmt = stmt.where(Purchase.status == PurchaseStatus(query["status"]))
    if "source" in query:
        stmt = stmt.where(Purchase.source == PurchaseSource(query["source"]))
    stmt = stmt.order_by(*order_by(query["sort"], _SORT_COLUMNS, Purchase.id))
    page = paginate(stmt, query["page"], query["per_page"])
    statuses = ledger_statuses([purchase.id for purchase in page.items])
    page.items = [PurchaseView(p, ledger_status=statuses[p.id]) for p in page.items]
    return page


def purchase_cancel(user: User, purchase_id: int, reason: str) -> Purchase:
    """Cancel a recorded purchase (its buyer's organization or an admin); the ledger reverses it."""
    check_id(purchase_id, "Purchase")
    query = select(Purchase).where(Purchase.id == purchase_id, visible_purchases(user))
    if user.role is not Role.ADMIN:
        query = query.where(Purchase.oem_org_id == user.organization_id)
    purchase = db.session.scalar(query.with_for_update().execution_options(populate_existing=True))
    if purchase is None:
        raise NotFound("Purchase not found.")
    if purchase.status is not PurchaseStatus.RECORDED:
        raise Conflict("This purchase is already cancelled.")
    purchase.status = PurchaseStatus.CANCELLED
    purchase.cancelled_at = now()
    purchase.cancel_reason = reason
    emit(OutboxTopic.LEDGER_REVERSE, purchase.id)
    commit()
    return purchase
