"""An organisation's people: members, org admins, invitations, role changes and removal.

The first user of an organisation is its org admin. Org admins invite colleagues with a
one-time link (7 days, single use, revocable; only its SHA-256 is stored), change their role
within the organisation and remove them; a removed member's sessions and tokens end at once.
The last org admin can be neither demoted nor removed, and cannot leave (409). Platform admins
may do all of this for any organisation. Each use case commits once and is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError

from market import auth
from market.errors import Conflict, NotFound, ValidationFailed
from market.extensions import db
from market.models import Invitation, Organization, OrgRole, OrgStatus, OutboxTopic, User
from market.passwords import hash_password
from market.permissions import require_member, require_org_admin
from market.schemas.accounts import check_password_policy
from market.services import notifications
from market.services.accounts import ROLE_FOR_KIND
from market.services.audit import audit
from market.services.pagination import Page, paginate
from market.services.unit_of_work import commit, emit, rollback

MAX_PENDING_INVITATIONS = 50
INVITATION_PREFIX = "sci_"  # a label, so a leaked link is recognisable in secret scanners


class LastOrgAdmin(Conflict):
    code = "last_org_admin"
    message = "An organization keeps at least one org admin: make another member an admin first."


class InvitationInvalid(NotFound):
    code = "invitation_invalid"
    message = "This invitation link is not valid: it has expired, was used or was revoked."


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _organization_locked(organization_id: int) -> Organization:
    # Locked so that two admins demoting or removing each other cannot both pass the
    # "another admin remains" check.
    organization = db.session.get(Organization, organization_id, with_for_update=True)
    if organization is None:
        raise NotFound("No such organization.")
    return organization


def _members_query(organization_id: int) -> Select[User]:
    return select(User).where(User.organization_id == organization_id, User.removed_at.is_(None))


def _member(organization_id: int, user_id: int) -> User:
    user = db.session.scalar(_members_query(organization_id).where(User.id == user_id))
    if user is None:
        raise NotFound("No such member of this organization.")
    return user


def _other_admins(organization_id: int, user_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count(User.id)).where(
                User.organization_id == organization_id,
                User.removed_at.is_(None),
                User.disabled.is_(False),
                User.org_role == OrgRole.ADMIN,
                User.id != user_id,
            )
        )
        or 0
    )


# --- members ------------------------------------------------------------------------------------


def member_list(actor: User, organization_id: int, *, page: int, per_page: int) -> Page:
    """The organisation's current members, oldest first (its members and admins)."""
    require_member(actor, organization_id)
    if db.session.get(Organization, organization_id) is None:
        raise NotFound("No such organization.")
    return paginate(_members_query(organization_id).order_by(User.id), page, per_page)


def member_set_role(actor: User, organization_id: int, user_id: int, org_role: OrgRole) -> User:
    """Make a member an org admin or a plain member; the last org admin stays one (409)."""
    require_org_admin(actor, organization_id)
    _organization_locked(organization_id)
    member = _member(organization_id, user_id)
    if member.org_role is org_role:
        return member
    if org_role is OrgRole.MEMBER and not _other_admins(organization_id, member.id):
        raise LastOrgAdmin()
    previous = member.org_role
    member.org_role = org_role
    audit(
        "member.role_changed",
        f"user:{member.id}",
        {"from": previous.value if previous else None, "to": org_role.value},
        organization_id=organization_id,
    )
    commit()
    return member


def member_remove(actor: User, organization_id: int, user_id: int) -> None:
    """Remove a member (org admins), or leave (the member themselves).

    The member's sessions end and API tokens are revoked in the same commit. The row stays,
    marked removed, because the audit log and the purchases name it.
    """
    leaving = actor.id == user_id and actor.organization_id == organization_id
    if not leaving:
        require_org_admin(actor, organization_id)
    _organization_locked(organization_id)
    member = _member(organization_id, user_id)
    if member.org_role is OrgRole.ADMIN and not _other_admins(organization_id, member.id):
        raise LastOrgAdmin(
            "You are the last org admin: make another member an admin before leaving."
            if leaving
            else None
        )
    now = _now()
    member.removed_at = now
    auth.end_all_access(member, now)
    audit(
        "member.left" if leaving else "member.removed",
        f"user:{member.id}",
        {"email": member.email},
        organization_id=organization_id,
    )
    commit()


# --- invitations --------------------------------------------------------------------------------


def _invitation_link(raw: str) -> str:
    base = current_app.config.get("INVITATION_URL_BASE")
    if not base:
        base = (request.host_url if has_request_context() else "/") + "api/v1/invitations/accept"
    # In the fragment: browsers never send it, so it stays out of access logs and Referer.
    return f"{base}#token={raw}"


