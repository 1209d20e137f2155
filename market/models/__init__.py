"""Every mapped class, importable from one place (Alembic and the app import this module)."""

from market.models.accounts import (
    ApiToken,
    Organization,
    OrgKind,
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
    "Capability",
    "CertStatus",
    "Certification",
    "CheckpointFailure",
    "DeclaredBaseline",
    "Demand",
    "DemandState",
    "EntryKind",
    "IdempotencyRecord",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerTotal",
    "LedgerTreeNode",
    "Notification",
    "NotificationKind",
    "OrgKind",
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
