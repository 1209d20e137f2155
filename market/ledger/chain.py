"""The hash chain: the canonical JSON of an entry, its hash, and the walk that verifies it.

entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry) as lower-case hex, where ``‖``
joins the 64 hex characters of the previous entry's hash (64 zeros for the first entry) and the
UTF-8 bytes of the JSON. The canonical JSON has the hashed fields of the entry's format (below),
keys sorted, no whitespace, money as strings with two decimals, distances with three, dates and
UTC timestamps in ISO 8601, absent values as ``null``; non-ASCII characters are kept as UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from market.extensions import db
from market.ledger.rules import METRE, money
from market.models import EntryKind, LedgerEntry

GENESIS_HASH = "0" * 64

# Format 1: the entries written under the v1 rule (before migration 0009).
HASHED_FIELDS_V1 = (
    "seq",
    "kind",
    "purchase_id",
    "oem_org_id",
    "supplier_org_id",
    "supplier_city_code",
    "year",
    "purchased_on",
    "amount",
    "near_shore",
    "reason_code",
    "distance_km",
    "policy_version",
    "baseline",
    "near_shore_total_before",
    "increment",
    "subsidy",
    "recorded_at",
)
# Format 2: the v2 rule; every entry states the position it leaves (T, B, I*, S*, held).
HASHED_FIELDS_V2 = (
    *HASHED_FIELDS_V1,
    "format",
    "cause",
    "plant_city_code",
    "baseline_source",
    "held",
    "near_shore_total",
    "increment_total",
    "subsidy_total",
)
HASHED_FIELDS = {1: HASHED_FIELDS_V1, 2: HASHED_FIELDS_V2}
ALL_HASHED_FIELDS = HASHED_FIELDS_V2
MONEY_FIELDS = frozenset(
    {
        "amount",
        "baseline",
        "near_shore_total_before",
        "near_shore_total",
        "increment_total",
        "subsidy_total",
        "increment",
        "subsidy",
    }
)


def _canonical_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in MONEY_FIELDS:
        return str(money(value))
    if name == "distance_km":
        return str(Decimal(value).quantize(METRE))
    if name == "recorded_at":
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if name == "purchased_on":
        return value.isoformat()
    if name == "kind":
        return str(EntryKind(value).value)
    return value


def canonical_json(values: Mapping[str, Any]) -> str:
    """The canonical JSON of an entry (its ``format``, default 1, names the hashed fields)."""
    names = HASHED_FIELDS[int(values.get("format") or 1)]
    document = {name: _canonical_value(name, values[name]) for name in names}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry), hex."""
    return hashlib.sha256((prev_hash + canonical_json(values)).encode("utf-8")).hexdigest()


def ledger_head() -> tuple[int, str]:
    """The last entry's seq and hash, or (0, 64 zeros) for an empty ledger."""
    row = db.session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash).order_by(LedgerEntry.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.entry_hash) if row else (0, GENESIS_HASH)


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str | None
    broken_at: int | None = None
    reason: str | None = None


_ENTRY_COLUMNS = [LedgerEntry.prev_hash, LedgerEntry.entry_hash] + [
    getattr(LedgerEntry, name) for name in ALL_HASHED_FIELDS
]


def verify_chain() -> ChainReport:
    """Walk the chain in seq order: every seq present, linked, and hashing to its entry_hash.

    ``broken_at`` is the first seq that does not verify (a missing seq is reported as itself).
    """
    entries = db.session.scalar(select(func.count()).select_from(LedgerEntry)) or 0
    head = db.session.scalar(
        select(LedgerEntry.entry_hash).order_by(LedgerEntry.seq.desc()).limit(1)
    )
    expected_seq, expected_prev = 1, GENESIS_HASH
    result = db.session.execute(
        select(*_ENTRY_COLUMNS).order_by(LedgerEntry.seq).execution_options(yield_per=2000)
    )
    try:
        for row in result:
            if row.seq != expected_seq:
                return ChainReport(
                    False, entries, head, expected_seq, f"entry {expected_seq} is missing"
                )
            if row.prev_hash != expected_prev:
                return ChainReport(
                    False, entries, head, row.seq, "prev_hash does not match the entry before"
                )
            if chain_hash(row.prev_hash, row._asdict()) != row.entry_hash:
                return ChainReport(
                    False, entries, head, row.seq, "entry_hash does not match the entry's content"
                )
            expected_seq, expected_prev = expected_seq + 1, row.entry_hash
    finally:
        result.close()
    return ChainReport(True, entries, head)
