"""Supplier use cases: the profile, sites, capabilities and certifications.

Only the supplier's own users (role ``supplier``) and admins change supplier data; any signed-in
user may read an active supplier. Every change to indexed data bumps the organization's version
and emits a ``search.sync`` outbox row in the same transaction, so the index catches up.

Certificates are declarations until an admin reviews them: a new one, and one whose stated
facts change (even after a review: a verified certificate must not be edited into another one),
is ``pending``; only ``verified`` ones count for matching. A review is an admin act: audited,
announced to the supplier (an event), and a search sync like any other change.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from market import geo, refdata
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import MAX_ID
from market.models import (
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxTopic,
    Role,
    Site,
    SiteKind,
    User,
)
from market.services.audit import audit
from market.services.events import EventKind, emit_event
from market.services.pagination import Page, paginate
from market.services.unit_of_work import commit, emit

PROFILE_FIELDS = (
    "tier",
    "description",
    "specialized",
    "employee_band",
    "revenue_band",
    "english_name",
    "listed",
)
SITE_FIELDS = ("name", "kind", "city_code", "address", "lat", "lon", "active")
CERTIFICATION_FIELDS = ("level", "number", "issuer", "valid_from", "valid_until", "scope")
# What a review vouches for: changing any of these sends the certificate back to review.
REVIEWED_FIELDS = (*CERTIFICATION_FIELDS, "site_id")


# --- access ---------------------------------------------------------------------------------------


def viewable_supplier(user: User, organization_id: int) -> Organization:
    """A supplier the user may read: active ones for everyone signed in; others for their own
    members, admins and auditors. Anything else is 404 (existence is not revealed)."""
    org = db.session.get(Organization, organization_id) if organization_id <= MAX_ID else None
    if org is None or org.kind is not OrgKind.SUPPLIER:
        raise NotFound("Supplier not found.")
    if org.status is OrgStatus.ACTIVE:
        return org
    if user.role in {Role.ADMIN, Role.AUDITOR} or user.organization_id == org.id:
        return org
    raise NotFound("Supplier not found.")


def editable_supplier(user: User, organization_id: int) -> Organization:
    """The supplier the user may change, locked for the version bump (403 wrong role, 404 other)."""
    if user.role is Role.SUPPLIER:
        if user.organization_id != organization_id:
            raise NotFound("Supplier not found.")
    elif user.role is not Role.ADMIN:
        raise Forbidden("Only the supplier's own users and admins can change supplier data.")
    if organization_id > MAX_ID:
        raise NotFound("Supplier not found.")
    # FOR UPDATE serialises concurrent edits of one supplier, so versions never repeat.
    org = db.session.scalars(
        select(Organization)
        .where(Organization.id == organization_id, Organization.kind == OrgKind.SUPPLIER)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if org is None:
        raise NotFound("Supplier not found.")
    return org


# The taxonomy subtree of automotive chips (the domestic-origin flag lives only there).
CHIPS = "ic.chips"


def _changed(org: Organization) -> None:
    """Indexed data changed: new version, and a search sync committed with the change."""
    org.bump_version()
    db.session.flush()
    emit(OutboxTopic.SEARCH_SYNC, org.id, {"version": org.version})


def _one_of(model: Any, organization_id: int, object_id: int, what: str) -> Any:
    row = db.session.get(model, object_id) if object_id <= MAX_ID else None
    if row is None or row.organization_id != organization_id:
        raise NotFound(f"{what} not found.")
    return row


def _nothing_to_change(data: dict[str, Any]) -> None:
    if not data:
        raise ValidationFailed("Nothing to change.", fields={"_body": ["Give at least one field."]})


# --- locations (shared with OEM plants) ----------------------------------------------------------


def check_site_location(city_code: str, lat: float, lon: float) -> None:
    """The point must lie inside its declared city's real boundary, or within 2 km of it (the
    slack absorbs GCJ-02 coordinates from Chinese map apps and the boundary simplification)."""
    try:
        city = geo.city_boundary(city_code)
    except geo.UnknownDivision:
        raise ValidationFailed(
            "The city code names no known city.",
            fields={
                "city_code": [
                    f"No boundary is known for {city_code}: use a prefecture-level GB/T 2260 "
                    "code (its first four digits followed by 00)."
                ]
            },
        ) from None
    if geo.city_contains(city_code, lat, lon):
        return
    outside_km = geo.km_outside(city.geometry, lat, lon)
    actual = geo.city_of(lat, lon)
    where = f" (it is in {actual.name}, {actual.code})" if actual else ""
    message = (
        f"({lat}, {lon}) lies {outside_km:.1f} km outside {city.name} ({city.code}){where}; a "
        f"site must be inside its declared city, within {geo.CITY_TOLERANCE_KM:g} km of its "
        "boundary (WGS-84)."
    )
    raise ValidationFailed(
        "The coordinates are not in the declared city.", fields={"lat": [message], "lon": [message]}
    )


# --- profile --------------------------------------------------------------------------------------


def supplier_get(user: User, organization_id: int) -> Organization:
    """A supplier's public profile with its sites, capabilities and certifications."""
    return viewable_supplier(user, organization_id)


