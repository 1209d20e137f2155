"""The near-shore ledger: the rules, the hash-chained append, verification, summaries, export.

DESIGN.md, "Near-shore ledger and subsidy spec". In short, for a purchase p of OEM o in year Y:

- near-shore: the supplier site's city code starts with the policy's province prefix (checked
  first, else ``OUT_OF_PROVINCE``) and its haversine distance to the OEM plant, rounded to the
  metre, is at most ``max_distance_km`` (else ``TOO_FAR``);
- baseline B(o, Y): the declared baseline of (o, Y−1) if an admin declared one, else o's
  near-shore total of Y−1 in the ledger (records minus reversals) at the time p is recorded;
- increment(p) = max(0, C + amount − max(B, C)), C = o's near-shore total of Y before p;
- subsidy(p) = increment × rate, half-up to 0.01, clamped to what is left of the annual cap.

Purchases dated outside every policy's range are still recorded (they count towards the next
year's baseline) with no increment and no subsidy, reason ``OUTSIDE_POLICY_PERIOD`` when they
were near-shore. Entries are appended under one lock (PostgreSQL advisory lock; the SQLite write
lock) so ``seq`` and ``prev_hash`` never fork; ``(purchase_id, kind)`` is unique, so a purchase
is counted once whatever the number of deliveries. The database refuses UPDATE and DELETE on
``ledger_entries`` (migration ``0005_ledger``): nothing here ever changes an entry.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import Select, Table, case, func, insert, select, text
from sqlalchemy.orm import aliased

from market.database import CENT
from market.extensions import db
from market.models import (
    DeclaredBaseline,
    EntryKind,
    LedgerEntry,
    LedgerTotal,
    Organization,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseStatus,
    Site,
    SubsidyPolicy,
)
from market.services.pagination import Page, paginate
from search.spec import haversine_km

ZERO = Decimal("0.00")
METRE = Decimal("0.001")
GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key of the ledger's append lock (any constant; "LEDGER" in ASCII).
LEDGER_LOCK_KEY = 0x4C4544474552


class Reason(enum.StrEnum):
    NEAR_SHORE = "NEAR_SHORE"
    OUT_OF_PROVINCE = "OUT_OF_PROVINCE"
    TOO_FAR = "TOO_FAR"
    OUTSIDE_POLICY_PERIOD = "OUTSIDE_POLICY_PERIOD"


# --- policy terms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyTerms:
    """The rules of one policy version as plain values (what the ledger computes with)."""

    version: int
    effective_from: date
    effective_until: date | None
    province_prefix: str
    max_distance_km: Decimal
    rate: Decimal
    annual_cap: Decimal

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (
            self.effective_until is None or day <= self.effective_until
        )

    @classmethod
    def of(cls, row: SubsidyPolicy) -> PolicyTerms:
        return cls(
            version=row.version,
            effective_from=row.effective_from,
            effective_until=row.effective_until,
            province_prefix=row.province_prefix,
            max_distance_km=Decimal(row.max_distance_km).quantize(METRE),
            rate=Decimal(row.rate),
            annual_cap=Decimal(row.annual_cap).quantize(CENT),
        )


# The programme's first published terms (DESIGN.md); migration 0005_ledger seeds them.
DEFAULT_POLICY = PolicyTerms(
    version=1,
    effective_from=date(2020, 1, 1),
    effective_until=None,
    province_prefix="44",
    max_distance_km=Decimal("200.000"),
    rate=Decimal("0.010000"),
    annual_cap=Decimal("2000000.00"),
)
DEFAULT_POLICY_NOTE = "Programme terms v1: Guangdong (44), 200 km, 1%, cap 2,000,000.00 CNY"


def select_policy(policies: Sequence[PolicyTerms], day: date) -> tuple[PolicyTerms, bool]:
    """The version in force on ``day`` (the highest covering it) and True; if none covers it,
    the nearest version for its near-shore rules (the latest begun before, else the first) and
    False."""
    if not policies:
        raise LookupError("no subsidy policy exists")
    covering = [p for p in policies if p.covers(day)]
    if covering:
        return max(covering, key=lambda p: p.version), True
    earlier = [p for p in policies if p.effective_from <= day]
    if earlier:
        return max(earlier, key=lambda p: (p.effective_from, p.version)), False
    return min(policies, key=lambda p: (p.effective_from, p.version)), False


def ensure_default_policy() -> None:
    """Seed version 1 if no policy exists at all (in the caller's transaction; no commit)."""
    if db.session.scalar(select(func.count()).select_from(SubsidyPolicy)):
        return
    db.session.add(
        SubsidyPolicy(
            version=DEFAULT_POLICY.version,
            effective_from=DEFAULT_POLICY.effective_from,
            effective_until=DEFAULT_POLICY.effective_until,
            province_prefix=DEFAULT_POLICY.province_prefix,
            max_distance_km=DEFAULT_POLICY.max_distance_km,
            rate=DEFAULT_POLICY.rate,
            annual_cap=DEFAULT_POLICY.annual_cap,
            note=DEFAULT_POLICY_NOTE,
        )
    )
    db.session.flush()


def load_policy_terms(*, seed: bool = False) -> list[PolicyTerms]:
    """Every policy version. An empty table means the programme's defaults: seeded (under the
    ledger lock, ``seed=True``) or just assumed (read-only callers such as previews)."""
    rows = list(db.session.scalars(select(SubsidyPolicy).order_by(SubsidyPolicy.version)))
    if rows:
        return [PolicyTerms.of(row) for row in rows]
    if seed:
        ensure_default_policy()
        return load_policy_terms()
    return [DEFAULT_POLICY]


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NearShoreDecision:
    near_shore: bool
    reason_code: str
    distance_km: Decimal


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> Decimal:
    """The spec's haversine distance, rounded half-up to the metre (the value the entry keeps,
    so the decision can be re-checked from the entry alone)."""
    return Decimal(repr(haversine_km(lat1, lon1, lat2, lon2))).quantize(METRE, ROUND_HALF_UP)


def decide_near_shore(
    terms: PolicyTerms,
    supplier_city_code: str,
    site: tuple[float, float],
    plant: tuple[float, float],
) -> NearShoreDecision:
    """Near-shore or not, with the reason; the province is checked before the distance."""
    distance = distance_km(site[0], site[1], plant[0], plant[1])
    if not supplier_city_code.startswith(terms.province_prefix):
        return NearShoreDecision(False, Reason.OUT_OF_PROVINCE, distance)
    if distance > terms.max_distance_km:
        return NearShoreDecision(False, Reason.TOO_FAR, distance)
    return NearShoreDecision(True, Reason.NEAR_SHORE, distance)


def increment_of(amount: Decimal, baseline: Decimal, before: Decimal) -> Decimal:
    """increment = max(0, C + amount − max(B, C)): only purchasing above the baseline counts."""
    return max(ZERO, before + amount - max(baseline, before)).quantize(CENT)


def subsidy_of(increment: Decimal, rate: Decimal, cap: Decimal, granted: Decimal) -> Decimal:
    """increment × rate, half-up to 0.01, never past what is left of the annual cap."""
    raw = (increment * rate).quantize(CENT, ROUND_HALF_UP)
    room = max(ZERO, cap - granted)
    return min(raw, room).quantize(CENT)


def _money(value: Decimal) -> Decimal:
    """Two decimals, and never a negative zero (``-0.00`` would change the canonical JSON)."""
    quantized = Decimal(value).quantize(CENT)
    return quantized if quantized else ZERO


@dataclass(frozen=True)
class PurchaseFact:
    """What the ledger needs to know of a purchase."""

    purchase_id: int
    oem_org_id: int
    supplier_org_id: int
    supplier_city_code: str
    site: tuple[float, float]
    plant: tuple[float, float]
    amount: Decimal
    purchased_on: date
    cancelled: bool = False


@dataclass(frozen=True)
class Computed:
    """The content of an entry, before it gets its place in the chain."""

    purchase_id: int
    kind: EntryKind
    oem_org_id: int
    supplier_org_id: int
    supplier_city_code: str
    year: int
    purchased_on: date
    amount: Decimal
    near_shore: bool
    reason_code: str
    distance_km: Decimal
    policy_version: int
    baseline: Decimal
    near_shore_total_before: Decimal
    increment: Decimal
    subsidy: Decimal


Key = tuple[int, int]  # (oem_org_id, year)


@dataclass
class LedgerBook:
    """Running near-shore and subsidy totals per (OEM, year), applied in ledger order.

    Totals missing from the mappings are zero: the caller loads the keys it will touch.
    """

    policies: Sequence[PolicyTerms]
    near_shore_totals: dict[Key, Decimal] = field(default_factory=dict)
    subsidy_totals: dict[Key, Decimal] = field(default_factory=dict)
    declared: Mapping[Key, Decimal] = field(default_factory=dict)

    def near_shore_total(self, oem: int, year: int) -> Decimal:
        return self.near_shore_totals.get((oem, year), ZERO)

    def subsidy_granted(self, oem: int, year: int) -> Decimal:
        return self.subsidy_totals.get((oem, year), ZERO)

    def baseline(self, oem: int, year: int) -> tuple[Decimal, str]:
        """B(o, Y) and where it came from: ``declared`` (wins when present) or ``ledger``."""
        declared = self.declared.get((oem, year - 1))
        if declared is not None:
            return _money(declared), "declared"
        return self.near_shore_total(oem, year - 1), "ledger"

    def evaluate(self, fact: PurchaseFact) -> Computed:
        """The record entry ``fact`` would get now (nothing is applied)."""
        terms, covered = select_policy(self.policies, fact.purchased_on)
        decision = decide_near_shore(terms, fact.supplier_city_code, fact.site, fact.plant)
        year = fact.purchased_on.year
        baseline, _ = self.baseline(fact.oem_org_id, year)
        before = self.near_shore_total(fact.oem_org_id, year)
        increment = subsidy = ZERO
        reason = decision.reason_code
        if decision.near_shore and covered:
            increment = increment_of(fact.amount, baseline, before)
            subsidy = subsidy_of(
                increment,
                terms.rate,
                terms.annual_cap,
                self.subsidy_granted(fact.oem_org_id, year),
            )
        elif decision.near_shore:
            reason = Reason.OUTSIDE_POLICY_PERIOD
        return Computed(
            purchase_id=fact.purchase_id,
            kind=EntryKind.RECORD,
            oem_org_id=fact.oem_org_id,
            supplier_org_id=fact.supplier_org_id,
            supplier_city_code=fact.supplier_city_code,
            year=year,
            purchased_on=fact.purchased_on,
            amount=_money(fact.amount),
            near_shore=decision.near_shore,
            reason_code=str(reason),
            distance_km=decision.distance_km,
            policy_version=terms.version,
            baseline=baseline,
            near_shore_total_before=before,
            increment=increment,
            subsidy=subsidy,
        )

    def apply(self, entry: Computed) -> None:
        key = (entry.oem_org_id, entry.year)
        if entry.near_shore:
            self.near_shore_totals[key] = self.near_shore_total(*key) + entry.amount
        self.subsidy_totals[key] = self.subsidy_granted(*key) + entry.subsidy

    def record(self, fact: PurchaseFact) -> Computed:
        entry = self.evaluate(fact)
        self.apply(entry)
        return entry

    def reverse(self, record: Computed) -> Computed:
        """The reversal of a record: its amount, increment and subsidy negated."""
        entry = replace(
            record,
            kind=EntryKind.REVERSAL,
            amount=_money(-record.amount),
            increment=_money(-record.increment),
            subsidy=_money(-record.subsidy),
            near_shore_total_before=self.near_shore_total(record.oem_org_id, record.year),
        )
        self.apply(entry)
        return entry


# --- the hash chain ----------------------------------------------------------------------------

# The fields an entry's hash covers, i.e. all of them but id, prev_hash (chained separately)
# and entry_hash itself.
HASHED_FIELDS = (
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
_MONEY_FIELDS = {"amount", "baseline", "near_shore_total_before", "increment", "subsidy"}


def _canonical_value(name: str, value: Any) -> Any:
    if name in _MONEY_FIELDS:
        return str(_money(value))
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
    """Sorted keys, no whitespace, Decimals as strings with their fixed places, ISO dates."""
    document = {name: _canonical_value(name, values[name]) for name in HASHED_FIELDS}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry), hex."""
    return hashlib.sha256((prev_hash + canonical_json(values)).encode("utf-8")).hexdigest()


# --- appending ---------------------------------------------------------------------------------


def acquire_ledger_lock() -> None:
    """Serialise ledger appenders until the end of the current transaction.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the database write lock, taken by a
    write that changes nothing; it must come before the transaction's first write.
    """
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK_KEY})
    else:
        session.execute(text("UPDATE subsidy_policies SET version = version WHERE 1 = 0"))


@dataclass(frozen=True)
class LedgerRequest:
    purchase_id: int
    kind: EntryKind


@dataclass
class AppendOutcome:
    """What became of one request: the seqs it appended (none if already there) or an error."""

    request: LedgerRequest
    appended: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _load_facts(purchase_ids: Sequence[int]) -> dict[int, PurchaseFact]:
    site = aliased(Site)
    plant = aliased(Site)
    rows = db.session.execute(
        select(
            Purchase.id,
            Purchase.oem_org_id,
            Purchase.supplier_org_id,
            Purchase.amount,
            Purchase.purchased_on,
            Purchase.status,
            site.city_code,
            site.lat,
            site.lon,
            plant.lat.label("plant_lat"),
            plant.lon.label("plant_lon"),
        )
        .join(site, site.id == Purchase.supplier_site_id)
        .join(plant, plant.id == Purchase.plant_id)
        .where(Purchase.id.in_(purchase_ids))
    )
    return {
        row.id: PurchaseFact(
            purchase_id=row.id,
            oem_org_id=row.oem_org_id,
            supplier_org_id=row.supplier_org_id,
            supplier_city_code=row.city_code,
            site=(row.lat, row.lon),
            plant=(row.plant_lat, row.plant_lon),
            amount=row.amount,
            purchased_on=row.purchased_on,
            cancelled=row.status is PurchaseStatus.CANCELLED,
        )
        for row in rows
    }


_COMPUTED_COLUMNS = [
    getattr(LedgerEntry, name) for name in Computed.__dataclass_fields__ if name != "kind"
]


def _existing_entries(purchase_ids: Sequence[int]) -> dict[tuple[int, EntryKind], Computed]:
    rows = db.session.execute(
        select(LedgerEntry.kind, *_COMPUTED_COLUMNS).where(
            LedgerEntry.purchase_id.in_(purchase_ids)
        )
    )
    found = {}
    for row in rows:
        values = row._asdict()
        values["distance_km"] = Decimal(values["distance_km"]).quantize(METRE)
        computed = Computed(**values)
        found[(computed.purchase_id, computed.kind)] = computed
    return found


def load_book(
    keys: set[Key], *, seed_policy: bool = False, from_totals: bool = False
) -> LedgerBook:
    """A book holding the current totals of ``keys`` and of the years before them.

    The ledger worker sums the entries themselves (the record); ``from_totals`` reads the
    ``ledger_totals`` rows it keeps beside them instead (one row per key rather than a year
    of entries: what a subsidy preview on every purchase can afford).
    """
    oems = {oem for oem, _ in keys}
    years = {year for _, year in keys} | {year - 1 for _, year in keys}
    book = LedgerBook(policies=load_policy_terms(seed=seed_policy))
    if not oems:
        return book
    if from_totals:
        rows = db.session.execute(
            select(
                LedgerTotal.oem_org_id,
                LedgerTotal.year,
                LedgerTotal.near_shore_total.label("near"),
                LedgerTotal.subsidy_total.label("subsidy"),
            ).where(LedgerTotal.oem_org_id.in_(oems), LedgerTotal.year.in_(years))
        )
    else:
        near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=ZERO))
        rows = db.session.execute(
            select(
                LedgerEntry.oem_org_id,
                LedgerEntry.year,
                near.label("near"),
                func.sum(LedgerEntry.subsidy).label("subsidy"),
            )
            .where(LedgerEntry.oem_org_id.in_(oems), LedgerEntry.year.in_(years))
            .group_by(LedgerEntry.oem_org_id, LedgerEntry.year)
        )
    for row in rows:
        key = (row.oem_org_id, row.year)
        book.near_shore_totals[key] = _money(row.near or ZERO)
        book.subsidy_totals[key] = _money(row.subsidy or ZERO)
    declared = db.session.execute(
        select(DeclaredBaseline.oem_org_id, DeclaredBaseline.year, DeclaredBaseline.amount).where(
            DeclaredBaseline.oem_org_id.in_(oems), DeclaredBaseline.year.in_(years)
        )
    )
    book.declared = {(row.oem_org_id, row.year): row.amount for row in declared}
    return book


def ledger_head() -> tuple[int, str]:
    """The last entry's seq and hash, or (0, 64 zeros) for an empty ledger."""
    row = db.session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash).order_by(LedgerEntry.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.entry_hash) if row else (0, GENESIS_HASH)


