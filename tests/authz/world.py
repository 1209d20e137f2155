"""The world the authorization matrix runs in: two OEMs, two suppliers, their objects.

Tenant A's objects are the "own" objects of buyer_a/supplier_a and the "other's" objects of
buyer_b/supplier_b; rule paths name tenant A's objects, e.g. ``/api/v1/demands/{demand_a}``.

Besides the marketplace objects there are ``org_pending`` and ``org_suspended`` (suppliers an
admin can verify or reactivate) and each persona's API token ``token_<persona>``. A rule body
may name ids or ``world.values`` (``email_<persona>``, ``password``, ``invitation_token``) as
``"{name}"`` strings.

People: buyer_a and supplier_a are the org admins of their organisations; member_a is a plain
member of buyer A's OEM; removed_member was a member of it, removed (its token and session
ended); auditor works for a provincial authority (``authority_a``), auditor_elsewhere for
Shantou's; pending_admin is the org admin of ``org_pending``. ``invitation_a`` is a pending
invitation to buyer A's OEM.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from market.auth import end_all_access, hash_api_token
from market.ledger import checkpoints
from market.models import (
    ApiToken,
    AuthSession,
    Claim,
    ClaimKind,
    ClaimState,
    EvidenceDocument,
    EvidenceKind,
    InboxNotification,
    Invitation,
    OrgKind,
    OrgRole,
    OrgStatus,
    Quote,
    Role,
    WebhookDelivery,
    WebhookEndpoint,
)
from market.passwords import hash_password
from tests import factories

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
PERSONAS = (
    "anonymous",
    "buyer_a",
    "buyer_b",
    "supplier_a",
    "supplier_b",
    "auditor",
    "admin",
    "member_a",
    "auditor_elsewhere",
    "pending_admin",
    "removed_member",
)


@dataclass
class World:
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    # Other values a rule body may name, e.g. {"email": "{email_buyer_a}"}.
    values: dict[str, Any] = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.format(**self.ids)

    def body(self, template: Any) -> Any:
        """The rule body with every string that is exactly ``"{name}"`` replaced by that id/value.

        Ids keep their type (``{"site_id": "{site_a}"}`` sends an integer); other strings,
        braces included, are sent as written.
        """
        if isinstance(template, dict):
            return {key: self.body(value) for key, value in template.items()}
        if isinstance(template, list):
            return [self.body(value) for value in template]
        if isinstance(template, str):
            match = _PLACEHOLDER.fullmatch(template)
            if match and match.group(1) in self.ids:
                return self.ids[match.group(1)]
            if match and match.group(1) in self.values:
                return self.values[match.group(1)]
        return template


def _webhook_of(organization_id: int) -> tuple[WebhookEndpoint, WebhookDelivery]:
    """A webhook endpoint (nothing listens on port 9: attempts fail at once) and a delivery."""
    from market.services.webhooks import new_secret, seal

    endpoint = WebhookEndpoint(
        organization_id=organization_id,
        url="http://127.0.0.1:9/hook",
        topics=["*"],
        secret_sealed=seal(new_secret()),
    )
    factories.db.session.add(endpoint)
    factories.db.session.flush()
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id, event_id=1, event_kind="quote.received", body="{}"
    )
    factories.db.session.add(delivery)
    factories.db.session.flush()
    return endpoint, delivery


# The smallest PNG the evidence check accepts (1×1), for tenant A's evidence document.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def _claim_of(oem: Any, buyer: Any, purchase: Any) -> tuple[Any, Any]:
    """Tenant A's draft claim for last year and a document on it (rows, not API calls)."""
    claim = Claim(
        oem_org_id=oem.id,
        year=factories.business_today().year - 1,
        kind=ClaimKind.PRIMARY,
        state=ClaimState.DRAFT,
        created_by_id=buyer.id,
    )
    factories.db.session.add(claim)
    factories.db.session.flush()
    evidence = EvidenceDocument(
        claim_id=claim.id,
        purchase_id=purchase.id,
        kind=EvidenceKind.INVOICE,
        filename="invoice.png",
        content_type="image/png",
        size=len(TINY_PNG),
        sha256=hashlib.sha256(TINY_PNG).hexdigest(),
        content=TINY_PNG,
        uploaded_by_id=buyer.id,
    )
    factories.db.session.add(evidence)
    factories.db.session.flush()
    return claim, evidence