def supplier_profile_update(user: User, organization_id: int, data: dict[str, Any]) -> Organization:
    """Set the profile fields in ``data`` (all of them for PUT, those sent for PATCH) of a
    supplier (its own users or an admin); a change that changes nothing is not one."""
    org = editable_supplier(user, organization_id)
    changes = {
        name: data[name]
        for name in PROFILE_FIELDS
        if name in data and getattr(org, name) != data[name]
    }
    if not changes:
        return org
    for name, value in changes.items():
        setattr(org, name, value)
    _changed(org)
    commit()
    return org


# --- sites ----------------------------------------------------------------------------------------


def site_create(user: User, organization_id: int, data: dict[str, Any]) -> Site:
    """Add a plant or warehouse to a supplier."""
    org = editable_supplier(user, organization_id)
    check_site_location(data["city_code"], data["lat"], data["lon"])
    site = Site(
        organization_id=org.id,
        kind=data["kind"],
        name=data["name"],
        city_code=data["city_code"],
        address=data["address"],
        lat=data["lat"],
        lon=data["lon"],
        active=True,
    )
    db.session.add(site)
    _changed(org)
    commit()
    return site


def site_list(
    user: User,
    organization_id: int,
    *,
    page: int,
    per_page: int,
    kind: SiteKind | None = None,
    city_code: str | None = None,
    active: bool | None = None,
) -> Page:
    """A supplier's sites by id, optionally filtered."""
    org = viewable_supplier(user, organization_id)
    query: Select[Any] = select(Site).where(Site.organization_id == org.id).order_by(Site.id)
    if kind is not None:
        query = query.where(Site.kind == kind)
    if city_code is not None:
        query = query.where(Site.city_code == city_code)
    if active is not None:
        query = query.where(Site.active.is_(active))
    return paginate(query, page, per_page)


def site_get(user: User, organization_id: int, site_id: int) -> Site:
    """One site of a supplier."""
    org = viewable_supplier(user, organization_id)
    site: Site = _one_of(Site, org.id, site_id, "Site")
    return site


def site_update(user: User, organization_id: int, site_id: int, data: dict[str, Any]) -> Site:
    """Change some fields of a site (``active: true`` reactivates a deactivated one)."""
    org = editable_supplier(user, organization_id)
    site: Site = _one_of(Site, org.id, site_id, "Site")
    _nothing_to_change(data)
    merged = {name: data.get(name, getattr(site, name)) for name in ("city_code", "lat", "lon")}
    check_site_location(merged["city_code"], merged["lat"], merged["lon"])
    for name in SITE_FIELDS:
        if name in data:
            setattr(site, name, data[name])
    _changed(org)
    commit()
    return site


def site_deactivate(user: User, organization_id: int, site_id: int) -> None:
    """Deactivate a site; the row stays, because quotes and purchases refer to it."""
    org = editable_supplier(user, organization_id)
    site: Site = _one_of(Site, org.id, site_id, "Site")
    if site.active:
        site.active = False
        _changed(org)
    commit()


