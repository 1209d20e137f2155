"""Every mapped class, importable from one place (Alembic and the app import this module)."""

from market.models.accounts import (
    ApiToken,
    AuditLogEntry,
    Authority,
    AuthSession,
    Invitation,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    Role,
    SecurityEvent,
    User,
)
from market.models.ledger import (
    DeclaredBaseline,
    EntryKind,
    LedgerEntry,
    LedgerTotal,
    SubsidyPolicy,
)
from market.models.marketplace import (
    Demand,
    DemandState,
    IdempotencyRecord,
    Purchase,
    PurchaseSource,
    PurchaseStatus,
    Quote,
    QuoteStatus,
)
from market.models.notifications import Notification, NotificationKind
from market.models.outbox import OutboxEvent, OutboxStatus, OutboxTopic
from market.models.suppliers import Capability, Certification, CertStatus, Site, SiteKind

__all__ = [
    "ApiToken",
    "AuditLogEntry",
    "AuthSession",
    "Authority",
    "Capability",
    "CertStatus",
    "Certification",
    "DeclaredBaseline",
    "Demand",
    "DemandState",
    "EntryKind",
    "IdempotencyRecord",
    "Invitation",
    "LedgerEntry",
    "LedgerTotal",
    "Notification",
    "NotificationKind",
    "OrgKind",
    "OrgRole",
    "OrgStatus",
    "Organization",
    "OutboxEvent",
    "OutboxStatus",
    "OutboxTopic",
    "Purchase",
    "PurchaseSource",
    "PurchaseStatus",
    "Quote",
    "QuoteStatus",
    "Role",
    "SecurityEvent",
    "Site",
    "SiteKind",
    "SubsidyPolicy",
    "User",
]
