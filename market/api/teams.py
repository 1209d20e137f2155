"""An organisation's people: members, invitations and the audit log."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from market.api.pagination import page_of
from market.models import User
from market.permissions import ALL_ROLES, actor, allow, public
from market.schemas import PageQuerySchema
from market.schemas.accounts import (
    AuditLogEntrySchema,
    AuditLogQuerySchema,
    InvitationAcceptSchema,
    InvitationCreatedSchema,
    InvitationCreateSchema,
    InvitationSchema,
    MemberRoleSchema,
    UserSchema,
)
from market.services import teams
from market.services.audit import audit_log_list

blp = Blueprint("teams", __name__, description="Organisation members, invitations, audit log")

MemberPageSchema = page_of(UserSchema)
InvitationPageSchema = page_of(InvitationSchema)
AuditLogPageSchema = page_of(AuditLogEntrySchema)
MEMBERS = "/organizations/<int:organization_id>/members"
INVITATIONS = "/organizations/<int:organization_id>/invitations"


@blp.route(MEMBERS)
@allow(*ALL_ROLES, pending_ok=True)
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, MemberPageSchema)
@blp.alt_response(403, description="Not a member of this organization")
def member_list(query: dict[str, Any], organization_id: int) -> dict[str, Any]:
    """The organization's current members (its members and admins).

    Each member with role within the organization (org admin or member) and product role (buyer,
    supplier user).
    """
    return teams.member_list(actor(), organization_id, **query).as_dict()


@blp.route(MEMBERS + "/<int:user_id>")
class Member(MethodView):
    @allow(*ALL_ROLES, pending_ok=True)
    @blp.arguments(MemberRoleSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(403, description="Not an org admin of this organization")
    @blp.alt_response(409, description="It would leave the organization without an org admin")
    def patch(self, data: dict[str, Any], organization_id: int, user_id: int) -> User:
        """Change a member's role within the organization (org admins).

        The last org admin cannot be demoted: every organization keeps at least one. The change
        applies to the member's next request.
        """
        return teams.member_set_role(actor(), organization_id, user_id, data["org_role"])

    @allow(*ALL_ROLES, pending_ok=True)
    @blp.response(204)
    @blp.alt_response(403, description="Not an org admin of this organization")
    @blp.alt_response(409, description="The last org admin cannot be removed or leave")
    def delete(self, organization_id: int, user_id: int) -> None:
        """Remove a member (org admins) or leave (oneself): their sessions and tokens end.

        The user loses access at once. The last org admin cannot leave or be removed; appoint
        another first.
        """
        teams.member_remove(actor(), organization_id, user_id)


@blp.route(INVITATIONS)
class Invitations(MethodView):
    @allow(*ALL_ROLES, pending_ok=True)
    @blp.arguments(InvitationCreateSchema)
    @blp.response(201, InvitationCreatedSchema)
    @blp.alt_response(403, description="Not an org admin of this organization")
    @blp.alt_response(409, description="Already a member, already invited, or suspended")
    def post(self, data: dict[str, Any], organization_id: int) -> dict[str, Any]:
        """Invite a colleague (org admins): the one-time link is shown here, once.

        Where email is configured (SMTP, or the embedded default's .eml files) the link is
        emailed to the invitee instead and not shown (``emailed: true``).
        """
        invitation, raw, link = teams.invitation_create(
            actor(), organization_id, data["email"], data["org_role"]
        )
        fields = {name: getattr(invitation, name) for name in InvitationSchema().fields}
        return {**fields, "token": raw, "link": link, "emailed": raw is None}

    @allow(*ALL_ROLES, pending_ok=True)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, InvitationPageSchema)
    @blp.alt_response(403, description="Not an org admin of this organization")
    def get(self, query: dict[str, Any], organization_id: int) -> dict[str, Any]:
        """The organization's invitations, newest first (org admins).

        Pending, accepted, revoked and expired invitations with who invited whom and when; the link
        itself is never shown again.
        """
        return teams.invitation_list(actor(), organization_id, **query).as_dict()


@blp.route(INVITATIONS + "/<int:invitation_id>", methods=["DELETE"])
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(204)
@blp.alt_response(403, description="Not an org admin of this organization")
@blp.alt_response(409, description="The invitation was already accepted")
def invitation_revoke(organization_id: int, invitation_id: int) -> None:
    """Revoke a pending invitation (org admins): its link stops working.

    Accepted or expired invitations cannot be revoked (409).
    """
    teams.invitation_revoke(actor(), organization_id, invitation_id)


@blp.route("/invitations/accept", methods=["POST"])
@public
@blp.arguments(InvitationAcceptSchema)
@blp.response(201, UserSchema)
@blp.alt_response(404, description="Unknown, expired, used or revoked link (one answer)")
@blp.alt_response(409, description="The address already has an account")
@blp.alt_response(429, description="Too many unauthenticated writes from this address")
def invitation_accept(data: dict[str, Any]) -> User:
    """Accept an invitation: creates your account in the organization; then sign in.

    Takes the one-time token from the link, the new user's name and a password that passes the
    strength check. The account joins the inviting organization with the role the invitation named.
    """
    return teams.invitation_accept(data["token"], data["password"], data["display_name"])


@blp.route("/audit-log")
@allow(*ALL_ROLES, pending_ok=True)
@blp.arguments(AuditLogQuerySchema, location="query")
@blp.response(200, AuditLogPageSchema)
@blp.alt_response(403, description="Only org admins (their organization's) and admins")
def audit_log(query: dict[str, Any]) -> dict[str, Any]:
    """Who did what, when, from where: org admins their organization's, admins all.

    Entries for organizations, members, tokens, policies, baselines, certificates and claims,
    newest first; filter by organization, actor and action. The log is append-only.
    """
    return audit_log_list(actor(), **query).as_dict()
