"""Who may call what.

Every view declares its audience with :func:`allow` (roles) or :func:`public`; the
authorization-matrix test fails for a route that declares neither. Ownership ("this buyer's
demand", "this supplier's site") is checked in the use case by a permission function here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask_login import current_user

from market.errors import Forbidden, NotFound, Unauthorized
from market.models import Organization, OrgStatus, Role, User

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "public"
# Every signed-in role, for the self-service routes (``@allow(*ALL_ROLES)``).
ALL_ROLES: tuple[Role, ...] = tuple(Role)
# Roles that may read every organization's records (the auditor never writes).
OVERSIGHT_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})


class OrganizationNotActive(Forbidden):
    code = "organization_not_active"
    message = "Your organization is not active."


def actor() -> User:
    """The authenticated, active user, or 401."""
    if not current_user.is_authenticated:
        raise Unauthorized()
    return current_user._get_current_object()


def allow(*roles: Role) -> Callable[[F], F]:
    """The view needs one of ``roles`` (401 when anonymous, 403 for another role)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            user = actor()
            if user.role not in roles:
                raise Forbidden()
            return view(*args, **kwargs)

        guarded.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
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
    """Admins, auditors and the organization's own members see it; for others it does not exist."""
    if organization is None:
        raise NotFound("No such organization.")
    if user.role in OVERSIGHT_ROLES or user.organization_id == organization.id:
        return organization
    raise NotFound("No such organization.")