def append_entries(requests: Sequence[LedgerRequest]) -> list[AppendOutcome]:
    """Append the entries for ``requests`` in order, each purchase/kind at most once.

    Call it after :func:`acquire_ledger_lock` in the same transaction; the caller commits.
    A reversal whose record is not in the ledger yet appends the record first. A request that
    cannot be honoured (unknown purchase, reversal of a purchase that is not cancelled) gets an
    error and appends nothing; the others go on.
    """
    purchase_ids = sorted({r.purchase_id for r in requests})
    facts = _load_facts(purchase_ids)
    existing = _existing_entries(purchase_ids)
    keys = {(f.oem_org_id, f.purchased_on.year) for f in facts.values()}
    book = load_book(keys, seed_policy=True)
    seq, prev_hash = ledger_head()
    rows: list[dict[str, Any]] = []

    def append(entry: Computed) -> int:
        nonlocal seq, prev_hash
        seq += 1
        values = {**entry.__dict__, "seq": seq, "recorded_at": datetime.now(UTC)}
        values["entry_hash"] = chain_hash(prev_hash, values)
        values["prev_hash"] = prev_hash
        prev_hash = values["entry_hash"]
        rows.append(values)
        existing[(entry.purchase_id, entry.kind)] = entry
        return seq

    outcomes = []
    for request in requests:
        outcome = AppendOutcome(request)
        outcomes.append(outcome)
        fact = facts.get(request.purchase_id)
        if fact is None:
            outcome.error = f"purchase {request.purchase_id} does not exist"
            continue
        if request.kind is EntryKind.REVERSAL and not fact.cancelled:
            outcome.error = f"purchase {request.purchase_id} is not cancelled"
            continue
        record = existing.get((fact.purchase_id, EntryKind.RECORD))
        if record is None:
            record = book.record(fact)
            outcome.appended.append(append(record))
        if request.kind is EntryKind.REVERSAL and (fact.purchase_id, request.kind) not in existing:
            outcome.appended.append(append(book.reverse(record)))
    if rows:
        # Core executemany (the table's column types still convert the values).
        db.session.execute(insert(cast(Table, LedgerEntry.__table__)), rows)
        _store_totals(book, {(row["oem_org_id"], row["year"]) for row in rows})
    return outcomes


