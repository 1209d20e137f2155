"""Demands (RFQs): a buyer's request for parts at one of its plants, and its lifecycle.

States: ``draft`` → ``open`` → ``awarded`` | ``closed`` | ``cancelled`` (a draft may also be
cancelled). Anything else is a 409. An open demand whose ``need_by`` has passed counts as closed
at once (reads and transitions use :func:`effective_state`); :func:`close_expired_demands`
writes that down for the rows (CLI ``flask demands close-expired``, later a scheduler).

Who sees a demand: its organization's buyers, admins and auditors see every state; suppliers see
open demands and the ones they have quoted on; anyone else gets a 404. With
``hide_target_price`` suppliers see every field but the target price (``Demand.target_price_for``).

Publishing tells the top ``DEMAND_NOTIFY_TOP_N`` eligible suppliers (:mod:`market.services.feed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import selectinload

from market.clock import business_today as today
from market.clock import utcnow as now
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import check_id
from market.models import (
    Demand,
    DemandState,
    Organization,
    OrgKind,
    Quote,
    Role,
    Site,
    User,
)
from market.permissions import (
    auditor_city_prefixes,
    jurisdiction_condition,
    require_active_org,
)
from market.services.feed import notify_published
from market.services.pagination import Page, order_by, paginate
from market.services.unit_of_work import commit
from search.database import text_conditions
from search.text import parse_query

# action → (states it may start from, state it leads to)
_TRANSITIONS: Mapping[str, tuple[frozenset[DemandState], DemandState]] = {
    "publish": (frozenset({DemandState.DRAFT}), DemandState.OPEN),
    "close": (frozenset({DemandState.OPEN}), DemandState.CLOSED),
    "cancel": (frozenset({DemandState.DRAFT, DemandState.OPEN}), DemandState.CANCELLED),
    "award": (frozenset({DemandState.OPEN}), DemandState.AWARDED),
}
_PAST_TENSE = {"publish": "published", "close": "closed", "cancel": "cancelled", "award": "awarded"}
# The fields a draft may change (the PATCH schema names no others).
_EDITABLE = (
    "plant_id",
    "category",
    "title",
    "description",
    "quantity",
    "unit",
    "target_unit_price",
    "hide_target_price",
    "required_standards",
    "need_by",
    "radius_km",
    "tier_weights",
    "rank_by_performance",
)
_SORT_COLUMNS: Mapping[str, Any] = {
    "id": Demand.id,
    "created_at": Demand.created_at,
    "need_by": Demand.need_by,
}


# --- visibility and state -------------------------------------------------------------------------


def effective_state(demand: Demand, on: date | None = None) -> DemandState:
    """The demand's state as users see it: open past ``need_by`` is closed."""
    if demand.state is DemandState.OPEN and demand.need_by < (on or today()):
        return DemandState.CLOSED
    return demand.state


def _state_filter(state: DemandState, on: date) -> ColumnElement[bool]:
    expired = and_(Demand.state == DemandState.OPEN, Demand.need_by < on)
    if state is DemandState.OPEN:
        return and_(Demand.state == DemandState.OPEN, Demand.need_by >= on)
    if state is DemandState.CLOSED:
        return or_(Demand.state == DemandState.CLOSED, expired)
    return Demand.state == state


def visible_demands(user: User, on: date | None = None) -> ColumnElement[bool]:
    """The demands ``user`` may see, as a WHERE clause."""
    if user.role is Role.ADMIN:
        return true()
    if user.role is Role.AUDITOR:
        # Those of OEM plants in the auditor's jurisdiction.
        in_jurisdiction = jurisdiction_condition(Site.city_code, auditor_city_prefixes(user))
        if in_jurisdiction is None:
            return true()
        return exists().where(Site.id == Demand.plant_id, in_jurisdiction)
    if user.organization_id is None:
        return false()
    if user.role is Role.BUYER:
        return Demand.organization_id == user.organization_id
    if user.role is Role.SUPPLIER:
        quoted = exists().where(
            Quote.demand_id == Demand.id, Quote.organization_id == user.organization_id
        )
        return or_(_state_filter(DemandState.OPEN, on or today()), quoted)
    return false()


def get_visible_demand(user: User, demand_id: int, *, lock: bool = False) -> Demand:
    """The demand if ``user`` may see it (404 otherwise); ``lock`` takes its row lock."""
    check_id(demand_id, "Demand")
    query = select(Demand).where(Demand.id == demand_id, visible_demands(user))
    if lock:
        # Serialises every state change of one demand (awards, quotes, close, cancel); the
        # re-read sees what the previous lock holder committed.
        query = query.with_for_update(of=Demand).execution_options(populate_existing=True)
    demand = db.session.scalar(query)
    if demand is None:
        raise NotFound("Demand not found.")
    return demand


def _manageable_demand(user: User, demand_id: int, *, admin_may: bool) -> Demand:
    demand = get_visible_demand(user, demand_id, lock=True)
    if user.role is Role.ADMIN and admin_may:
        return demand
    if user.role is not Role.BUYER or demand.organization_id != user.organization_id:
        raise Forbidden("Only the buyers of the demand's organization can do this.")
    return demand


