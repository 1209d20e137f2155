"""Authorization rows for the admins' certificate review (verify, reject, the review queue)."""

from __future__ import annotations

from tests.authz.rules import Rule

ADMIN = frozenset({"admin"})
CERTIFICATE = "/api/v1/suppliers/{supplier_a}/certifications/{certification_a}"

RULES = [
    # The world's certificate is verified already: the admin passes authorization and gets 409.
    Rule("POST", CERTIFICATE + "/verify", ADMIN),
    Rule("POST", CERTIFICATE + "/reject", ADMIN, body={"reason": "Number unknown to IATF."}),
    Rule("GET", "/api/v1/admin/certifications", ADMIN),
    Rule("GET", "/api/v1/admin/certifications", ADMIN, query="status=rejected"),
]
