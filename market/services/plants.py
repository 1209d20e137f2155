"""OEM plants: the sites of an OEM organization, where demanded parts are delivered."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from market.errors import Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import MAX_ID
from market.models import Organization, OrgKind, Role, Site, SiteKind, User
from market.permissions import auditor_city_prefixes, city_in_jurisdiction, jurisdiction_condition
from market.services.pagination import Page, paginate
from market.services.suppliers import check_site_location
from market.services.unit_of_work import commit

READ_ALL = frozenset({Role.ADMIN, Role.AUDITOR})


def _plants() -> Select[Any]:
    return (
        select(Site)
        .join(Organization, Organization.id == Site.organization_id)
        .where(Organization.kind == OrgKind.OEM)
    )


def plant_create(user: User, data: dict[str, Any]) -> Site:
    """Add a plant to the buyer's own OEM organization (admins name the organization)."""
    wanted = data.get("organization_id")
    if user.role is Role.BUYER:
        if user.organization_id is None:
            raise Forbidden("Your account belongs to no organization.")
        if wanted is not None and wanted != user.organization_id:
            raise Forbidden("Buyers add plants to their own organization only.")
        organization_id = user.organization_id
    elif user.role is Role.ADMIN:
        if wanted is None:
            raise ValidationFailed(
                fields={"organization_id": ["Required when an admin adds a plant."]}
            )
        organization_id = wanted
    else:
        raise Forbidden("Only buyers and admins add OEM plants.")
    org = db.session.get(Organization, organization_id)
    if org is None or org.kind is not OrgKind.OEM:
        if user.role is Role.ADMIN:
            raise ValidationFailed(fields={"organization_id": ["Must be an OEM organization."]})
        raise Forbidden("Only OEM organizations have plants.")
    check_site_location(data["city_code"], data["lat"], data["lon"])
    plant = Site(
        organization_id=org.id,
        kind=SiteKind.PLANT,
        name=data["name"],
        city_code=data["city_code"],
        address=data["address"],
        lat=data["lat"],
        lon=data["lon"],
        active=True,
    )
    db.session.add(plant)
    commit()
    return plant


def plant_list(
    user: User,
    *,
    page: int,
    per_page: int,
    organization_id: int | None = None,
    city_code: str | None = None,
) -> Page:
    """The caller's organization's plants; admins see every OEM's, auditors those in their
    jurisdiction, by id."""
    query = _plants().order_by(Site.id)
    in_jurisdiction = jurisdiction_condition(Site.city_code, auditor_city_prefixes(user))
    if user.role in READ_ALL:
        if in_jurisdiction is not None:
            query = query.where(in_jurisdiction)
        if organization_id is not None:
            query = query.where(Site.organization_id == organization_id)
    elif user.role is Role.BUYER and user.organization_id is not None:
        if organization_id is not None and organization_id != user.organization_id:
            raise NotFound("Organization not found.")
        query = query.where(Site.organization_id == user.organization_id)
    else:
        raise Forbidden("Only buyers, auditors and admins list OEM plants.")
    if city_code is not None:
        query = query.where(Site.city_code == city_code)
    return paginate(query, page, per_page)


def plant_get(user: User, plant_id: int) -> Site:
    """One OEM plant: the buyer's own, any for admins, those in their jurisdiction for
    auditors."""
    if user.role not in READ_ALL and user.role is not Role.BUYER:
        raise Forbidden("Only buyers, auditors and admins read OEM plants.")
    plant = (
        db.session.scalars(_plants().where(Site.id == plant_id)).one_or_none()
        if plant_id <= MAX_ID
        else None
    )
    if plant is None or (
        user.role not in READ_ALL and plant.organization_id != user.organization_id
    ):
        raise NotFound("Plant not found.")
    if user.role is Role.AUDITOR and not city_in_jurisdiction(
        plant.city_code, auditor_city_prefixes(user)
    ):
        raise NotFound("Plant not found.")
    return plant
