"""Organizations: registration (public) and an administrator's verification and suspension."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from market.api.pagination import page_of
from market.models import Organization, Role
from market.permissions import ALL_ROLES, actor, allow, public
from market.schemas.accounts import (
    OrganizationDetailSchema,
    OrganizationQuerySchema,
    OrganizationRegisterSchema,
    OrganizationSchema,
    RegistrationAcceptedSchema,
    SuspendSchema,
)
from market.services import accounts

blp = Blueprint(
    "organizations", __name__, description="OEM and supplier organizations and their status"
)

OrganizationPageSchema = page_of(OrganizationSchema)


@blp.route("/organizations")
class Organizations(MethodView):
    @public
    @blp.arguments(OrganizationRegisterSchema)
    @blp.response(202, RegistrationAcceptedSchema)
    @blp.alt_response(409, description="The USCC is already registered (it is public)")
    @blp.alt_response(429, description="Too many unauthenticated writes from this address")
    @blp.alt_response(503, description="The rate limiter's store is down: fails closed")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Register an organization with its first user, its org admin (pending until verified).

        The answer is the same whether or not the email address already has an account.
        """
        return {"message": accounts.organization_register(data)}

    @allow(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(OrganizationQuerySchema, location="query")
    @blp.response(200, OrganizationPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List organizations (admins; auditors: their jurisdiction), by kind and status.

        Filter by kind (oem, supplier) and status (pending, active, suspended). Auditors see the
        organizations with a plant or site in their jurisdiction.
        """
        return accounts.organization_list(actor(), **query).as_dict()


@blp.route("/organizations/<int:organization_id>")
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(200, OrganizationDetailSchema)
def organization_detail(organization_id: int) -> Organization:
    """One organization with its members (its members, auditors of its city, admins).

    Members are listed with their role within the organization. Other users get 404, not 403: the
    API does not tell whether an organization they may not see exists.
    """
    return accounts.organization_get(actor(), organization_id)


@blp.route("/organizations/<int:organization_id>/verify", methods=["POST"])
@allow(Role.ADMIN)
@blp.response(200, OrganizationSchema)
@blp.alt_response(409, description="The organization is not pending")
def organization_verify(organization_id: int) -> Organization:
    """Verify a pending organization (admin): it becomes active.

    An administrator checks the organization's identity (its unified social credit code) before it
    can post demands, quote, be matched or record purchases. Verifying an active organization is a
    409.
    """
    return accounts.organization_verify(actor(), organization_id)


@blp.route("/organizations/<int:organization_id>/suspend", methods=["POST"])
@allow(Role.ADMIN)
@blp.arguments(SuspendSchema)
@blp.response(200, OrganizationSchema)
@blp.alt_response(409, description="The organization is already suspended")
def organization_suspend(data: dict[str, Any], organization_id: int) -> Organization:
    """Suspend an organization (admin): its sessions end and its API tokens are revoked.

    Its members can no longer act, its suppliers drop out of matches and search at once, and its
    open work stays as it was. Reversible with ``reactivate``.
    """
    return accounts.organization_suspend(actor(), organization_id, data.get("reason"))


@blp.route("/organizations/<int:organization_id>/reactivate", methods=["POST"])
@allow(Role.ADMIN)
@blp.response(200, OrganizationSchema)
@blp.alt_response(409, description="The organization is not suspended")
def organization_reactivate(organization_id: int) -> Organization:
    """Lift a suspension (admin).

    The organization becomes active again; its members sign in anew (their sessions and tokens
    ended with the suspension).
    """
    return accounts.organization_reactivate(actor(), organization_id)
