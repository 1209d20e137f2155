"""Who may call what.

Every view declares its audience with :func:`allow` (roles) or :func:`public`; the
authorization-matrix test fails for a route that declares neither. Ownership ("this buyer's
demand", "this supplier's site") is checked in the use case by a permission function here.

A member of a *pending* organisation passes only views declared with ``pending_ok=True``
(their own account and organisation): until an admin verifies it, it sees only itself.
Auditors see only their authority's jurisdiction: :func:`auditor_city_prefixes` and
:func:`jurisdiction_condition` are the one way to apply it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask_login import current_user
from sqlalchemy import ColumnElement, false, or_

from market.errors import Forbidden, NotFound, Unauthorized
from market.models import Organization, OrgKind, OrgStatus, Role, User

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "public"
# Every signed-in role, for the self-service routes (``@allow(*ALL_ROLES)``).
ALL_ROLES: tuple[Role, ...] = tuple(Role)
# Roles that may read every organization's records (the auditor never writes).
OVERSIGHT_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})


class OrganizationNotActive(Forbidden):
    code = "organization_not_active"
    message = "Your organization is not active."


class OrganizationPending(Forbidden):
    code = "organization_pending"
    message = (
        "Your organization is pending verification by an administrator; until then it sees "
        "only its own account and organization."
    )


class OrgAdminRequired(Forbidden):
    code = "org_admin_required"
    message = "Only an admin of this organization can do this."


def actor() -> User:
    """The authenticated, active user, or 401."""
    if not current_user.is_authenticated:
        raise Unauthorized()
    return current_user._get_current_object()


def is_pending(user: User) -> bool:
    organization = user.organization
    return organization is not None and organization.status is OrgStatus.PENDING


OWN_ORGANIZATION = "own_organization"
# The path parameters that name the organisation a view acts on.
_ORGANIZATION_ARGS = ("org_id", "organization_id")


def _pending_may_pass(pending_ok: bool | str, kwargs: dict[str, Any], user: User) -> bool:
    if pending_ok is True:
        return True
    if pending_ok == OWN_ORGANIZATION:
        named = [kwargs[name] for name in _ORGANIZATION_ARGS if name in kwargs]
        return bool(named) and all(org_id == user.organization_id for org_id in named)
    return False


def allow(*roles: Role, pending_ok: bool | str = False) -> Callable[[F], F]:
    """The view needs one of ``roles`` (401 when anonymous, 403 for another role).

    Members of a pending organisation get 403 ``organization_pending`` unless ``pending_ok``
    is True (their own account: the view checks the rest) or :data:`OWN_ORGANIZATION` (the
    organisation in the path must be their own: they may build their own profile).
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            user = actor()
            if user.role not in roles:
                raise Forbidden()
            if is_pending(user) and not _pending_may_pass(pending_ok, kwargs, user):
                raise OrganizationPending()
            return view(*args, **kwargs)

        guarded.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
        guarded.pending_ok = pending_ok  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """The view is open to anonymous callers."""
    view.allowed_roles = PUBLIC  # type: ignore[attr-defined]
    return view


def require_member(user: User, organization_id: int) -> None:
    """Admins act on any organization; others only on their own (403 otherwise)."""
    if user.role is Role.ADMIN:
        return
    if user.organization_id != organization_id:
        raise Forbidden()


def require_active_organization(user: User) -> Organization:
    """The caller's own organization, which must be verified and not suspended (403 otherwise).

    Posting demands, being matched and recording purchases all need this: a pending
    organization has not been checked by an administrator yet, a suspended one was stopped.
    """
    organization = user.organization
    if organization is None:
        raise OrganizationNotActive("Only members of an OEM or supplier organization can do this.")
    if organization.status is OrgStatus.PENDING:
        raise OrganizationNotActive(
            "Your organization is pending verification by an administrator; "
            "it can do this once it has been verified."
        )
    if organization.status is OrgStatus.SUSPENDED:
        raise OrganizationNotActive("Your organization is suspended; contact an administrator.")
    return organization


def can_view_organization(user: User, organization: Organization | None) -> Organization:
    """Admins, auditors of its city and the organization's own members see it; for others it
    does not exist."""
    if organization is None:
        raise NotFound("No such organization.")
    if user.role is Role.ADMIN or user.organization_id == organization.id:
        return organization
    if user.role is Role.AUDITOR and city_in_jurisdiction(
        organization.city_code, auditor_city_prefixes(user)
    ):
        return organization
    raise NotFound("No such organization.")


def require_org_admin(user: User, organization_id: int) -> None:
    """Platform admins act on any organisation's team; org admins on their own (403 otherwise).

    Someone outside the organisation learns nothing about it (404).
    """
    if user.role is Role.ADMIN:
        return
    if user.organization_id != organization_id:
        raise NotFound("No such organization.")
    if not user.is_org_admin:
        raise OrgAdminRequired()


# --- auditors' jurisdictions --------------------------------------------------------------------


def auditor_city_prefixes(user: User) -> tuple[str, ...] | None:
    """The GB/T 2260 code prefixes ``user`` may see: None means no restriction (admins).

    An auditor sees their authority's jurisdiction (``("44",)`` for the province); an auditor
    attached to no authority, and anyone else, sees nothing (an empty tuple).
    """
    if user.role is Role.ADMIN:
        return None
    if user.role is Role.AUDITOR and user.authority is not None:
        return jurisdiction_prefixes(user.authority.city_codes)
    return ()


def jurisdiction_prefixes(codes: list[str]) -> tuple[str, ...]:
    """GB/T 2260 codes as prefixes: ``440100`` covers ``4401xx``, ``44`` the province."""
    prefixes = []
    for code in codes:
        while len(code) > 2 and code.endswith("00"):
            code = code[:-2]
        prefixes.append(code)
    return tuple(prefixes)


def city_in_jurisdiction(city_code: str | None, prefixes: tuple[str, ...] | None) -> bool:
    """Whether a city code lies in a jurisdiction (None: everywhere)."""
    if prefixes is None:
        return True
    return bool(city_code) and any(city_code.startswith(p) for p in prefixes)  # type: ignore[union-attr]


def jurisdiction_condition(
    column: Any, prefixes: tuple[str, ...] | None
) -> ColumnElement[bool] | None:
    """A WHERE condition keeping rows whose city code ``column`` is in the jurisdiction.

    None when there is nothing to filter (admins); ``false()`` for an empty jurisdiction.
    Prefixes are digits (checked when an authority is saved), so LIKE needs no escaping.
    Use: ``cond = jurisdiction_condition(Site.city_code, auditor_city_prefixes(user))`` then
    ``if cond is not None: query = query.where(cond)``.
    """
    if prefixes is None:
        return None
    if not prefixes:
        return false()
    return or_(*(column.startswith(prefix, autoescape=True) for prefix in prefixes))


def require_active_org(user: User, kind: OrgKind, doing: str) -> Organization:
    """The user's verified organization, which must be of ``kind`` (403 with why otherwise)."""
    org = require_active_organization(user)
    if org.kind is not kind:
        raise Forbidden(f"Only users of {kind.value} organizations can {doing}.")
    return org
