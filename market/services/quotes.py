"""Quotes on open demands, and the award that turns one quote into a purchase.

A supplier may quote when it is eligible for the demand by the ranking spec (``search.spec``:
capability in the category's subtree, required certifications valid through need_by, an active
site within the radius) — one quote per supplier per demand. A supplier sees only its own
quotes; the demand's buyers (and admins, auditors) see all of them.

The award runs in one transaction under the demand's row lock: the quote is awarded, the other
submitted quotes are rejected, the demand is awarded, and a purchase (with its ledger outbox
row) is created. However many awards race, one wins; ``purchases.quote_id`` is unique as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from market.clock import business_today as today
from market.database import CENT
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.geo import haversine_km
from market.http import check_id
from market.models import (
    CertStatus,
    CertVerification,
    Demand,
    DemandState,
    Organization,
    OrgKind,
    OrgStatus,
    PurchaseParty,
    PurchaseSource,
    Quote,
    QuoteStatus,
    Role,
    Site,
    User,
)
from market.permissions import require_active_org
from market.schemas.fields import MAX_AMOUNT
from market.services.demands import apply_transition, effective_state, get_visible_demand
from market.services.pagination import Page, order_by, paginate
from market.services.purchases import (
    PurchaseView,
    add_purchase,
    duplicate_invoice,
    invoice_taken,
    with_subsidy_preview,
)
from market.services.unit_of_work import commit, rollback
from search import spec

_SORT_COLUMNS: Mapping[str, Any] = {
    "id": Quote.id,
    "unit_price": Quote.unit_price,
    "lead_time_days": Quote.lead_time_days,
    "created_at": Quote.created_at,
}


def supplier_fact(org: Organization) -> spec.SupplierFact:
    """What the ranking spec needs to know of a supplier, from its rows."""
    return spec.SupplierFact(
        id=org.id,
        active=org.status is OrgStatus.ACTIVE,
        listed=org.listed,
        tier=org.tier,
        categories=tuple(c.category for c in org.capabilities),
        sites=tuple(spec.SiteFact(s.id, s.lat, s.lon, s.active, s.name) for s in org.sites),
        certifications=tuple(
            spec.CertFact(
                c.id,
                c.standard,
                c.status is CertStatus.ACTIVE,
                c.valid_from,
                c.valid_until,
                verified=c.verification is CertVerification.VERIFIED,
            )
            for c in org.certifications
        ),
    )


def demand_fact(demand: Demand) -> spec.DemandFact:
    """What the ranking spec needs to know of a demand, from its row and its plant."""
    return spec.DemandFact(
        lat=demand.plant.lat,
        lon=demand.plant.lon,
        category=demand.category,
        required_standards=tuple(demand.required_standards or ()),
        need_by=demand.need_by,
        radius_km=demand.radius_km,
        tier_weights=(
            spec.normalise_tier_weights(cast(Mapping[str | int, float], demand.tier_weights))
            if demand.tier_weights
            else None
        ),
    )


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
    """An eligible supplier quotes once on an open demand."""
    org = require_active_org(user, OrgKind.SUPPLIER, "quote")
    demand = get_visible_demand(user, demand_id, lock=True)
    state = effective_state(demand)
    if state is not DemandState.OPEN:
        raise Conflict(f"This demand is {state.value}; quotes are taken only while it is open.")
    if spec.match(supplier_fact(org), demand_fact(demand), today()) is None:
        raise _not_eligible(demand)
    already = db.session.scalar(
        select(Quote.id).where(Quote.demand_id == demand.id, Quote.organization_id == org.id)
    )
    if already is not None:
        raise Conflict(
            f"Your organization has already quoted on this demand (quote {already}); "
            "there is one quote per supplier."
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
    )
    db.session.add(quote)
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
    quote.status = QuoteStatus.AWARDED
    db.session.execute(
        update(Quote)
        .where(
            Quote.demand_id == demand.id,
            Quote.id != quote.id,
            Quote.status == QuoteStatus.SUBMITTED,
        )
        .values(status=QuoteStatus.REJECTED)
        .execution_options(synchronize_session="fetch")
    )
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
