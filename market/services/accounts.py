"""Accounts use cases: registering and governing organizations, signing in, API tokens, staff.

Each public function is one use case: it checks access, validates, writes, and commits once.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from marshmallow.validate import Email
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from market import auth
from market.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from market.extensions import db
from market.models import (
    ApiToken,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxTopic,
    Role,
    User,
)
from market.passwords import hash_password, needs_rehash, verify_password
from market.permissions import can_view_organization
from market.schemas.accounts import check_password_policy
from market.services import security_log
from market.services.pagination import Page, paginate
from market.services.security_log import SecurityEventKind
from market.services.unit_of_work import commit, emit, rollback
from search.database import text_conditions
from search.text import parse_query

# The same answer for an unknown account and a wrong password: nothing to enumerate.
BAD_CREDENTIALS = "Email or password is incorrect."
MAX_ACTIVE_TOKENS = 25
STAFF_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})
ROLE_FOR_KIND = {OrgKind.OEM: Role.BUYER, OrgKind.SUPPLIER: Role.SUPPLIER}


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _now() -> datetime:
    return datetime.now(UTC)


# --- organizations ------------------------------------------------------------------------------


def organization_register(data: dict[str, Any]) -> tuple[Organization, User]:
    """Register an organization (pending until an admin verifies it) with its first user.

    The user's role follows from the organization's kind (an OEM's users buy, a supplier's
    users supply); nothing in the request can choose it.
    """
    first_user = data["user"]
    email = normalise_email(first_user["email"])
    if db.session.scalar(select(Organization.id).where(Organization.uscc == data["uscc"])):
        raise Conflict(
            "This organization is already registered.",
            fields={"uscc": ["An organization with this USCC is already registered."]},
        )
    if db.session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(
            "This email address is already in use.",
            fields={"email": ["An account with this email address already exists."]},
        )
    organization = Organization(
        kind=data["kind"],
        uscc=data["uscc"],
        legal_name=data["legal_name"],
        english_name=data.get("english_name"),
        city_code=data["city_code"],
        status=OrgStatus.PENDING,
    )
    user = User(
        email=email,
        password_hash=hash_password(first_user["password"]),
        display_name=first_user.get("display_name"),
        role=ROLE_FOR_KIND[data["kind"]],
        organization=organization,
    )
    db.session.add_all([organization, user])
    try:
        db.session.flush()
        security_log.record(
            SecurityEventKind.ORG_REGISTERED,
            user_id=user.id,
            detail=f"organization {organization.id} ({organization.kind.value}) registered",
        )
        commit()
    except IntegrityError as exc:
        # Two registrations raced past the checks above; the unique constraints decided.
        rollback()
        raise Conflict("This organization or email address is already registered.") from exc
    return organization, user


def organization_list(
    actor: User,
    *,
    page: int,
    per_page: int,
    kind: OrgKind | None,
    status: OrgStatus | None,
    q: str | None = None,
) -> Page:
    """Organizations for admins and auditors, oldest first, optionally by kind, status and
    words of the names or description."""
    query = select(Organization).order_by(Organization.id)
    if q:
        words = parse_query(q)
        query = query.where(
            *text_conditions(words, Organization.search_names, Organization.search_text)
        )
    if kind is not None:
        query = query.where(Organization.kind == kind)
    if status is not None:
        query = query.where(Organization.status == status)
    return paginate(query, page, per_page)


def organization_get(actor: User, organization_id: int) -> Organization:
    """One organization with its members (its own members, auditors and admins)."""
    return can_view_organization(actor, db.session.get(Organization, organization_id))


def _organization_for_admin(organization_id: int) -> Organization:
    organization = db.session.get(Organization, organization_id, with_for_update=True)
    if organization is None:
        raise NotFound("No such organization.")
    return organization


def _status_changed(organization: Organization) -> None:
    """Search indexes suppliers: a status change re-syncs the document (suspended ones vanish)."""
    if organization.kind is OrgKind.SUPPLIER:
        organization.bump_version()
        emit(OutboxTopic.SEARCH_SYNC, organization.id)


def organization_verify(actor: User, organization_id: int) -> Organization:
    """An admin verifies a pending organization: it becomes active."""
    organization = _organization_for_admin(organization_id)
    if organization.status is not OrgStatus.PENDING:
        raise Conflict(
            f"Only pending organizations can be verified; this one is {organization.status.value}."
        )
    organization.status = OrgStatus.ACTIVE
    organization.verified_at = _now()
    _status_changed(organization)
    security_log.record(
        SecurityEventKind.ORG_VERIFIED,
        user_id=actor.id,
        detail=f"organization {organization.id} verified",
    )
    commit()
    return organization


def organization_suspend(actor: User, organization_id: int, reason: str | None) -> Organization:
    """An admin suspends an organization: its users' sessions end, their API tokens are revoked."""
    organization = _organization_for_admin(organization_id)
    if organization.status is OrgStatus.SUSPENDED:
        raise Conflict("This organization is already suspended.")
    organization.status = OrgStatus.SUSPENDED
    now = _now()
    for member in organization.users:
        member.rotate_session_token()
    member_ids = [member.id for member in organization.users]
    if member_ids:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.user_id.in_(member_ids), ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    _status_changed(organization)
    security_log.record(
        SecurityEventKind.ORG_SUSPENDED,
        user_id=actor.id,
        detail=f"organization {organization.id} suspended" + (f": {reason}" if reason else ""),
    )
    commit()
    return organization


