"""``Idempotency-Key``: a retried request gets the first answer instead of a second effect.

A use case that honours the header calls :func:`idempotent_request`, then :func:`find_replay`
before doing anything; if there is nothing to replay it does its work, and :func:`remember`
adds the response to the same transaction as the business rows — so the record exists exactly
when the effect does. Two concurrent twins both get past :func:`find_replay`; the second one's
insert hits a unique constraint (the record's ``(user_id, key)`` or the business row's own),
rolls back, and :func:`find_replay` then returns the winner's response.

Only successful responses are stored: a failed request changed nothing and may be retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from flask import jsonify
from flask.wrappers import Response
from sqlalchemy import insert, select

from market.clock import utcnow
from market.errors import ValidationFailed
from market.extensions import db
from market.models import IdempotencyRecord, User

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces, as UUIDs, ULIDs and most client-generated keys are.
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True)
class IdempotentRequest:
    """One request made under a key: who sent it, where, and a fingerprint of what."""

    user_id: int
    key: str
    endpoint: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    """The response first given to a key, to be sent again as it was (``replayed``), or a
    response serialised before the commit and sent as it is (not a replay)."""

    status: int
    body: dict[str, Any]
    replayed: bool = True

    def to_response(self) -> Response:
        response = jsonify(self.body)
        response.status_code = self.status
        if self.replayed:
            response.headers[REPLAY_HEADER] = "true"
        return response


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def fingerprint(endpoint: str, payload: dict[str, Any]) -> str:
    """SHA-256 of the endpoint and the validated payload in canonical JSON."""
    canonical = json.dumps(
        {"endpoint": endpoint, "body": payload},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_plain,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_request(
    user: User, endpoint: str, key: str | None, payload: dict[str, Any]
) -> IdempotentRequest | None:
    """The request's key (None when the header was not sent); 422 for a malformed key."""
    if key is None:
        return None
    if not _KEY.match(key):
        raise ValidationFailed(
            fields={HEADER: ["Must be 1 to 128 printable ASCII characters without spaces."]}
        )
    return IdempotentRequest(
        user_id=user.id, key=key, endpoint=endpoint, request_hash=fingerprint(endpoint, payload)
    )


def find_replay(request: IdempotentRequest) -> StoredResponse | None:
    """The stored response for this key, or None; 422 if the key was used for another request."""
    record = db.session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == request.user_id, IdempotencyRecord.key == request.key
        )
    )
    if record is None:
        return None
    return stored_response(
        request, record.endpoint, record.request_hash, record.response_status, record.response_body
    )


def stored_response(
    request: IdempotentRequest, endpoint: str, request_hash: str, status: int, body: dict[str, Any]
) -> StoredResponse:
    """The response to replay from a record of this key read by the caller (a use case may read
    it in its own statement); 422 if the key was used for another request."""
    if endpoint != request.endpoint or request_hash != request.request_hash:
        raise ValidationFailed(
            "This Idempotency-Key was already used for a different request.",
            fields={
                HEADER: [
                    "Already used with a different request body or endpoint; "
                    "send a new key for a new request."
                ]
            },
        )
    return StoredResponse(status=status, body=body)


def remember(request: IdempotentRequest, status: int, body: dict[str, Any]) -> None:
    """Store the response in the current transaction (committed with the use case's rows)."""
    db.session.execute(insert(IdempotencyRecord).values(remembered_values(request, status, body)))


def remembered_values(
    request: IdempotentRequest, status: int, body: dict[str, Any]
) -> dict[str, Any]:
    """The columns of the record :func:`remember` writes (or a use case, with its own
    writes)."""
    return {
        "user_id": request.user_id,
        "key": request.key,
        "endpoint": request.endpoint,
        "request_hash": request.request_hash,
        "response_status": status,
        "response_body": body,
        "created_at": utcnow(),
    }
