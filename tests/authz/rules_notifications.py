"""Authorization rows for the inbox: every signed-in person has their own (an auditor's or an
admin's is empty but theirs), and a notification is its recipient's only, so marking
``notification_a`` (buyer A's) read is buyer A's alone: 404 for everyone else, colleagues too.
"""

from __future__ import annotations

from tests.authz.rules import SIGNED_IN, Rule

RULES = [
    Rule("GET", "/api/v1/notifications", SIGNED_IN),
    Rule("GET", "/api/v1/notifications/unread-count", SIGNED_IN),
    Rule(
        "POST",
        "/api/v1/notifications/{notification_a}/read",
        frozenset({"buyer_a"}),
        colleagues=False,
    ),
    Rule("POST", "/api/v1/notifications/read-all", SIGNED_IN),
    Rule("GET", "/api/v1/notifications/preferences", SIGNED_IN),
    Rule(
        "PUT",
        "/api/v1/notifications/preferences",
        SIGNED_IN,
        body={"kinds": [{"kind": "quote.revised", "email": True}]},
    ),
]