def organization_reactivate(actor: User, organization_id: int) -> Organization:
    """An admin lifts a suspension: back to active, or to pending if it was never verified."""
    organization = _organization_for_admin(organization_id)
    if organization.status is not OrgStatus.SUSPENDED:
        raise Conflict(
            "Only suspended organizations can be reactivated; "
            f"this one is {organization.status.value}."
        )
    organization.status = OrgStatus.ACTIVE if organization.verified_at else OrgStatus.PENDING
    _status_changed(organization)
    security_log.record(
        SecurityEventKind.ORG_REACTIVATED,
        user_id=actor.id,
        detail=f"organization {organization.id} reactivated as {organization.status.value}",
    )
    commit()
    return organization


# --- signing in ---------------------------------------------------------------------------------


def login(email: str, password: str) -> tuple[User, str]:
    """Check credentials and start a browser session; returns the user and the CSRF token.

    An unknown account and a wrong password take the same path (an argon2 check against a
    dummy hash for the unknown one) and get the same 401.
    """
    email = normalise_email(email)
    auth.throttle_login(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if not verify_password(user.password_hash if user else None, password):
        security_log.record(
            SecurityEventKind.LOGIN_FAILED,
            user_id=user.id if user else None,
            detail="wrong password" if user else "unknown account",
        )
        commit()
        raise Unauthorized(BAD_CREDENTIALS)
    assert user is not None
    if not user.is_active:
        security_log.record(SecurityEventKind.LOGIN_REFUSED, user_id=user.id)
        commit()
        raise Forbidden("This account is disabled or its organization is suspended.")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = _now()
    security_log.record(SecurityEventKind.LOGIN_OK, user_id=user.id)
    commit()
    return user, auth.start_session(user)


def logout(actor: User) -> None:
    """End the user's sessions: the session token rotates, so copies of the cookie stop working."""
    actor.rotate_session_token()
    security_log.record(SecurityEventKind.LOGOUT, user_id=actor.id)
    commit()
    auth.end_session()


def password_change(actor: User, current_password: str, new_password: str) -> None:
    """Change one's password; every other session ends, this one (if a session) carries on."""
    auth.throttle_login(actor.email)
    if not verify_password(actor.password_hash, current_password):
        security_log.record(
            SecurityEventKind.LOGIN_FAILED, user_id=actor.id, detail="password change"
        )
        commit()
        raise ValidationFailed(fields={"current_password": ["This is not your current password."]})
    problems = check_password_policy(new_password, actor.email)
    if hmac.compare_digest(new_password.encode(), current_password.encode()):
        problems.append("The new password must differ from the current one.")
    if problems:
        raise ValidationFailed(fields={"new_password": problems})
    actor.password_hash = hash_password(new_password)
    actor.password_changed_at = _now()
    actor.rotate_session_token()
    security_log.record(SecurityEventKind.PASSWORD_CHANGED, user_id=actor.id)
    commit()
    if auth.auth_method() == "session":
        auth.start_session(actor, keep_csrf_token=True)


# --- API tokens ---------------------------------------------------------------------------------


def token_create(actor: User, name: str, expires_in_days: int | None) -> tuple[ApiToken, str]:
    """Issue a bearer token; the raw token is returned once and only its hash is kept."""
    now = _now()
    active = db.session.scalar(
        select(func.count(ApiToken.id)).where(
            ApiToken.user_id == actor.id,
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
    )
    if (active or 0) >= MAX_ACTIVE_TOKENS:
        raise Conflict(f"You already have {MAX_ACTIVE_TOKENS} active tokens; revoke one first.")
    raw = auth.new_api_token()
    token = ApiToken(
        user_id=actor.id,
        name=name,
        token_hash=auth.hash_api_token(raw),
        prefix=raw[:12],
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.session.add(token)
    db.session.flush()
    security_log.record(
        SecurityEventKind.TOKEN_CREATED, user_id=actor.id, detail=f"api token {token.id}"
    )
    commit()
    return token, raw


def token_list(actor: User, *, page: int, per_page: int) -> Page:
    """The caller's own API tokens (revoked ones included), newest first."""
    query = select(ApiToken).where(ApiToken.user_id == actor.id).order_by(ApiToken.id.desc())
    return paginate(query, page, per_page)


def token_revoke(actor: User, token_id: int) -> None:
    """Revoke one's own token (admins: anyone's). Another user's token does not exist for you."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != actor.id and actor.role is not Role.ADMIN):
        raise NotFound("No such API token.")
    if token.revoked_at is None:
        token.revoked_at = _now()
        security_log.record(
            SecurityEventKind.TOKEN_REVOKED,
            user_id=actor.id,
            detail=f"api token {token.id} of user {token.user_id}",
        )
        commit()


def security_events(
    actor: User, *, page: int, per_page: int, kind: str | None, user_id: int | None
) -> Page:
    """Security events for admins, newest first."""
    return paginate(security_log.events_query(kind, user_id), page, per_page)


# --- staff accounts (command line) --------------------------------------------------------------


def _user_by_email(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"No user with the email address {normalise_email(email)}.")
    return user


def role_fits(role: Role, organization: Organization | None) -> bool:
    """Buyers belong to an OEM, suppliers to a supplier; auditors and admins to no organization."""
    if organization is None:
        return role in STAFF_ROLES
    return ROLE_FOR_KIND[organization.kind] is role


def staff_user_create(
    email: str, role: Role, password: str, display_name: str | None = None
) -> User:
    """Create an auditor or admin (only the command line can)."""
    if role not in STAFF_ROLES:
        raise ValidationFailed(
            fields={"role": ["Only auditors and admins are created here; others register."]}
        )
    email = normalise_email(email)
    try:
        Email()(email)
    except ValidationError as exc:
        raise ValidationFailed(fields={"email": exc.messages}) from exc
    problems = check_password_policy(password, email)
    if problems:
        raise ValidationFailed(fields={"password": problems})
    if db.session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(fields={"email": ["An account with this email address already exists."]})
    user = User(
        email=email,
        password_hash=hash_password(password),
        role=role,
        display_name=display_name,
    )
    db.session.add(user)
    db.session.flush()
    security_log.record(
        SecurityEventKind.USER_CREATED, user_id=user.id, detail=f"{role.value} created by CLI"
    )
    commit()
    return user


def staff_user_set_role(email: str, role: Role) -> User:
    """Change a user's role, if the new role fits the user's organization (or lack of one)."""
    user = _user_by_email(email)
    if user.role is role:
        return user
    if not role_fits(role, user.organization):
        raise ValidationFailed(
            fields={
                "role": [
                    f"A {role.value} cannot belong to "
                    + (
                        f"a {user.organization.kind.value} organization."
                        if user.organization
                        else "no organization."
                    )
                ]
            }
        )
    previous = user.role
    user.role = role
    # New powers or fewer: either way, sessions started under the old role end.
    user.rotate_session_token()
    security_log.record(
        SecurityEventKind.ROLE_CHANGED,
        user_id=user.id,
        detail=f"role {previous.value} -> {role.value} by CLI",
    )
    commit()
    return user


def staff_user_disable(email: str) -> User:
    """Disable a user: sessions end and API tokens are revoked."""
    user = _user_by_email(email)
    user.disabled = True
    user.rotate_session_token()
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    security_log.record(SecurityEventKind.USER_DISABLED, user_id=user.id, detail="by CLI")
    commit()
    return user


def users_list(role: Role | None = None) -> list[User]:
    """Every user (optionally of one role), oldest first."""
    query = select(User).order_by(User.id)
    if role is not None:
        query = query.where(User.role == role)
    return list(db.session.scalars(query))
