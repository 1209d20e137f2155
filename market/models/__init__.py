"""Every mapped class, importable from one place (Alembic and the app import this module)."""

from market.models import search_tokens
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
from market.models.checkpoints import CheckpointFailure, LedgerCheckpoint, LedgerTreeNode
from market.models.ledger import (
    DeclaredBaseline,
    EntryKind,
    LedgerEntry,
    LedgerTotal,
    SubsidyPolicy,
)
from market.models.marketplace import (
    Confirmation,
    Demand,
    DemandState,
    IdempotencyRecord,
    InvoiceReview,
    Purchase,
    PurchaseParty,
    PurchaseSource,
    PurchaseStatus,
    Quote,
    QuoteRevision,
    QuoteStatus,
)
from market.models.notifications import Notification, NotificationKind
from market.models.outbox import OutboxEvent, OutboxStatus, OutboxTopic
from market.models.suppliers import Capability, Certification, CertStatus, Site, SiteKind

search_tokens.register()

__all__ = [
    "ApiToken",
    "AuditLogEntry",
    "AuthSession",
    "Authority",
    "Capability",
    "CertStatus",
    "Certification",
    "CheckpointFailure",
    "Confirmation",
    "DeclaredBaseline",
    "Demand",
    "DemandState",
    "EntryKind",
    "IdempotencyRecord",
    "Invitation",
    "InvoiceReview",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerTotal",
    "LedgerTreeNode",
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
    "PurchaseParty",
    "PurchaseSource",
    "PurchaseStatus",
    "Quote",
    "QuoteRevision",
    "QuoteStatus",
    "Role",
    "SecurityEvent",
    "Site",
    "SiteKind",
    "SubsidyPolicy",
    "User",
]
