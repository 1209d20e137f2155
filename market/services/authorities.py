"""Authorities and their jurisdictions: the government bodies auditors work for.

An authority's jurisdiction is a list of GB/T 2260 codes: ``44`` (the whole province) or
prefecture-level city codes such as ``440100`` (Guangzhou). Its auditors see what lies in it
(see market.permissions.auditor_city_prefixes). Admins manage authorities (API and
``flask users authority-*``); each use case commits once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from market import refdata
from market.errors import Conflict, NotFound, ValidationFailed
from market.extensions import db
from market.models import Authority, Role, User
from market.services.audit import audit
from market.services.unit_of_work import commit, rollback

PROVINCE = "44"


def normalise_jurisdiction(codes: list[str]) -> list[str]:
    """Checked, de-duplicated, sorted codes; 422 naming the codes that are not in Guangdong."""
    cleaned = sorted({code.strip() for code in codes})
    unknown = [code for code in cleaned if code != PROVINCE and code not in refdata.cities()]
    if unknown:
        raise ValidationFailed(
            fields={
                "city_codes": [
                    f"Not the province ({PROVINCE}) or a Guangdong prefecture-level city code "
                    f"(GB/T 2260; see GET /api/v1/cities): {', '.join(unknown)}."
                ]
            }
        )
    if not cleaned:
        raise ValidationFailed(fields={"city_codes": ["Name at least one code."]})
    return cleaned


def _authority(authority_id: int) -> Authority:
    authority = db.session.get(Authority, authority_id)
    if authority is None:
        raise NotFound("No such authority.")
    return authority


def _commit_unique_name(authority: Authority) -> Authority:
    try:
        commit()
    except IntegrityError as exc:
        rollback()
        raise Conflict(fields={"name": ["An authority with this name already exists."]}) from exc
    return authority


def authority_create(name: str, city_codes: list[str]) -> Authority:
    """Create an authority with its jurisdiction."""
    if db.session.scalar(select(Authority.id).where(Authority.name == name)):
        raise Conflict(fields={"name": ["An authority with this name already exists."]})
    authority = Authority(name=name, city_codes=normalise_jurisdiction(city_codes))
    db.session.add(authority)
    db.session.flush()
    audit(
        "authority.created",
        f"authority:{authority.id}",
        {"name": name, "city_codes": authority.city_codes},
    )
    return _commit_unique_name(authority)


def authority_update(
    authority_id: int, *, name: str | None = None, city_codes: list[str] | None = None
) -> Authority:
    """Rename an authority or change its jurisdiction (its auditors see the new one at once)."""
    authority = _authority(authority_id)
    changes: dict[str, object] = {}
    if name is not None and name != authority.name:
        changes["name"] = [authority.name, name]
        authority.name = name
    if city_codes is not None:
        codes = normalise_jurisdiction(city_codes)
        if codes != authority.city_codes:
            changes["city_codes"] = [authority.city_codes, codes]
            authority.city_codes = codes
    if changes:
        audit("authority.updated", f"authority:{authority.id}", changes)
    return _commit_unique_name(authority)


def authority_list() -> list[Authority]:
    return list(db.session.scalars(select(Authority).order_by(Authority.id)))


def authority_get(authority_id: int) -> Authority:
    return _authority(authority_id)


def authority_by_name(name: str) -> Authority:
    authority = db.session.scalar(select(Authority).where(Authority.name == name))
    if authority is None:
        raise NotFound(f"No authority named {name!r}.")
    return authority


def auditor_attach(authority_id: int, user_id: int) -> User:
    """Attach an auditor to an authority (moving them from another one)."""
    authority = _authority(authority_id)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    if user.role is not Role.AUDITOR:
        raise ValidationFailed(fields={"user_id": ["Only auditors belong to an authority."]})
    previous = user.authority_id
    user.authority = authority
    audit(
        "auditor.attached",
        f"user:{user.id}",
        {"authority": authority.id, "previous_authority": previous},
    )
    commit()
    return user


def auditor_detach(authority_id: int, user_id: int) -> None:
    """Detach an auditor: with no authority they see nothing until attached again."""
    user = db.session.get(User, user_id)
    if user is None or user.authority_id != authority_id:
        raise NotFound("This user is not an auditor of this authority.")
    user.authority = None
    audit("auditor.detached", f"user:{user.id}", {"authority": authority_id})
    commit()
