"""Security events: one JSON log line each (UTC, via ``market.security``), most also kept as rows.

Nothing secret is ever passed here: no passwords, no tokens, no session identifiers. Events
that anyone can trigger in bulk (a denied request, a throttled login) are logged only, so
they cannot fill the table; the rest are added to the current transaction and committed by
the use case that caused them.
"""

from __future__ import annotations

import enum
import logging
import re

from flask import has_request_context, request
from sqlalchemy import Select, select

from market.extensions import db
from market.models import SecurityEvent

log = logging.getLogger("market.security")
# Security events are always written, whatever the root log level of the deployment.
log.setLevel(logging.INFO)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DETAIL = 500


class SecurityEventKind(enum.StrEnum):
    LOGIN_OK = "login_ok"
    LOGIN_FAILED = "login_failed"
    LOGIN_REFUSED = "login_refused"  # right password, but the account or its org is inactive
    LOGIN_THROTTLED = "login_throttled"
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    WRITE_THROTTLED = "write_throttled"
    REGISTRATION_EMAIL_TAKEN = "registration_email_taken"
    ACCESS_DENIED = "access_denied"
    CSRF_REJECTED = "csrf_rejected"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    TOKEN_CREATED = "token_created"  # noqa: S105
    TOKEN_REVOKED = "token_revoked"  # noqa: S105
    ORG_REGISTERED = "org_registered"
    ORG_VERIFIED = "org_verified"
    ORG_SUSPENDED = "org_suspended"
    ORG_REACTIVATED = "org_reactivated"
    USER_CREATED = "user_created"
    ROLE_CHANGED = "role_changed"
    USER_DISABLED = "user_disabled"


_WARNING_KINDS = {
    SecurityEventKind.LOGIN_FAILED,
    SecurityEventKind.LOGIN_REFUSED,
    SecurityEventKind.LOGIN_THROTTLED,
    SecurityEventKind.WRITE_THROTTLED,
    SecurityEventKind.REGISTRATION_EMAIL_TAKEN,
    SecurityEventKind.ACCESS_DENIED,
    SecurityEventKind.CSRF_REJECTED,
}


def _clean(detail: str | None) -> str | None:
    if detail is None:
        return None
    return _CONTROL.sub(" ", detail)[:MAX_DETAIL]


def record(
    kind: SecurityEventKind,
    *,
    user_id: int | None = None,
    detail: str | None = None,
    persist: bool = True,
) -> None:
    """Log one security event; with ``persist`` also add its row to the current transaction."""
    ip = request.remote_addr if has_request_context() else None
    detail = _clean(detail)
    level = logging.WARNING if kind in _WARNING_KINDS else logging.INFO
    log.log(
        level,
        "security event",
        extra={"security_event": kind.value, "user_id": user_id, "ip": ip, "detail": detail},
    )
    if persist:
        db.session.add(SecurityEvent(kind=kind.value, user_id=user_id, ip=ip, detail=detail))


def events_query(kind: str | None = None, user_id: int | None = None) -> Select[SecurityEvent]:
    """Newest first, optionally for one kind or one user."""
    query = select(SecurityEvent).order_by(SecurityEvent.id.desc())
    if kind:
        query = query.where(SecurityEvent.kind == kind)
    if user_id is not None:
        query = query.where(SecurityEvent.user_id == user_id)
    return query
