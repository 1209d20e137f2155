"""Authorization rows for accounts: organizations, sign-in, passwords, API tokens, security log."""

from __future__ import annotations

from tests.authz.rules import EVERYONE, SIGNED_IN, Rule

ADMIN = frozenset({"admin"})
OVERSIGHT = frozenset({"auditor", "admin"})

REGISTRATION = {
    "kind": "supplier",
    # Checksum-valid and unlike the factories' codes (their body is MA + digits).
    "uscc": "91440300MA5FKPXW02",
    "legal_name": "矩阵测试零部件有限公司",
    "city_code": "440300",
    "user": {"email": "matrix-registration@example.test", "password": "a long enough password"},
}

RULES = [
    Rule("POST", "/api/v1/organizations", EVERYONE, body=REGISTRATION),
    Rule("GET", "/api/v1/organizations", OVERSIGHT, query="kind=supplier&status=active"),
    # Own organization (buyer_a's OEM, supplier_a's supplier) vs everyone else's.
    Rule("GET", "/api/v1/organizations/{oem_a}", OVERSIGHT | {"buyer_a"}),
    Rule("GET", "/api/v1/organizations/{supplier_a}", OVERSIGHT | {"supplier_a"}),
    Rule("POST", "/api/v1/organizations/{org_pending}/verify", ADMIN),
    Rule("POST", "/api/v1/organizations/{supplier_a}/suspend", ADMIN, body={"reason": "audit"}),
    Rule("POST", "/api/v1/organizations/{org_suspended}/reactivate", ADMIN),
    # Anyone may try to sign in (here: as buyer A with the right password).
    Rule(
        "POST",
        "/api/v1/auth/login",
        EVERYONE,
        body={"email": "{email_buyer_a}", "password": "{password}"},
    ),
    Rule("POST", "/api/v1/auth/logout", SIGNED_IN),
    Rule("GET", "/api/v1/auth/me", SIGNED_IN),
    Rule(
        "POST",
        "/api/v1/auth/password",
        SIGNED_IN,
        body={"current_password": "{password}", "new_password": "another long password"},
    ),
    Rule("POST", "/api/v1/auth/tokens", SIGNED_IN, body={"name": "ci", "expires_in_days": 30}),
    Rule("GET", "/api/v1/auth/tokens", SIGNED_IN),
    # Buyer A's own token; admins may revoke anyone's; for others it does not exist.
    Rule("DELETE", "/api/v1/auth/tokens/{token_buyer_a}", frozenset({"buyer_a", "admin"})),
    Rule("GET", "/api/v1/security-events", ADMIN),
]