# --- capabilities ---------------------------------------------------------------------------------


def capability_create(user: User, organization_id: int, data: dict[str, Any]) -> Capability:
    """Declare that a supplier makes parts of a taxonomy category (one row per category)."""
    org = editable_supplier(user, organization_id)
    taken = db.session.scalar(
        select(Capability.id).where(
            Capability.organization_id == org.id, Capability.category == data["category"]
        )
    )
    if taken is not None:
        raise Conflict(
            "This supplier already has this category.", fields={"category": ["Already declared."]}
        )
    capability = Capability(
        organization_id=org.id,
        category=data["category"],
        processes=data["processes"],
        annual_capacity=data["annual_capacity"],
        capacity_unit=data["capacity_unit"],
        domestic_origin=_domestic_origin(data["category"], data.get("domestic_origin", False)),
    )
    if (capability.annual_capacity is None) != (capability.capacity_unit is None):
        missing = "capacity_unit" if capability.capacity_unit is None else "annual_capacity"
        raise ValidationFailed(fields={missing: ["annual_capacity and capacity_unit go together."]})
    db.session.add(capability)
    _changed(org)
    try:
        commit()
    except IntegrityError as exc:  # a concurrent request declared the same category
        raise Conflict(
            "This supplier already has this category.", fields={"category": ["Already declared."]}
        ) from exc
    return capability


def _domestic_origin(category: str, flag: bool) -> bool:
    """The domestic-origin flag exists for automotive chips only (chip-localisation KPI)."""
    if flag and not (category == CHIPS or category.startswith(CHIPS + ".")):
        raise ValidationFailed(
            fields={"domestic_origin": ["Only capabilities under ic.chips have a domestic origin."]}
        )
    return flag


def capability_update(
    user: User, organization_id: int, capability_id: int, data: dict[str, Any]
) -> Capability:
    """Set a chip capability's domestic origin; purchases keep the value they froze."""
    org = editable_supplier(user, organization_id)
    capability = _one_of(Capability, org.id, capability_id, "Capability")
    capability.domestic_origin = _domestic_origin(capability.category, data["domestic_origin"])
    commit()
    return capability


def capability_list(
    user: User, organization_id: int, *, page: int, per_page: int, category: str | None = None
) -> Page:
    """A supplier's capabilities by id; ``category`` matches it and its descendants."""
    org = viewable_supplier(user, organization_id)
    query: Select[Any] = (
        select(Capability).where(Capability.organization_id == org.id).order_by(Capability.id)
    )
    if category:
        query = query.where(
            (Capability.category == category)
            | Capability.category.startswith(category + ".", autoescape=True)
        )
    return paginate(query, page, per_page)


def capability_delete(user: User, organization_id: int, capability_id: int) -> None:
    """Remove a capability (nothing refers to capability rows)."""
    org = editable_supplier(user, organization_id)
    capability = _one_of(Capability, org.id, capability_id, "Capability")
    db.session.delete(capability)
    _changed(org)
    commit()


# --- certifications -------------------------------------------------------------------------------


@cache
def _level_schemes() -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """Each standard's level schemes and their values, from ``certifications.json``.

    The file lists levels as ``{scheme: [values] | {value: meaning}}`` next to descriptive keys
    (e.g. iso-26262: ``ASIL: [QM, A, B, C, D]``); only the schemes' values are levels.
    """
    path = resources.files("market.data").joinpath("certifications.json")
    items = json.loads(path.read_text(encoding="utf-8"))["items"]
    schemes: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    for item in items:
        raw = item.get("levels") or {}
        found: list[tuple[str, tuple[str, ...]]] = []
        for scheme, values in raw.items() if isinstance(raw, dict) else ():
            if isinstance(values, dict):
                found.append((scheme, tuple(str(key) for key in values)))
            elif isinstance(values, list) and all(isinstance(v, str) for v in values):
                found.append((scheme, tuple(values)))
        schemes[item["id"]] = tuple(found)
    return schemes