def apply_transition(demand: Demand, action: str) -> None:
    """Move the demand along its lifecycle, or 409 naming the state it is in."""
    sources, target = _TRANSITIONS[action]
    current = effective_state(demand)
    if current not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        raise Conflict(
            f"This demand is {current.value}; only a demand that is {allowed} "
            f"can be {_PAST_TENSE[action]}."
        )
    demand.state = target
    if target is DemandState.OPEN:
        demand.published_at = now()
    else:
        demand.closed_at = now()


def _own_plant(org: Organization, plant_id: int) -> Site:
    plant = db.session.scalar(
        select(Site).where(Site.id == plant_id, Site.organization_id == org.id, Site.active)
    )
    if plant is None:
        raise ValidationFailed(
            fields={"plant_id": ["No active plant with this id in your organization."]}
        )
    return plant


# --- use cases -----------------------------------------------------------------------------------


def demand_create(user: User, data: dict[str, Any]) -> Demand:
    """A buyer of an active OEM drafts a demand for one of its plants."""
    org = require_active_org(user, OrgKind.OEM, "post demands")
    plant = _own_plant(org, data["plant_id"])
    demand = Demand(
        organization_id=org.id,
        plant=plant,
        category=data["category"],
        title=data["title"],
        description=data.get("description"),
        quantity=data["quantity"],
        unit=data["unit"],
        target_unit_price=data.get("target_unit_price"),
        hide_target_price=data.get("hide_target_price", False),
        required_standards=data["required_standards"],
        need_by=data["need_by"],
        radius_km=data["radius_km"],
        tier_weights=data.get("tier_weights"),
        rank_by_performance=data.get("rank_by_performance", False),
        state=DemandState.DRAFT,
        created_by_id=user.id,
    )
    db.session.add(demand)
    commit()
    return demand


def demand_get(user: User, demand_id: int) -> Demand:
    """One demand the user may see."""
    return get_visible_demand(user, demand_id)


def demand_update(user: User, demand_id: int, data: dict[str, Any]) -> Demand:
    """Change a draft (published demands are fixed: suppliers quote on what they saw)."""
    demand = _manageable_demand(user, demand_id, admin_may=False)
    org = require_active_org(user, OrgKind.OEM, "edit demands")
    if demand.state is not DemandState.DRAFT:
        raise Conflict(
            f"This demand is {effective_state(demand).value}; only drafts can be edited."
        )
    if not data:
        raise ValidationFailed(fields={"_body": ["Send at least one field to change."]})
    if "plant_id" in data:
        demand.plant = _own_plant(org, data["plant_id"])
    for name in _EDITABLE:
        if name in data and name != "plant_id":
            setattr(demand, name, data[name])
    commit()
    return demand


def demand_publish(user: User, demand_id: int) -> Demand:
    """Open a draft to quotes."""
    demand = _manageable_demand(user, demand_id, admin_may=False)
    org = require_active_org(user, OrgKind.OEM, "publish demands")
    if demand.state is DemandState.DRAFT:
        if demand.need_by < today():
            raise ValidationFailed(
                fields={"need_by": ["This date has passed; change it before publishing."]}
            )
        _own_plant(org, demand.plant_id)  # the plant may have been closed since the draft
    apply_transition(demand, "publish")
    notify_published(demand)  # the best-ranked eligible suppliers, in this transaction
    commit()
    return demand


def demand_close(user: User, demand_id: int) -> Demand:
    """Stop taking quotes without awarding (the buyer, or an admin)."""
    demand = _manageable_demand(user, demand_id, admin_may=True)
    apply_transition(demand, "close")
    commit()
    return demand


def demand_cancel(user: User, demand_id: int) -> Demand:
    """Withdraw a draft or open demand (the buyer, or an admin)."""
    demand = _manageable_demand(user, demand_id, admin_may=True)
    apply_transition(demand, "cancel")
    commit()
    return demand


def demand_list(user: User, query: dict[str, Any]) -> Page:
    """The demands the user may see, filtered, sorted and paginated."""
    on = today()
    stmt: Select[Any] = (
        select(Demand)
        .where(visible_demands(user, on))
        .options(selectinload(Demand.plant), selectinload(Demand.organization))
    )
    if "state" in query:
        stmt = stmt.where(_state_filter(DemandState(query["state"]), on))
    if "category" in query:
        category = query["category"]
        stmt = stmt.where(
            or_(
                Demand.category == category,
                Demand.category.startswith(category + ".", autoescape=True),
            )
        )
    if "plant_id" in query:
        stmt = stmt.where(Demand.plant_id == query["plant_id"])
    if "oem" in query:
        stmt = stmt.where(Demand.organization_id == query["oem"])
    if query.get("q"):
        stmt = stmt.where(*text_conditions(parse_query(query["q"]), Demand.search_text))
    stmt = stmt.order_by(*order_by(query["sort"], _SORT_COLUMNS, Demand.id))
    return paginate(stmt, query["page"], query["per_page"])


def close_expired_demands(on: date) -> int:
    """Close every open demand whose need_by is before ``on``; returns how many were closed."""
    stamp = now()
    result = db.session.execute(
        update(Demand)
        .where(Demand.state == DemandState.OPEN, Demand.need_by < on)
        .values(state=DemandState.CLOSED, closed_at=stamp, updated_at=stamp)
        .execution_options(synchronize_session=False)
    )
    commit()
    return cast(CursorResult[Any], result).rowcount
