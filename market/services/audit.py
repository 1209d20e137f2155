"""The audit log: who did what, when and from where, to organisations, members, invitations,
tokens, roles, policies, baselines and claims.

:func:`audit` adds one row to the current transaction; the use case that acts commits it with
its own rows, so an action and its record stand or fall together. Org admins read their own
organisation's rows, admins all of them, auditors none (:func:`audit_log_query`).
"""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import Select, select

from market.errors import Forbidden
from market.extensions import db
from market.models import AuditLogEntry, Role, User
from market.services.pagination import Page, paginate


def _acting_user() -> User | None:
    if not has_request_context():
        return None
    user = g.get("_login_user")  # only a user this request already loaded: no query here
    return user if isinstance(user, User) else None


def audit(
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    *,
    organization_id: int | None = None,
    actor: User | None = None,
) -> AuditLogEntry:
    """Record one action in the current transaction (the caller's use case commits it).

    ``action`` is a dotted verb such as ``"member.removed"`` or ``"baseline.declared"``;
    ``target`` names the object (``"user:12"``, ``"claim:3"``); ``details`` is small JSON
    (never secrets). ``organization_id`` is the organisation concerned: its org admins see
    the row. The actor defaults to the signed-in user of the request (None from the CLI).
    """
    who = actor or _acting_user()
    entry = AuditLogEntry(
        actor_id=who.id if who is not None else None,
        organization_id=organization_id,
        action=action,
        target=target,
        details=details or {},
        ip=request.remote_addr if has_request_context() else None,
    )
    db.session.add(entry)
    return entry


def audit_log_query(
    reader: User, *, organization_id: int | None = None, action: str | None = None
) -> Select[Any]:
    """Newest first: admins see everything (optionally one organisation's), org admins their
    own organisation's, everyone else nothing (403)."""
    query = select(AuditLogEntry).order_by(AuditLogEntry.id.desc())
    if reader.role is Role.ADMIN:
        if organization_id is not None:
            query = query.where(AuditLogEntry.organization_id == organization_id)
    elif reader.is_org_admin and reader.organization_id is not None:
        if organization_id is not None and organization_id != reader.organization_id:
            raise Forbidden("Org admins read their own organisation's audit log only.")
        query = query.where(AuditLogEntry.organization_id == reader.organization_id)
    else:
        raise Forbidden("Only org admins and admins read the audit log.")
    if action:
        query = query.where(AuditLogEntry.action == action)
    return query


def audit_log_list(
    reader: User,
    *,
    page: int,
    per_page: int,
    organization_id: int | None = None,
    action: str | None = None,
) -> Page:
    """One page of the audit log as ``reader`` may see it."""
    query = audit_log_query(reader, organization_id=organization_id, action=action)
    return paginate(query, page, per_page)
