"""Authorization rows for accounts: organizations, sign-in, passwords, API tokens, security log,
teams (members, invitations), authorities and the audit log."""

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
OEM_A = "/api/v1/organizations/{oem_a}"
# Team administration of buyer A's OEM: its org admin (buyer_a) and platform admins.
TEAM_ADMINS = frozenset({"buyer_a", "admin"})
# Every org admin reads their own organisation's audit log; admins read all of it.
ORG_ADMINS = frozenset({"buyer_a", "buyer_b", "supplier_a", "supplier_b", "pending_admin", "admin"})
AUTHORITY = "/api/v1/authorities/{authority_a}"

RULES = [
    Rule("POST", "/api/v1/organizations", EVERYONE, body=REGISTRATION),
    Rule("GET", "/api/v1/organizations", OVERSIGHT, query="kind=supplier&status=active"),
    # Own organization (buyer_a's OEM, supplier_a's supplier) vs everyone else's.
    Rule("GET", OEM_A, OVERSIGHT | {"buyer_a"}, jurisdiction_bound=True),
    Rule(
        "GET",
        "/api/v1/organizations/{supplier_a}",
        OVERSIGHT | {"supplier_a"},
        jurisdiction_bound=True,
    ),
    # A pending organisation sees itself.
    Rule(
        "GET",
        "/api/v1/organizations/{org_pending}",
        OVERSIGHT | {"pending_admin"},
        jurisdiction_bound=True,
    ),
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
    Rule("POST", "/api/v1/auth/logout-all", SIGNED_IN),
    Rule("GET", "/api/v1/auth/me", SIGNED_IN),
    Rule(
        "POST",
        "/api/v1/auth/password",
        SIGNED_IN,
        body={"current_password": "{password}", "new_password": "another long password"},
    ),
    Rule(
        "POST",
        "/api/v1/auth/tokens",
        SIGNED_IN,
        body={"name": "ci", "expires_in_days": 30, "password": "{password}"},
    ),
    Rule("GET", "/api/v1/auth/tokens", SIGNED_IN),
    # Buyer A's own token; admins may revoke anyone's; for others it does not exist.
    Rule(
        "DELETE",
        "/api/v1/auth/tokens/{token_buyer_a}",
        frozenset({"buyer_a", "admin"}),
        colleagues=False,
    ),
    Rule("GET", "/api/v1/security-events", ADMIN),
    # Teams: every member reads the member list; only org admins (and admins) manage it.
    Rule("GET", OEM_A + "/members", TEAM_ADMINS | {"member_a"}),
    Rule(
        "PATCH",
        OEM_A + "/members/{user_member_a}",
        TEAM_ADMINS,
        body={"org_role": "admin"},
        colleagues=False,
    ),
    # A member may leave (remove themselves); org admins remove anyone.
    Rule("DELETE", OEM_A + "/members/{user_member_a}", TEAM_ADMINS | {"member_a"}),
    Rule(
        "POST",
        OEM_A + "/invitations",
        TEAM_ADMINS,
        body={"email": "new-colleague@example.test"},
        colleagues=False,
    ),
    Rule("GET", OEM_A + "/invitations", TEAM_ADMINS, colleagues=False),
    Rule("DELETE", OEM_A + "/invitations/{invitation_a}", TEAM_ADMINS, colleagues=False),
    # Whoever holds the link may accept it (here: the pending invitation of buyer A's OEM).
    Rule(
        "POST",
        "/api/v1/invitations/accept",
        EVERYONE,
        body={"token": "{invitation_token}", "password": "{password}"},
    ),
    Rule("GET", "/api/v1/audit-log", ORG_ADMINS, colleagues=False),
    # Authorities and jurisdictions: admins only.
    Rule(
        "POST",
        "/api/v1/authorities",
        ADMIN,
        body={"name": "汕头市财政局", "city_codes": ["440500"]},
    ),
    Rule("GET", "/api/v1/authorities", ADMIN),
    Rule("GET", AUTHORITY, ADMIN),
    Rule("PATCH", AUTHORITY, ADMIN, body={"city_codes": ["44"]}),
    Rule("PUT", AUTHORITY + "/auditors/{user_auditor_elsewhere}", ADMIN),
    Rule("DELETE", AUTHORITY + "/auditors/{user_auditor}", ADMIN),
]