def _store_totals(book: LedgerBook, keys: set[Key]) -> None:
    """Write the book's totals of ``keys`` to ``ledger_totals`` (same transaction as the
    entries; the ledger lock is held, so nobody else writes these rows meanwhile)."""
    stored = {
        (row.oem_org_id, row.year): row
        for row in db.session.scalars(
            select(LedgerTotal).where(
                LedgerTotal.oem_org_id.in_({oem for oem, _ in keys}),
                LedgerTotal.year.in_({year for _, year in keys}),
            )
        )
    }
    for key in sorted(keys):
        row = stored.get(key)
        if row is None:
            row = LedgerTotal(oem_org_id=key[0], year=key[1])
            db.session.add(row)
        row.near_shore_total = book.near_shore_total(*key)
        row.subsidy_total = book.subsidy_granted(*key)
    db.session.flush()


def record_purchase(purchase_id: int) -> AppendOutcome:
    """Lock and append the record entry of one purchase (no commit)."""
    acquire_ledger_lock()
    return append_entries([LedgerRequest(purchase_id, EntryKind.RECORD)])[0]


def reverse_purchase(purchase_id: int) -> AppendOutcome:
    """Lock and append the reversal of one cancelled purchase (no commit)."""
    acquire_ledger_lock()
    return append_entries([LedgerRequest(purchase_id, EntryKind.REVERSAL)])[0]


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str | None
    broken_at: int | None = None
    reason: str | None = None


