"""Accounts use cases: registering and governing organizations, signing in, API tokens, staff.

Each public function is one use case: it checks access, validates, writes, and commits once.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from marshmallow.validate import Email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from market import auth
from market.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from market.extensions import db
from market.models import (
    ApiToken,
    Authority,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    OutboxTopic,
    Role,
    User,
)
from market.passwords import hash_password, needs_rehash, verify_password
from market.permissions import (
    auditor_city_prefixes,
    can_view_organization,
    jurisdiction_condition,
)
from market.schemas.accounts import check_password_policy
from market.services import security_log
from market.services.audit import audit
from market.services.pagination import Page, paginate
from market.services.security_log import SecurityEventKind
from market.services.unit_of_work import commit, emit, rollback
from search.database import text_conditions
from search.text import parse_query

# The same answer for an unknown account and a wrong password: nothing to enumerate.
BAD_CREDENTIALS = "Email or password is incorrect."
# The same answer whether or not the email address already has an account.
REGISTRATION_RECEIVED = (
    "Registration received. If this email address can be used, sign in with it to follow "
    "the organization's verification; otherwise sign in with your existing account."
)
MAX_ACTIVE_TOKENS = 25
STAFF_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})
ROLE_FOR_KIND = {OrgKind.OEM: Role.BUYER, OrgKind.SUPPLIER: Role.SUPPLIER}


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _now() -> datetime:
    return datetime.now(UTC)


# --- organizations ------------------------------------------------------------------------------


def organization_register(data: dict[str, Any]) -> str:
    """Register an organization (pending until an admin verifies it) with its first user, who
    becomes its org admin; returns the answer for the client.

    The user's role follows from the organization's kind (an OEM's users buy, a supplier's
    users supply); nothing in the request can choose it. Throttled per client address. The
    answer is the same whether or not the email address already has an account (that
    registration is dropped and recorded for admins); a USCC already registered is a clear
    409, because the USCC is public (printed on the business licence) and says nothing about
    any person.
    """
    auth.throttle_anonymous_write("registration")
    first_user = data["user"]
    email = normalise_email(first_user["email"])
    _refuse_registered_uscc(data["uscc"])
    # Hashed on both paths, so the time taken does not tell whether the address is known.
    password_hash = hash_password(first_user["password"])
    owner_id = db.session.scalar(select(User.id).where(User.email == email))
    if owner_id is not None:
        security_log.record(
            SecurityEventKind.REGISTRATION_EMAIL_TAKEN,
            user_id=owner_id,
            detail=f"registration of USCC {data['uscc']} with this account's address",
        )
        commit()
        return REGISTRATION_RECEIVED
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
        password_hash=password_hash,
        display_name=first_user.get("display_name"),
        role=ROLE_FOR_KIND[data["kind"]],
        org_role=OrgRole.ADMIN,
        organization=organization,
    )
    db.session.add_all([organization, user])
    try:
        db.session.flush()
        _record_registration(organization, user)
        commit()
    except IntegrityError:
        # Two registrations raced past the checks above; the unique constraints decided.
        rollback()
        _refuse_registered_uscc(data["uscc"])
    return REGISTRATION_RECEIVED


def _record_registration(organization: Organization, user: User) -> None:
    security_log.record(
        SecurityEventKind.ORG_REGISTERED,
        user_id=user.id,
        detail=f"organization {organization.id} ({organization.kind.value}) registered",
    )
    audit(
        "organization.registered",
        f"organization:{organization.id}",
        {"kind": organization.kind.value, "first_user": user.id},
        organization_id=organization.id,
        actor=user,
    )


def _refuse_registered_uscc(uscc: str) -> None:
    if db.session.scalar(select(Organization.id).where(Organization.uscc == uscc)):
        raise Conflict(
            "This organization is already registered.",
            fields={"uscc": ["An organization with this USCC is already registered."]},
        )


def organization_list(
    actor: User,
    *,
    page: int,
    per_page: int,
    kind: OrgKind | None,
    status: OrgStatus | None,
    q: str | None = None,
) -> Page:
    """Organizations for admins and auditors (in their jurisdiction), oldest first, optionally
    by kind, status and words of the names or description."""
    query = select(Organization).order_by(Organization.id)
    in_jurisdiction = jurisdiction_condition(Organization.city_code, auditor_city_prefixes(actor))
    if in_jurisdiction is not None:
        query = query.where(in_jurisdiction)
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
    audit(
        "organization.verified",
        f"organization:{organization.id}",
        organization_id=organization.id,
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
        auth.end_all_access(member, now)
    _status_changed(organization)
    security_log.record(
        SecurityEventKind.ORG_SUSPENDED,
        user_id=actor.id,
        detail=f"organization {organization.id} suspended" + (f": {reason}" if reason else ""),
    )
    audit(
        "organization.suspended",
        f"organization:{organization.id}",
        {"reason": reason},
        organization_id=organization.id,
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
    audit(
        "organization.reactivated",
        f"organization:{organization.id}",
        {"status": organization.status.value},
        organization_id=organization.id,
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
    csrf_token = auth.start_session(user)
    commit()
    return user, csrf_token


def logout(actor: User) -> None:
    """End this session: every copy of its cookie stops working; other sessions carry on.

    With a bearer token there is no session to end; revoke the token instead.
    """
    current = auth.current_session()
    if current is not None and current.ended_at is None:
        current.ended_at = _now()
    security_log.record(SecurityEventKind.LOGOUT, user_id=actor.id)
    commit()
    auth.end_session()


def organization_names(user: User) -> tuple[str | None, ...]:
    organization = user.organization
    return (organization.legal_name, organization.english_name) if organization else ()


def logout_all(actor: User) -> None:
    """Sign out everywhere: every session ends and every API token is revoked."""
    auth.end_all_access(actor, _now())
    security_log.record(SecurityEventKind.LOGOUT_ALL, user_id=actor.id)
    audit("user.signed_out_everywhere", f"user:{actor.id}", organization_id=actor.organization_id)
    commit()
    auth.end_session()


def _check_own_password(actor: User, password: str, field: str, message: str) -> None:
    """Counted like a sign-in attempt (a stolen session must not become a guessing oracle)."""
    auth.throttle_login(actor.email)
    if not verify_password(actor.password_hash, password):
        security_log.record(SecurityEventKind.LOGIN_FAILED, user_id=actor.id, detail=field)
        commit()
        raise ValidationFailed(fields={field: [message]})


def password_change(actor: User, current_password: str, new_password: str) -> None:
    """Change one's password: every session ends and every API token is revoked; a browser
    that changed it is signed in again on a fresh session (same CSRF token)."""
    _check_own_password(
        actor, current_password, "current_password", "This is not your current password."
    )
    problems = check_password_policy(new_password, actor.email, organization_names(actor))
    if hmac.compare_digest(new_password.encode(), current_password.encode()):
        problems.append("The new password must differ from the current one.")
    if problems:
        raise ValidationFailed(fields={"new_password": problems})
    now = _now()
    actor.password_hash = hash_password(new_password)
    actor.password_changed_at = now
    auth.end_all_access(actor, now)
    security_log.record(SecurityEventKind.PASSWORD_CHANGED, user_id=actor.id)
    audit("user.password_changed", f"user:{actor.id}", organization_id=actor.organization_id)
    if auth.auth_method() == "session":
        auth.start_session(actor, keep_csrf_token=True)
    commit()


# --- API tokens ---------------------------------------------------------------------------------


def token_create(
    actor: User, name: str, password: str, expires_in_days: int | None
) -> tuple[ApiToken, str]:
    """Issue a bearer token; the raw token is returned once and only its hash is kept.

    The password is asked again (a stolen session must not turn into lasting access); every
    token expires, by default after ``API_TOKEN_DEFAULT_DAYS``.
    """
    _check_own_password(actor, password, "password", "This is not your password.")
    return token_issue(actor, name, expires_in_days)


def token_issue(user: User, name: str, expires_in_days: int | None) -> tuple[ApiToken, str]:
    """Issue a bearer token without asking for the password: for trusted server-side callers
    (the benchmark, scripts); the API goes through :func:`token_create`."""
    actor = user
    config = current_app.config
    days = expires_in_days or config["API_TOKEN_DEFAULT_DAYS"]
    days = min(days, config["API_TOKEN_MAX_DAYS"])
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
        expires_at=now + timedelta(days=days),
    )
    db.session.add(token)
    db.session.flush()
    security_log.record(
        SecurityEventKind.TOKEN_CREATED, user_id=actor.id, detail=f"api token {token.id}"
    )
    audit(
        "token.created",
        f"token:{token.id}",
        {"name": name, "expires_at": token.expires_at.isoformat() if token.expires_at else None},
        organization_id=actor.organization_id,
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
        audit(
            "token.revoked",
            f"token:{token.id}",
            {"owner": token.user_id},
            organization_id=token.user.organization_id,
        )
        commit()


def security_events(
    actor: User, *, page: int, per_page: int, kind: str | None, user_id: int | None
) -> Page:
    """Security events for admins, newest first."""
    return paginate(security_log.events_query(kind, user_id), page, per_page)


# --- staff accounts (command line) --------------------------------------------------------------


def user_by_email(email: str) -> User:
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
    email: str,
    role: Role,
    password: str,
    display_name: str | None = None,
    authority_name: str | None = None,
) -> User:
    """Create an auditor (of an authority) or an admin (only the command line can)."""
    if role not in STAFF_ROLES:
        raise ValidationFailed(
            fields={"role": ["Only auditors and admins are created here; others register."]}
        )
    authority = _authority_for(role, authority_name)
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
        authority=authority,
    )
    db.session.add(user)
    db.session.flush()
    security_log.record(
        SecurityEventKind.USER_CREATED, user_id=user.id, detail=f"{role.value} created by CLI"
    )
    audit(
        "user.created",
        f"user:{user.id}",
        {"role": role.value, "authority": authority.id if authority else None, "by": "cli"},
    )
    commit()
    return user


def _authority_for(role: Role, authority_name: str | None) -> Authority | None:
    """Auditors must belong to an authority (it bounds what they see); others to none."""
    if role is not Role.AUDITOR:
        if authority_name:
            raise ValidationFailed(fields={"authority": ["Only auditors belong to an authority."]})
        return None
    if not authority_name:
        raise ValidationFailed(
            fields={"authority": ["An auditor belongs to an authority; name one."]}
        )
    authority = db.session.scalar(select(Authority).where(Authority.name == authority_name))
    if authority is None:
        raise ValidationFailed(fields={"authority": [f"No authority named {authority_name!r}."]})
    return authority


def staff_user_set_role(email: str, role: Role) -> User:
    """Change a user's role, if the new role fits the user's organization (or lack of one)."""
    user = user_by_email(email)
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
    if role is Role.AUDITOR and user.authority is None:
        raise ValidationFailed(
            fields={"role": ["Attach the user to an authority first (flask users set-authority)."]}
        )
    previous = user.role
    user.role = role
    if role is not Role.AUDITOR:
        user.authority = None
    # New powers or fewer: either way, sessions started under the old role end.
    user.rotate_session_token()
    security_log.record(
        SecurityEventKind.ROLE_CHANGED,
        user_id=user.id,
        detail=f"role {previous.value} -> {role.value} by CLI",
    )
    audit("user.role_changed", f"user:{user.id}", {"from": previous.value, "to": role.value})
    commit()
    return user


def staff_user_disable(email: str) -> User:
    """Disable a user: sessions end and API tokens are revoked."""
    user = user_by_email(email)
    user.disabled = True
    auth.end_all_access(user, _now())
    security_log.record(SecurityEventKind.USER_DISABLED, user_id=user.id, detail="by CLI")
    audit("user.disabled", f"user:{user.id}", {"by": "cli"}, organization_id=user.organization_id)
    commit()
    return user


def users_list(role: Role | None = None) -> list[User]:
    """Every user (optionally of one role), oldest first."""
    query = select(User).order_by(User.id)
    if role is not None:
        query = query.where(User.role == role)
    return list(db.session.scalars(query))