def invitation_create(
    actor: User, organization_id: int, email: str, org_role: OrgRole
) -> tuple[Invitation, str | None, str | None]:
    """Invite a colleague: returns the invitation, its raw token and the link (shown once).

    Where email is configured (SMTP, or the embedded default's ``.eml`` files) the link is
    emailed to the invitee instead, and token and link are None.
    """
    require_org_admin(actor, organization_id)
    organization = _organization_locked(organization_id)
    if organization.status is OrgStatus.SUSPENDED:
        raise Conflict("A suspended organization cannot invite anyone.")
    now = _now()
    if db.session.scalar(_members_query(organization_id).where(User.email == email)):
        raise Conflict(fields={"email": ["This person is already a member."]})
    pending = list(
        db.session.scalars(
            select(Invitation).where(
                Invitation.organization_id == organization_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
            )
        )
    )
    if any(invitation.email == email for invitation in pending):
        raise Conflict(
            fields={"email": ["This address already has a pending invitation; revoke it first."]}
        )
    if len(pending) >= MAX_PENDING_INVITATIONS:
        raise Conflict(f"At most {MAX_PENDING_INVITATIONS} invitations may be pending at once.")
    raw = INVITATION_PREFIX + secrets.token_urlsafe(32)
    invitation = Invitation(
        organization_id=organization_id,
        email=email,
        org_role=org_role,
        token_hash=_hash(raw),
        invited_by_id=actor.id,
        created_at=now,
        expires_at=now + timedelta(days=current_app.config["INVITATION_DAYS"]),
    )
    db.session.add(invitation)
    db.session.flush()
    audit(
        "invitation.created",
        f"invitation:{invitation.id}",
        {"email": email, "org_role": org_role.value},
        organization_id=organization_id,
    )
    link = _invitation_link(raw)
    if not notifications.mail_enabled():
        commit()
        return invitation, raw, link
    _mail_invitation(actor, organization, invitation, link)
    commit()
    return invitation, None, None


def _mail_invitation(
    actor: User, organization: Organization, invitation: Invitation, link: str
) -> None:
    """Mail the link to the invitee (through the outbox: a down SMTP server never fails the
    invitation); it is not shown to the admin, so only the holder of the mailbox can accept."""
    emit(
        OutboxTopic.EMAIL_SEND,
        invitation.id,
        notifications.invitation_email(
            to=invitation.email,
            organization=organization.legal_name,
            inviter=actor.display_name or actor.email,
            org_role=invitation.org_role.value,
            link=link,
            expires_at=invitation.expires_at,
        ),
    )


def invitation_list(actor: User, organization_id: int, *, page: int, per_page: int) -> Page:
    """The organisation's invitations, newest first (org admins)."""
    require_org_admin(actor, organization_id)
    query = (
        select(Invitation)
        .where(Invitation.organization_id == organization_id)
        .order_by(Invitation.id.desc())
    )
    return paginate(query, page, per_page)


def invitation_revoke(actor: User, organization_id: int, invitation_id: int) -> None:
    """Revoke a pending invitation; its link stops working (revoking twice is harmless)."""
    require_org_admin(actor, organization_id)
    invitation = db.session.get(Invitation, invitation_id, with_for_update=True)
    if invitation is None or invitation.organization_id != organization_id:
        raise NotFound("No such invitation.")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation was already accepted; remove the member instead.")
    if invitation.revoked_at is None:
        invitation.revoked_at = _now()
        audit(
            "invitation.revoked",
            f"invitation:{invitation.id}",
            {"email": invitation.email},
            organization_id=organization_id,
        )
        commit()


def invitation_accept(token: str, password: str, display_name: str | None) -> User:
    """Accept an invitation: creates the user in the organisation (the link works once).

    Throttled per client address like every unauthenticated write. An unknown, expired, used
    or revoked link gets one and the same answer.
    """
    auth.throttle_anonymous_write("accepting an invitation")
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == _hash(token)).with_for_update()
    )
    if invitation is None or invitation.state != "pending":
        raise InvitationInvalid()
    organization = invitation.organization
    if organization.status is OrgStatus.SUSPENDED:
        raise Conflict("This organization is suspended; the invitation cannot be used now.")
    # The link holder proves they received mail at this address: telling them it already has
    # an account reveals nothing they could not learn by signing in.
    if db.session.scalar(select(User.id).where(User.email == invitation.email)):
        raise Conflict(
            fields={"email": ["This email address already has an account on the platform."]}
        )
    problems = check_password_policy(
        password, invitation.email, (organization.legal_name, organization.english_name)
    )
    if problems:
        raise ValidationFailed(fields={"password": problems})
    user = User(
        email=invitation.email,
        password_hash=hash_password(password),
        display_name=display_name,
        role=ROLE_FOR_KIND[organization.kind],
        org_role=invitation.org_role,
        organization=organization,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:
        rollback()
        raise Conflict(
            fields={"email": ["This email address already has an account on the platform."]}
        ) from exc
    invitation.accepted_at = _now()
    invitation.accepted_user_id = user.id
    audit(
        "invitation.accepted",
        f"invitation:{invitation.id}",
        {"user": user.id, "org_role": invitation.org_role.value},
        organization_id=organization.id,
        actor=user,
    )
    commit()
    return user
