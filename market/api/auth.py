"""Signing in and out, one's own password and API tokens, and the security event log."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from market.api.pagination import page_of
from market.auth import auth_method, csrf_exempt
from market.models import Role
from market.permissions import ALL_ROLES, actor, allow, public
from market.schemas import PageQuerySchema
from market.schemas.accounts import (
    ApiTokenCreatedSchema,
    ApiTokenSchema,
    LoginSchema,
    MeSchema,
    PasswordChangeSchema,
    SecurityEventQuerySchema,
    SecurityEventSchema,
    SessionSchema,
    TokenCreateSchema,
)
from market.services import accounts

blp = Blueprint("auth", __name__, description="Sessions, passwords and API tokens")

ApiTokenPageSchema = page_of(ApiTokenSchema)
SecurityEventPageSchema = page_of(SecurityEventSchema)


@blp.route("/auth/login", methods=["POST"])
@public
@csrf_exempt
@blp.arguments(LoginSchema)
@blp.response(200, SessionSchema)
@blp.alt_response(401, description="Wrong email or password (the same answer for both)")
@blp.alt_response(403, description="The account is disabled or its organization is suspended")
@blp.alt_response(429, description="Too many attempts for this account or address")
@blp.alt_response(503, description="The rate limiter's store is down: sign-in fails closed")
def login(data: dict[str, Any]) -> dict[str, Any]:
    """Sign in: sets the session cookie and returns the CSRF token for writes.

    Browsers use the session cookie; every write made with it must carry the returned CSRF token in
    ``X-CSRF-Token``. Attempts are rate limited per address, per account and address, and (more
    slowly) per account, so a stranger cannot lock a user out; past the limit the answer is 429
    with ``Retry-After``. Machine clients use API tokens instead.
    """
    user, csrf_token = accounts.login(data["email"], data["password"])
    return {"user": user, "csrf_token": csrf_token}


@blp.route("/auth/logout", methods=["POST"])
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(204)
def logout() -> None:
    """Sign out of this session: every copy of its cookie stops working.

    The session is ended on the server, so a copied cookie stops working too. Other sessions and
    API tokens of the user are not affected (see ``/auth/logout-all``).
    """
    accounts.logout(actor())


@blp.route("/auth/logout-all", methods=["POST"])
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(204)
def logout_all() -> None:
    """Sign out everywhere: every session ends and every API token is revoked.

    Use after a lost laptop or a leaked token: every session of the user ends and every API token
    is revoked at once; the next request with any of them answers 401.
    """
    accounts.logout_all(actor())


@blp.route("/auth/me")
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(200, MeSchema)
def me() -> dict[str, Any]:
    """The signed-in user and their organization.

    Who the credentials belong to: the user's role in their organization, the organization's kind
    and status (pending organizations see only themselves until verified), and the CSRF token of a
    cookie session.
    """
    user = actor()
    return {"user": user, "organization": user.organization, "auth": auth_method()}


@blp.route("/auth/password", methods=["POST"])
@allow(*ALL_ROLES, pending_ok=True)
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
def change_password(data: dict[str, Any]) -> None:
    """Change one's password: all sessions end and all API tokens are revoked (a browser that
    changed it stays signed in on a fresh session).

    Needs the current password. The new one must pass the strength check (zxcvbn, with the user's
    own names and email as context); a weak one is a 422 with a field message.
    """
    accounts.password_change(actor(), data["current_password"], data["new_password"])


@blp.route("/auth/tokens")
class Tokens(MethodView):
    @allow(*ALL_ROLES, pending_ok=True)
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, ApiTokenCreatedSchema)
    @blp.alt_response(409, description="Too many active tokens; revoke one first")
    @blp.alt_response(429, description="Too many password attempts for this account")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create an API token for machine clients (needs the password; shown once).

        Send the token as ``Authorization: Bearer <token>``. It acts as its user, with the user's
        role, until revoked or until the user signs out everywhere, changes the password or is
        removed.
        """
        token, raw = accounts.token_create(
            actor(), data["name"], data["password"], data.get("expires_in_days")
        )
        fields = {name: getattr(token, name) for name in ApiTokenSchema().fields}
        return {**fields, "token": raw}

    @allow(*ALL_ROLES, pending_ok=True)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, ApiTokenPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """One's own API tokens, newest first.

        Lists name, creation time, last use and revocation; never the secret, which is shown only
        once when the token is created.
        """
        return accounts.token_list(actor(), **query).as_dict()


@blp.route("/auth/tokens/<int:token_id>", methods=["DELETE"])
@allow(*ALL_ROLES, pending_ok=True)
@blp.response(204)
def revoke_token(token_id: int) -> None:
    """Revoke an API token (one's own; admins: anyone's).

    Revocation is immediate; revoking a token that is already revoked changes nothing. Another
    user's token answers 404 (admins may revoke any).
    """
    accounts.token_revoke(actor(), token_id)


@blp.route("/security-events")
@allow(Role.ADMIN)
@blp.arguments(SecurityEventQuerySchema, location="query")
@blp.response(200, SecurityEventPageSchema)
def security_events(query: dict[str, Any]) -> dict[str, Any]:
    """Security events, newest first (admins).

    Sign-ins, failed sign-ins, lockouts, password changes, token creation and revocation, with
    address and user agent; filter by user.
    """
    return accounts.security_events(actor(), **query).as_dict()