def build_world() -> World:
    world = World()
    oem_a = factories.make_org(OrgKind.OEM)
    oem_b = factories.make_org(OrgKind.OEM)
    sup_a = factories.make_org(OrgKind.SUPPLIER, city_code="440300")
    sup_b = factories.make_org(OrgKind.SUPPLIER, city_code="440600")
    plant_a = factories.make_site(oem_a)
    plant_b = factories.make_site(oem_b)
    site_a = factories.make_site(sup_a, at=factories.SHENZHEN)
    site_b = factories.make_site(sup_b)
    cap_a = factories.make_capability(sup_a, "chassis.braking.foundation")
    cert_a = factories.make_certification(sup_a)
    demand_a = factories.make_demand(oem_a, plant_a)
    demand_b = factories.make_demand(oem_b, plant_b)
    quote_a = Quote(
        demand=demand_a,
        organization=sup_a,
        site=site_a,
        unit_price=factories.Decimal("12.50"),
        quantity=1000,
        lead_time_days=30,
        valid_until=factories.business_today() + factories.timedelta(days=30),
    )
    factories.db.session.add(quote_a)
    purchase_a = factories.make_purchase(oem_a, plant_a, sup_a, site_a)
    # Accounts: organizations an admin can verify or reactivate.
    org_pending = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
    org_suspended = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.SUSPENDED)
    authority_a = factories.make_authority(["44"], name="广东省财政厅")
    authority_shantou = factories.make_authority(["440500"], name="汕头市财政局(矩阵)")
    users = {
        "buyer_a": factories.make_user(oem_a),
        "buyer_b": factories.make_user(oem_b),
        "supplier_a": factories.make_user(sup_a),
        "supplier_b": factories.make_user(sup_b),
        "auditor": factories.make_user(role=Role.AUDITOR, authority=authority_a),
        "admin": factories.make_user(role=Role.ADMIN),
        "member_a": factories.make_user(oem_a, org_role=OrgRole.MEMBER),
        "auditor_elsewhere": factories.make_user(role=Role.AUDITOR, authority=authority_shantou),
        "pending_admin": factories.make_user(org_pending),
        "removed_member": factories.make_user(oem_a, org_role=OrgRole.MEMBER),
    }
    # Signing in costs what the test apps' argon2 parameters cost, not the factories' hash.
    fast_hash = hash_password(factories.PASSWORD)
    for user in users.values():
        user.password_hash = fast_hash
    factories.db.session.flush()
    checkpoint = checkpoints.checkpoint_now()  # signed, for the auditors' routes to read
    claim_a, evidence_a = _claim_of(oem_a, users["buyer_a"], purchase_a)
    raw_tokens = {name: factories.make_token(u) for name, u in users.items()}
    # A browser session per persona (what POST /auth/login leaves behind).
    session_keys = {name: f"matrix-session-{name}" for name in users}
    factories.db.session.add_all(
        AuthSession(key_hash=hashlib.sha256(key.encode()).hexdigest(), user_id=users[name].id)
        for name, key in session_keys.items()
    )
    invitation_token = "sci_matrix-invitation-token"
    invitation_a = Invitation(
        organization_id=oem_a.id,
        email="invitee@example.test",
        org_role=OrgRole.MEMBER,
        token_hash=hashlib.sha256(invitation_token.encode()).hexdigest(),
        invited_by_id=users["buyer_a"].id,
        expires_at=datetime.now(UTC) + timedelta(days=7),
    )
    factories.db.session.add(invitation_a)
    # A notification in buyer A's inbox (its own only: even member_a's is another's).
    notification_a = InboxNotification(
        user_id=users["buyer_a"].id,
        organization_id=oem_a.id,
        kind="purchase.recorded",
        subject_type="purchase",
        subject_id=purchase_a.id,
        data={"purchase_id": purchase_a.id, "near_shore": True},
    )
    factories.db.session.add(notification_a)
    factories.db.session.flush()
    webhook_endpoint_a, webhook_delivery_a = _webhook_of(oem_a.id)
    # The session token a removed member's cookie still carries, from before the removal.
    removed_session_token = users["removed_member"].session_token
    removed = users["removed_member"]
    removed.removed_at = datetime.now(UTC)
    end_all_access(removed, removed.removed_at)
    factories.db.session.flush()
    world.headers = {"anonymous": {}} | {
        name: {"Authorization": f"Bearer {raw}"} for name, raw in raw_tokens.items()
    }
    tokens = {
        f"token_{name}": factories.db.session.scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_api_token(raw))
        )
        for name, raw in raw_tokens.items()
    }
    world.values = {f"email_{name}": u.email for name, u in users.items()}
    world.values["password"] = factories.PASSWORD
    world.values["invitation_token"] = invitation_token
    world.values |= {f"session_{name}": u.session_token for name, u in users.items()}
    world.values["session_removed_member"] = removed_session_token
    world.values |= {f"session_key_{name}": key for name, key in session_keys.items()}
    named = {
        "oem_a": oem_a,
        "oem_b": oem_b,
        "supplier_a": sup_a,
        "supplier_b": sup_b,
        "plant_a": plant_a,
        "plant_b": plant_b,
        "site_a": site_a,
        "site_b": site_b,
        "capability_a": cap_a,
        "certification_a": cert_a,
        "demand_a": demand_a,
        "demand_b": demand_b,
        "quote_a": quote_a,
        "purchase_a": purchase_a,
        "org_pending": org_pending,
        "org_suspended": org_suspended,
        "authority_a": authority_a,
        "invitation_a": invitation_a,
        "webhook_endpoint_a": webhook_endpoint_a,
        "webhook_delivery_a": webhook_delivery_a,
        "claim_a": claim_a,
        "evidence_a": evidence_a,
        "notification_a": notification_a,
    } | tokens
    world.objects = named | {f"user_{k}": v for k, v in users.items()}
    world.ids = {name: obj.id for name, obj in world.objects.items()}
    world.ids["checkpoint_size"] = checkpoint.size
    return world
