"""Who is calling: Flask-Login sessions (by rotating session token) and API bearer tokens."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from flask import Flask, Request
from sqlalchemy import select

from market.errors import Unauthorized
from market.extensions import db, login_manager
from market.models import ApiToken, User


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@login_manager.user_loader
def load_user_from_session(session_token: str) -> User | None:
    """The session stores the user's current session token; a rotated token logs it out."""
    user = db.session.scalar(select(User).where(User.session_token == session_token))
    if user is None or not user.is_active:
        return None
    return user


@login_manager.request_loader
def load_user_from_bearer(request: Request) -> User | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_api_token(token.strip()))
    )
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        return None
    user = row.user
    return user if user.is_active else None


@login_manager.unauthorized_handler
def unauthorized() -> None:
    raise Unauthorized()


def init_auth(app: Flask) -> None:
    login_manager.session_protection = "basic"
