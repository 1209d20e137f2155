"""The near-shore ledger (DESIGN.md, "Near-shore ledger and subsidy spec (v2)").

One file per concept: ``rules`` (the subsidy rule as pure functions), ``policy`` (versions and
which one governs a year), ``chain`` (canonical JSON, hashes, verification), ``append`` (the
lock, positions and exactly-once appends), ``reports`` (pages, CSV,
summaries, previews), ``merkle`` (the RFC 9162 tree over the entries) and ``checkpoints``
(signed tree heads and proofs).
"""

from market.ledger.append import (
    AppendOutcome,
    PurchaseFact,
    acquire_ledger_lock,
    load_book,
    settle_year,
    sync_purchase,
    sync_purchases,
)
from market.ledger.chain import (
    ALL_HASHED_FIELDS,
    GENESIS_HASH,
    ChainReport,
    canonical_json,
    chain_hash,
    ledger_head,
    verify_chain,
)
from market.ledger.policy import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_NOTE,
    PolicyTerms,
    ensure_default_policy,
    load_policy_terms,
    policy_for_year,
)
from market.ledger.reports import (
    COLUMNS,
    LedgerFilter,
    SubsidyPreview,
    ledger_csv,
    ledger_page,
    ledger_status,
    ledger_summary,
    oem_position,
    preview,
    preview_from,
    preview_inputs,
)
from market.ledger.rules import Reason, decide_near_shore, position_of

__all__ = [
    "ALL_HASHED_FIELDS",
    "COLUMNS",
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_NOTE",
    "GENESIS_HASH",
    "AppendOutcome",
    "ChainReport",
    "LedgerFilter",
    "PolicyTerms",
    "PurchaseFact",
    "Reason",
    "SubsidyPreview",
    "acquire_ledger_lock",
    "canonical_json",
    "chain_hash",
    "decide_near_shore",
    "ensure_default_policy",
    "ledger_csv",
    "ledger_head",
    "ledger_page",
    "ledger_status",
    "ledger_summary",
    "load_book",
    "load_policy_terms",
    "oem_position",
    "policy_for_year",
    "position_of",
    "preview",
    "preview_from",
    "preview_inputs",
    "settle_year",
    "sync_purchase",
    "sync_purchases",
    "verify_chain",
]