def certification_levels(standard: str) -> tuple[str, ...]:
    """The levels a certificate of ``standard`` can state (empty: the standard has none)."""
    return tuple(value for _, values in _level_schemes().get(standard, ()) for value in values)


def normalise_level(standard: str, level: str) -> str | None:
    """The canonical level, or None if invalid: case-insensitive, with or without the scheme
    name ("ASIL D", "asil-d" and "D" give "D"; "Grade 1" gives aec-q100's "1")."""
    wanted = level.strip().upper().replace("_", " ").replace("-", " ")
    for scheme, values in _level_schemes().get(standard, ()):
        prefixes = {"", scheme.upper().replace("_", " ") + " "}
        if scheme.endswith("grade"):
            prefixes.add("GRADE ")
        for value in values:
            if any(wanted == prefix + value.upper() for prefix in prefixes):
                return value
    return None


def _certification_errors(
    standard: str, level: str | None, valid_from: date, valid_until: date | None
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    allowed = certification_levels(standard)
    if level is not None:
        if not allowed:
            errors["level"] = [f"{standard} has no levels; leave level empty."]
        elif normalise_level(standard, level) is None:
            errors["level"] = [f"Must be one of: {', '.join(allowed)}."]
    years = refdata.standards()[standard].validity_years
    if valid_until is None:
        if years is not None:
            errors["valid_until"] = [
                f"Required: {standard} certificates expire (typically after {years} years)."
            ]
    elif valid_until <= valid_from:
        errors["valid_until"] = ["Must be after valid_from."]
    return errors


def _own_active_site(organization_id: int, site_id: int | None) -> int | None:
    if site_id is None:
        return None
    site = db.session.get(Site, site_id)
    if site is None or site.organization_id != organization_id or not site.active:
        raise ValidationFailed(fields={"site_id": ["Must be an active site of this supplier."]})
    return site_id


def certification_create(user: User, organization_id: int, data: dict[str, Any]) -> Certification:
    """Record a certificate or qualification of a supplier (optionally of one of its sites)."""
    org = editable_supplier(user, organization_id)
    standard = data["standard"]
    errors = _certification_errors(standard, data["level"], data["valid_from"], data["valid_until"])
    if errors:
        raise ValidationFailed(fields=errors)
    certification = Certification(
        organization_id=org.id,
        standard=standard,
        level=normalise_level(standard, data["level"]) if data["level"] else None,
        number=data["number"],
        issuer=data["issuer"],
        valid_from=data["valid_from"],
        valid_until=data["valid_until"],
        scope=data["scope"],
        site_id=_own_active_site(org.id, data["site_id"]),
        status=CertStatus.ACTIVE,
        verification=CertVerification.PENDING,  # counts once an admin has verified it
    )
    db.session.add(certification)
    _changed(org)
    commit()
    return certification


def certification_list(
    user: User,
    organization_id: int,
    *,
    page: int,
    per_page: int,
    standard: str | None = None,
    status: CertStatus | None = None,
    verification: CertVerification | None = None,
) -> Page:
    """A supplier's certifications by id, optionally by standard, status or review state."""
    org = viewable_supplier(user, organization_id)
    query: Select[Any] = (
        select(Certification)
        .where(Certification.organization_id == org.id)
        .order_by(Certification.id)
    )
    if standard is not None:
        query = query.where(Certification.standard == standard)
    if status is not None:
        query = query.where(Certification.status == status)
    if verification is not None:
        query = query.where(Certification.verification == verification)
    return paginate(query, page, per_page)


def certification_get(user: User, organization_id: int, certification_id: int) -> Certification:
    """One certification of a supplier."""
    org = viewable_supplier(user, organization_id)
    cert: Certification = _one_of(Certification, org.id, certification_id, "Certification")
    return cert


def certification_update(
    user: User, organization_id: int, certification_id: int, data: dict[str, Any]
) -> Certification:
    """Correct a certification's details, or revoke it (revocation is final)."""
    org = editable_supplier(user, organization_id)
    cert: Certification = _one_of(Certification, org.id, certification_id, "Certification")
    _nothing_to_change(data)
    if cert.status is CertStatus.REVOKED:
        raise Conflict("A revoked certification cannot change; record a new one.")
    merged = {name: data.get(name, getattr(cert, name)) for name in CERTIFICATION_FIELDS}
    errors = _certification_errors(
        cert.standard, merged["level"], merged["valid_from"], merged["valid_until"]
    )
    if errors:
        raise ValidationFailed(fields=errors)
    before = {name: getattr(cert, name) for name in REVIEWED_FIELDS}
    if "site_id" in data and data["site_id"] != cert.site_id:
        cert.site_id = _own_active_site(org.id, data["site_id"])
    for name in CERTIFICATION_FIELDS:
        setattr(cert, name, merged[name])
    if merged["level"] is not None:
        cert.level = normalise_level(cert.standard, merged["level"])
    if "status" in data:
        cert.status = data["status"]
    if any(getattr(cert, name) != value for name, value in before.items()):
        _back_to_review(cert)
    _changed(org)
    commit()
    return cert


def _back_to_review(cert: Certification) -> None:
    """The certificate now states something no admin has looked at: pending again."""
    cert.verification = CertVerification.PENDING
    cert.reviewed_by_id = None
    cert.reviewed_at = None
    cert.review_reason = None


# --- certificate review (admins) ------------------------------------------------------------------


def certification_review_queue(
    user: User, *, page: int, per_page: int, verification: CertVerification, standard: str | None
) -> Page:
    """Active certificates in a review state (the pending ones by default), oldest first."""
    if user.role is not Role.ADMIN:
        raise Forbidden("Only admins review certificates.")
    query: Select[Any] = (
        select(Certification)
        .where(
            Certification.verification == verification,
            Certification.status == CertStatus.ACTIVE,
        )
        .order_by(Certification.id)
    )
    if standard is not None:
        query = query.where(Certification.standard == standard)
    return paginate(query, page, per_page)


def _under_review(user: User, organization_id: int, certification_id: int) -> Certification:
    """The pending, active certificate an admin reviews, its supplier locked (as an edit locks
    it, so a review and a supplier's change of the same certificate never interleave)."""
    if user.role is not Role.ADMIN:
        raise Forbidden("Only admins review certificates.")
    org = editable_supplier(user, organization_id)
    cert: Certification = _one_of(Certification, org.id, certification_id, "Certification")
    db.session.refresh(cert)  # read after the lock: a concurrent edit is seen, not overwritten
    if cert.status is not CertStatus.ACTIVE:
        raise Conflict("A revoked certification is not reviewed.")
    if cert.verification is not CertVerification.PENDING:
        raise Conflict("This certification was reviewed already; it is not pending.")
    return cert


def certification_review(
    user: User, organization_id: int, certification_id: int, *, verify: bool, reason: str | None
) -> Certification:
    """An admin verifies a pending certificate (it counts for matching from now on) or rejects
    it with a reason (it never counts; the supplier may correct it, which makes it pending
    again). Audited, announced to the supplier and synced to the search index."""
    cert = _under_review(user, organization_id, certification_id)
    cert.verification = CertVerification.VERIFIED if verify else CertVerification.REJECTED
    cert.reviewed_by_id = user.id
    cert.reviewed_at = utcnow()
    cert.review_reason = reason
    facts = {"standard": cert.standard, "number": cert.number, "reason": reason}
    audit(
        f"certification.{cert.verification.value}",
        f"certification:{cert.id}",
        facts,
        organization_id=cert.organization_id,
        actor=user,
    )
    emit_event(
        EventKind.CERTIFICATION_VERIFIED if verify else EventKind.CERTIFICATION_REJECTED,
        organization_id=cert.organization_id,
        subject_type="certification",
        subject_id=cert.id,
        data={**facts, "valid_until": cert.valid_until and cert.valid_until.isoformat()},
    )
    _changed(cert.organization)
    commit()
    return cert