_ENTRY_COLUMNS = [LedgerEntry.prev_hash, LedgerEntry.entry_hash] + [
    getattr(LedgerEntry, name) for name in HASHED_FIELDS
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
            values = row._asdict()
            if row.seq != expected_seq:
                return ChainReport(
                    False, entries, head, expected_seq, f"entry {expected_seq} is missing"
                )
            if row.prev_hash != expected_prev:
                return ChainReport(
                    False, entries, head, row.seq, "prev_hash does not match the entry before"
                )
            if chain_hash(row.prev_hash, values) != row.entry_hash:
                return ChainReport(
                    False, entries, head, row.seq, "entry_hash does not match the entry's content"
                )
            expected_seq, expected_prev = expected_seq + 1, row.entry_hash
    finally:
        result.close()
    return ChainReport(True, entries, head)


# --- reading the ledger ------------------------------------------------------------------------


SelectT = TypeVar("SelectT", bound=Select)


@dataclass(frozen=True)
class LedgerFilter:
    year: int | None = None
    oem: int | None = None
    supplier: int | None = None
    city: str | None = None
    near_shore: bool | None = None
    kind: EntryKind | None = None
    date_from: date | None = None
    date_to: date | None = None

    def apply(self, query: SelectT) -> SelectT:
        conditions = []
        if self.year is not None:
            conditions.append(LedgerEntry.year == self.year)
        if self.oem is not None:
            conditions.append(LedgerEntry.oem_org_id == self.oem)
        if self.supplier is not None:
            conditions.append(LedgerEntry.supplier_org_id == self.supplier)
        if self.city is not None:
            conditions.append(LedgerEntry.supplier_city_code == self.city)
        if self.near_shore is not None:
            conditions.append(LedgerEntry.near_shore.is_(self.near_shore))
        if self.kind is not None:
            conditions.append(LedgerEntry.kind == self.kind)
        if self.date_from is not None:
            conditions.append(LedgerEntry.purchased_on >= self.date_from)
        if self.date_to is not None:
            conditions.append(LedgerEntry.purchased_on <= self.date_to)
        return query.where(*conditions)


def _org_names(org_ids: set[int]) -> dict[int, tuple[str, str]]:
    if not org_ids:
        return {}
    rows = db.session.execute(
        select(Organization.id, Organization.legal_name, Organization.uscc).where(
            Organization.id.in_(org_ids)
        )
    )
    return {row.id: (row.legal_name, row.uscc) for row in rows}


def entry_dict(entry: LedgerEntry, names: Mapping[int, tuple[str, str]]) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(entry, name) for name in HASHED_FIELDS}
    values["distance_km"] = Decimal(entry.distance_km).quantize(METRE)
    values["prev_hash"] = entry.prev_hash
    values["entry_hash"] = entry.entry_hash
    values["oem_name"], values["oem_uscc"] = names.get(entry.oem_org_id, (None, None))
    values["supplier_name"], values["supplier_uscc"] = names.get(
        entry.supplier_org_id, (None, None)
    )
    return values


