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

from market.errors import Forbidden, Unauthorized
from market.models import Role, User

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "public"


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
