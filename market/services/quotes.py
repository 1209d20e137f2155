"""Quotes on open demands, and the award that turns one quote into a purchase.

A supplier may quote when it is eligible for the demand by the ranking spec (``search.spec``:
capability in the category's subtree, required certifications valid through need_by, an active
site within the radius) — one *active* (submitted or awarded) quote per supplier per demand,
so it may quote again after withdrawing (a partial unique index holds this under concurrency).
While the demand is open the supplier may revise its submitted quote: the quote row is the
latest version and every version, the first included, is a ``quote_revisions`` row that is
never changed (the buyer and the quoting supplier read the history). A supplier sees only its
own quotes; the demand's buyers (and admins, auditors) see all of them.

Events: ``quote.received`` and ``quote.revised`` to the demand's OEM; on award
``quote.awarded`` to the winner and ``quote.not_awarded`` to every other supplier whose quote
was still submitted.

The award runs in one transaction under the demand's row lock: the quote is awarded, the other
submitted quotes are rejected, the demand is awarded, and a purchase (with its ledger outbox
row) is created. However many awards race, one wins; ``purchases.quote_id`` is unique as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from market.clock import business_today as today
from market.clock import utcnow
from market.database import CENT
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.geo import haversine_km
from market.http import check_id
from market.models import (
    Demand,
    DemandState,
    Organization,
    OrgKind,
    OrgStatus,
    PurchaseParty,
    PurchaseSource,
    Quote,
    QuoteRevision,
    QuoteStatus,
    Role,
    Site,
    User,
)
from market.permissions import require_active_org
from market.schemas.fields import MAX_AMOUNT
from market.services.demands import apply_transition, effective_state, get_visible_demand
from market.services.events import EventKind, emit_event
from market.services.pagination import Page, order_by, paginate
from market.services.purchases import (
    PurchaseView,
    add_purchase,
    duplicate_invoice,
    invoice_taken,
    with_subsidy_preview,
)
from market.services.unit_of_work import commit, rollback
from search import documents, spec

_ACTIVE = (QuoteStatus.SUBMITTED, QuoteStatus.AWARDED)
_REVISABLE = ("unit_price", "quantity", "lead_time_days", "valid_until", "note")
_SORT_COLUMNS: Mapping[str, Any] = {
    "id": Quote.id,
    "unit_price": Quote.unit_price,
    "lead_time_days": Quote.lead_time_days,
    "created_at": Quote.created_at,
}


def _not_eligible(demand: Demand) -> Forbidden:
    standards = ", ".join(demand.required_standards or []) or "none"
    return Forbidden(
        "Your organization is not eligible to quote on this demand. It needs: a listed, active "
        f"profile; a capability in '{demand.category}' or below; active certifications, verified "
        f"by an admin, valid through {demand.need_by.isoformat()} for every required standard "
        f"({standards}); and an active site within {demand.radius_km} km of the plant."
    )


def _require_within_radius(site: Site, demand: Demand, field: str) -> None:
    """The site a quote ships from must be within the demand's radius of its plant (the
    supplier may have other, nearer sites: eligibility alone does not vouch for this one)."""
    distance = haversine_km(site.lat, site.lon, demand.plant.lat, demand.plant.lon)
    if distance > demand.radius_km:
        raise ValidationFailed(
            fields={
                field: [
                    f"This site is {distance:.1f} km from the plant, outside the demand's "
                    f"{demand.radius_km} km radius."
                ]
            }
        )


# --- use cases -----------------------------------------------------------------------------------


def quote_create(user: User, demand_id: int, data: dict[str, Any]) -> Quote:
    """An eligible supplier quotes on an open demand (one active quote per supplier)."""
    org = require_active_org(user, OrgKind.SUPPLIER, "quote")
    demand = get_visible_demand(user, demand_id, lock=True)
    state = effective_state(demand)
    if state is not DemandState.OPEN:
        raise Conflict(f"This demand is {state.value}; quotes are taken only while it is open.")
    supplier = documents.supplier_fact(documents.supplier_document(org))  # as search sees it
    if spec.match(supplier, documents.demand_fact(demand), today()) is None:
        raise _not_eligible(demand)
    already = db.session.scalar(
        select(Quote.id).where(
            Quote.demand_id == demand.id,
            Quote.organization_id == org.id,
            Quote.status.in_(_ACTIVE),
        )
    )
    if already is not None:
        raise Conflict(
            f"Your organization has already quoted on this demand (quote {already}); "
            "there is one active quote per supplier: revise it, or withdraw it first."
        )
    site = db.session.scalar(
        select(Site).where(Site.id == data["site_id"], Site.organization_id == org.id, Site.active)
    )
    if site is None:
        raise ValidationFailed(
            fields={"site_id": ["No active site with this id in your organization."]}
        )
    _require_within_radius(site, demand, "site_id")
    quote = Quote(
        demand=demand,
        organization=org,
        site=site,
        unit_price=data["unit_price"],
        quantity=data["quantity"],
        lead_time_days=data["lead_time_days"],
        valid_until=data["valid_until"],
        note=data.get("note"),
        status=QuoteStatus.SUBMITTED,
        created_by_id=user.id,
        revision=1,
    )
    db.session.add(quote)
    db.session.flush()
    _record_revision(quote, user)
    _tell_buyer(EventKind.QUOTE_RECEIVED, quote)
    try:
        commit()
    except IntegrityError:
        rollback()
        raise Conflict("Your organization has already quoted on this demand.") from None
    return quote


def quote_list(user: User, demand_id: int, query: dict[str, Any]) -> Page:
    """A demand's quotes: all of them for its buyers, auditors and admins; a supplier's own."""
    demand = get_visible_demand(user, demand_id)
    stmt: Select[Any] = (
        select(Quote).where(Quote.demand_id == demand.id).options(selectinload(Quote.organization))
    )
    if user.role is Role.SUPPLIER:
        stmt = stmt.where(Quote.organization_id == user.organization_id)
    elif user.role is Role.BUYER and demand.organization_id != user.organization_id:
        raise NotFound("Demand not found.")
    if "status" in query:
        stmt = stmt.where(Quote.status == QuoteStatus(query["status"]))
    stmt = stmt.order_by(*order_by(query["sort"], _SORT_COLUMNS, Quote.id))
    return paginate(stmt, query["page"], query["per_page"])


def quote_withdraw(user: User, quote_id: int) -> Quote:
    """The supplier takes back its submitted quote."""
    check_id(quote_id, "Quote")
    quote = db.session.scalar(
        select(Quote)
        .where(Quote.id == quote_id, Quote.organization_id == user.organization_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if quote is None or user.role is not Role.SUPPLIER:
        raise NotFound("Quote not found.")
    if quote.status is not QuoteStatus.SUBMITTED:
        raise Conflict(
            f"This quote is {quote.status.value}; only a submitted quote can be withdrawn."
        )
    quote.status = QuoteStatus.WITHDRAWN
    commit()
    return quote


def quote_award(user: User, quote_id: int, data: dict[str, Any]) -> PurchaseView:
    """The demand's buyer awards a quote: one transaction makes the purchase, answered with
    its subsidy preview."""
    org = require_active_org(user, OrgKind.OEM, "award quotes")
    demand, quote = _locked_for_award(user, org, quote_id)
    _check_awardable(demand, quote)
    amount = (quote.unit_price * quote.quantity).quantize(CENT)
    if amount > MAX_AMOUNT:
        raise Conflict(f"The quote's total {amount} exceeds the largest purchase, {MAX_AMOUNT}.")
    invoice_number = data["invoice_number"]
    if invoice_taken(demand.organization_id, quote.organization_id, invoice_number):
        raise duplicate_invoice()
    # The quote's site may have moved or been deactivated since it quoted: the purchase
    # freezes the site as it is now, so it must still be active and within the radius.
    site = db.session.get(Site, quote.site_id)
    if site is None or not site.active:
        raise ValidationFailed(
            fields={"quote": ["The quote's shipping site is deactivated; ask for a new quote."]}
        )
    _require_within_radius(site, demand, "quote")

    apply_transition(demand, "award")
    _award_and_reject_others(demand, quote)
    try:
        purchase = add_purchase(
            oem_org_id=demand.organization_id,
            supplier_org_id=quote.organization_id,
            supplier_site=site,
            plant=demand.plant,
            category=demand.category,
            amount=amount,
            purchased_on=data.get("purchased_on") or today(),
            invoice_number=invoice_number,
            po_number=data.get("po_number"),
            source=PurchaseSource.AWARD,
            created_by=user,
            created_by_party=PurchaseParty.OEM,
            quote_id=quote.id,
        )
        view = with_subsidy_preview(purchase, user)
        commit()
    except IntegrityError:
        rollback()
        raise Conflict("This demand or invoice was awarded by a concurrent request.") from None
    return view


def _locked_for_award(user: User, org: Organization, quote_id: int) -> tuple[Demand, Quote]:
    """The quote and its demand (the buyer's own), the demand locked: awards of one demand
    happen one at a time. Anything else is a 404 (another OEM's quote does not exist for you)."""
    check_id(quote_id, "Quote")
    demand_id = db.session.scalar(select(Quote.demand_id).where(Quote.id == quote_id))
    if demand_id is None:
        raise NotFound("Quote not found.")
    try:
        demand = get_visible_demand(user, demand_id, lock=True)
    except NotFound:
        raise NotFound("Quote not found.") from None
    if demand.organization_id != org.id:
        raise NotFound("Quote not found.")
    # Under the demand's lock: what the previous award committed is what we see now.
    quote = db.session.scalar(
        select(Quote)
        .where(Quote.id == quote_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert quote is not None  # quotes are never deleted
    return demand, quote


def _check_awardable(demand: Demand, quote: Quote) -> None:
    """409 unless the demand is open and the quote submitted, unexpired, of an active supplier."""
    state = effective_state(demand)
    if state is not DemandState.OPEN:
        raise Conflict(f"This demand is {state.value}; only an open demand can be awarded.")
    if quote.status is not QuoteStatus.SUBMITTED:
        raise Conflict(
            f"This quote is {quote.status.value}; only a submitted quote can be awarded."
        )
    if quote.valid_until < today():
        raise Conflict(
            f"This quote expired on {quote.valid_until.isoformat()}; "
            "ask the supplier for a new one."
        )
    if quote.organization.status is not OrgStatus.ACTIVE:
        raise Conflict("The supplier of this quote is no longer active.")


def quote_revise(user: User, quote_id: int, data: dict[str, Any]) -> Quote:
    """The quoting supplier replaces its submitted quote's terms while the demand is open; the
    previous versions stay in the history."""
    require_active_org(user, OrgKind.SUPPLIER, "revise quotes")
    quote = _own_quote(user, quote_id)
    # The demand's lock first (as the award takes it), then the quote's: a revision and an
    # award of the same quote are serialised, and each sees what the other committed.
    demand = get_visible_demand(user, quote.demand_id, lock=True)
    quote = _own_quote(user, quote_id, lock=True)
    if quote.status is not QuoteStatus.SUBMITTED:
        raise Conflict(
            f"This quote is {quote.status.value}; only a submitted quote can be revised."
        )
    state = effective_state(demand)
    if state is not DemandState.OPEN:
        raise Conflict(f"This demand is {state.value}; quotes are revised only while it is open.")
    if not data:
        raise ValidationFailed(fields={"_body": ["Send at least one field to change."]})
    changes = {name: data[name] for name in _REVISABLE if name in data}
    if all(getattr(quote, name) == value for name, value in changes.items()):
        raise ValidationFailed(fields={"_body": ["This revision changes nothing."]})
    price = changes.get("unit_price", quote.unit_price)
    quantity = changes.get("quantity", quote.quantity)
    if price * quantity > MAX_AMOUNT:
        field = "quantity" if "quantity" in changes else "unit_price"
        raise ValidationFailed(
            fields={field: [f"unit_price × quantity may be at most {MAX_AMOUNT}."]}
        )
    for name, value in changes.items():
        setattr(quote, name, value)
    quote.revision += 1
    quote.revised_at = utcnow()
    _record_revision(quote, user)
    _tell_buyer(EventKind.QUOTE_REVISED, quote)
    try:
        commit()
    except IntegrityError:  # the same revision number from a concurrent request
        rollback()
        raise Conflict("This quote was revised by a concurrent request; try again.") from None
    return quote


def quote_revisions(user: User, quote_id: int, query: dict[str, Any]) -> Page:
    """A quote's versions (its buyer's and the quoting supplier's; 404 for anyone else)."""
    check_id(quote_id, "Quote")
    quote = db.session.get(Quote, quote_id)
    if quote is None or user.organization_id is None:
        raise NotFound("Quote not found.")
    supplier = user.role is Role.SUPPLIER and quote.organization_id == user.organization_id
    buyer = user.role is Role.BUYER and quote.demand.organization_id == user.organization_id
    if not (supplier or buyer):
        raise NotFound("Quote not found.")
    stmt: Select[Any] = select(QuoteRevision).where(QuoteRevision.quote_id == quote.id)
    stmt = stmt.order_by(
        *order_by(query["sort"], {"revision": QuoteRevision.revision}, QuoteRevision.revision)
    )
    return paginate(stmt, query["page"], query["per_page"])


# --- helpers ------------------------------------------------------------------------------------


def _own_quote(user: User, quote_id: int, *, lock: bool = False) -> Quote:
    """The user's organization's quote (404 for anyone else's, and for non-suppliers)."""
    check_id(quote_id, "Quote")
    query = select(Quote).where(Quote.id == quote_id, Quote.organization_id == user.organization_id)
    if lock:
        query = query.with_for_update(of=Quote).execution_options(populate_existing=True)
    quote = db.session.scalar(query)
    if quote is None or user.role is not Role.SUPPLIER:
        raise NotFound("Quote not found.")
    return quote


def _record_revision(quote: Quote, user: User) -> None:
    """The quote's current terms as its version ``quote.revision`` (insert only)."""
    db.session.add(
        QuoteRevision(
            quote_id=quote.id,
            revision=quote.revision,
            site_id=quote.site_id,
            unit_price=quote.unit_price,
            quantity=quote.quantity,
            lead_time_days=quote.lead_time_days,
            valid_until=quote.valid_until,
            note=quote.note,
            created_by_id=user.id,
        )
    )


def _quote_facts(quote: Quote) -> dict[str, Any]:
    """What a quote event says (JSON-ready; money as exact strings)."""
    return {
        "quote_id": quote.id,
        "demand_id": quote.demand_id,
        "demand_title": quote.demand.title,
        "supplier_id": quote.organization_id,
        "supplier_name": quote.organization.legal_name,
        "unit_price": str(quote.unit_price),
        "quantity": quote.quantity,
        "total": str((quote.unit_price * quote.quantity).quantize(CENT)),
        "lead_time_days": quote.lead_time_days,
        "valid_until": quote.valid_until.isoformat(),
        "revision": quote.revision,
    }


def _tell_buyer(kind: EventKind, quote: Quote) -> None:
    emit_event(
        kind,
        organization_id=quote.demand.organization_id,
        subject_type="quote",
        subject_id=quote.id,
        data=_quote_facts(quote),
    )


def _award_and_reject_others(demand: Demand, quote: Quote) -> None:
    """Award ``quote``, reject the demand's other submitted quotes, and tell every supplier."""
    quote.status = QuoteStatus.AWARDED
    # One UPDATE re-checked under each row's lock: a quote withdrawn meanwhile stays withdrawn.
    rejected = db.session.scalars(
        update(Quote)
        .where(
            Quote.demand_id == demand.id,
            Quote.id != quote.id,
            Quote.status == QuoteStatus.SUBMITTED,
        )
        .values(status=QuoteStatus.REJECTED)
        .returning(Quote.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    others = list(
        db.session.scalars(select(Quote).where(Quote.id.in_(rejected)).order_by(Quote.id))
    )
    for told, kind in [(quote, EventKind.QUOTE_AWARDED)] + [
        (other, EventKind.QUOTE_NOT_AWARDED) for other in others
    ]:
        emit_event(
            kind,
            organization_id=told.organization_id,
            subject_type="quote",
            subject_id=told.id,
            data=_quote_facts(told),
        )