def ledger_page(filters: LedgerFilter, page: int, per_page: int) -> Page:
    """One page of entries in ledger order, with the organizations' names."""
    result = paginate(filters.apply(select(LedgerEntry)).order_by(LedgerEntry.seq), page, per_page)
    names = _org_names(
        {e.oem_org_id for e in result.items} | {e.supplier_org_id for e in result.items}
    )
    result.items = [entry_dict(entry, names) for entry in result.items]
    return result


CSV_COLUMNS = (
    "seq",
    "kind",
    "purchase_id",
    "invoice_number",
    "purchased_on",
    "year",
    "oem_org_id",
    "oem_uscc",
    "oem_name",
    "supplier_org_id",
    "supplier_uscc",
    "supplier_name",
    "supplier_city_code",
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
    "prev_hash",
    "entry_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: str | None) -> str:
    """Free text a spreadsheet must not run as a formula (OWASP CSV injection)."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def ledger_csv(filters: LedgerFilter, *, chunk_rows: int = 500) -> Iterator[str]:
    """The filtered ledger as CSV text chunks: a UTF-8 BOM (for Excel), the header, the rows."""
    oem = aliased(Organization)
    supplier = aliased(Organization)
    query = (
        filters.apply(
            select(
                LedgerEntry,
                Purchase.invoice_number,
                oem.legal_name.label("oem_name"),
                oem.uscc.label("oem_uscc"),
                supplier.legal_name.label("supplier_name"),
                supplier.uscc.label("supplier_uscc"),
            )
        )
        .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .join(oem, oem.id == LedgerEntry.oem_org_id)
        .join(supplier, supplier.id == LedgerEntry.supplier_org_id)
        .order_by(LedgerEntry.seq)
        .execution_options(yield_per=chunk_rows)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    result = db.session.execute(query)
    try:
        for count, row in enumerate(result, start=1):
            entry: LedgerEntry = row[0]
            writer.writerow(
                [
                    entry.seq,
                    entry.kind.value,
                    entry.purchase_id,
                    _csv_text(row.invoice_number),
                    entry.purchased_on.isoformat(),
                    entry.year,
                    entry.oem_org_id,
                    row.oem_uscc,
                    _csv_text(row.oem_name),
                    entry.supplier_org_id,
                    row.supplier_uscc,
                    _csv_text(row.supplier_name),
                    entry.supplier_city_code,
                    _money(entry.amount),
                    "true" if entry.near_shore else "false",
                    entry.reason_code,
                    Decimal(entry.distance_km).quantize(METRE),
                    entry.policy_version,
                    _money(entry.baseline),
                    _money(entry.near_shore_total_before),
                    _money(entry.increment),
                    _money(entry.subsidy),
                    entry.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    entry.prev_hash,
                    entry.entry_hash,
                ]
            )
            if count % chunk_rows == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    finally:
        result.close()
    yield buffer.getvalue()


def ledger_summary(year: int, *, oem: int | None = None) -> dict[str, Any]:
    """Per OEM with entries in ``year``: near-shore total, baseline, increment, subsidy, cap."""
    near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=ZERO))
    query = (
        select(
            LedgerEntry.oem_org_id,
            func.count().label("entries"),
            func.sum(LedgerEntry.amount).label("amount"),
            near.label("near"),
            func.sum(LedgerEntry.increment).label("increment"),
            func.sum(LedgerEntry.subsidy).label("subsidy"),
        )
        .where(LedgerEntry.year == year)
        .group_by(LedgerEntry.oem_org_id)
        .order_by(LedgerEntry.oem_org_id)
    )
    if oem is not None:
        query = query.where(LedgerEntry.oem_org_id == oem)
    rows = list(db.session.execute(query))
    book = load_book({(row.oem_org_id, year) for row in rows})
    terms, _ = select_policy(book.policies, date(year, 12, 31))
    names = _org_names({row.oem_org_id for row in rows})
    items = []
    for row in rows:
        baseline, source = book.baseline(row.oem_org_id, year)
        subsidy = _money(row.subsidy or ZERO)
        name, uscc = names.get(row.oem_org_id, (None, None))
        items.append(
            {
                "oem_org_id": row.oem_org_id,
                "oem_name": name,
                "oem_uscc": uscc,
                "entries": row.entries,
                "total_amount": _money(row.amount or ZERO),
                "near_shore_total": _money(row.near or ZERO),
                "baseline": baseline,
                "baseline_source": source,
                "increment": _money(row.increment or ZERO),
                "subsidy": subsidy,
                "annual_cap": terms.annual_cap,
                "cap_reached": subsidy >= terms.annual_cap,
            }
        )
    totals = {
        name: sum((item[name] for item in items), ZERO)
        for name in ("total_amount", "near_shore_total", "increment", "subsidy")
    }
    return {"year": year, "policy_version": terms.version, "items": items, "totals": totals}


def ledger_status(purchase_id: int) -> dict[str, Any]:
    """A purchase's place in the ledger, for ``GET /purchases/{id}``.

    ``status``: ``pending`` (not recorded yet), ``failed`` (its outbox row is dead: an admin
    must look), ``recorded`` or ``reversed``; ``entry``/``reversal`` describe the entries.
    """
    entries = {
        e.kind: e
        for e in db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.purchase_id == purchase_id)
        )
    }
    record = entries.get(EntryKind.RECORD)
    reversal = entries.get(EntryKind.REVERSAL)
    if reversal is not None:
        status = "reversed"
    elif record is not None:
        status = "recorded"
    else:
        dead = db.session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(
                OutboxEvent.topic == OutboxTopic.LEDGER_RECORD,
                OutboxEvent.aggregate_id == purchase_id,
                OutboxEvent.status == OutboxStatus.DEAD,
            )
        )
        status = "failed" if dead else "pending"

    def describe(entry: LedgerEntry | None) -> dict[str, Any] | None:
        if entry is None:
            return None
        return {
            "seq": entry.seq,
            "entry_hash": entry.entry_hash,
            "recorded_at": entry.recorded_at,
            "near_shore": entry.near_shore,
            "reason_code": entry.reason_code,
            "distance_km": Decimal(entry.distance_km).quantize(METRE),
            "policy_version": entry.policy_version,
            "baseline": entry.baseline,
            "increment": entry.increment,
            "subsidy": entry.subsidy,
        }

    return {"status": status, "entry": describe(record), "reversal": describe(reversal)}
