"""Appending to the ledger: one lock, the positions of (OEM, year), and exactly-once effects.

The worker asks the ledger to *sync* a purchase: its counted state in the ledger (the entries
of that purchase) is brought to what the purchase row says now. A countable purchase (confirmed,
not cancelled, not held by an invoice review) that is not counted gets a ``record``; a counted
one that is no longer countable gets a ``reversal``; anything else appends nothing. After a
change of T(o, Y), the position of (o, Y+1) is *settled*: if its baseline moved, an
``adjustment`` brings its entries to the new I* and S*. A declared baseline settles (o, Y+1)
the same way. Syncing is a function of the rows, so a job delivered ten times, or retried after
a crash, appends each effect once; ``cause`` is unique besides (``record:<p>:<n>``...).

Entries are appended under one lock (PostgreSQL advisory lock; the SQLite write lock) so
``seq`` and ``prev_hash`` never fork. Nothing here ever updates or deletes an entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, case, func, insert, literal, select, text

from market.clock import business_date, utcnow
from market.extensions import db
from market.ledger.chain import chain_hash, ledger_head
from market.ledger.policy import PolicyTerms, load_policy_terms, policy_for_year
from market.ledger.rules import (
    ZERO,
    Baseline,
    Position,
    Reason,
    Verdict,
    baseline_of,
    decide_near_shore,
    money,
    position_of,
)
from market.models import (
    DeclaredBaseline,
    EntryKind,
    LedgerEntry,
    LedgerTotal,
    Organization,
    Purchase,
)

# pg_advisory_xact_lock key of the ledger's append lock (any constant; "LEDGER" in ASCII).
LEDGER_LOCK_KEY = 0x4C4544474552

Key = tuple[int, int]  # (oem_org_id, year)


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
class PurchaseFact:
    """The frozen facts of a purchase, and whether the ledger should count it now."""

    purchase_id: int
    oem_org_id: int
    supplier_org_id: int
    site_city_code: str
    plant_city_code: str
    site: tuple[float, float]
    plant: tuple[float, float]
    amount: Decimal
    purchased_on: date
    countable: bool = True

    @property
    def key(self) -> Key:
        return (self.oem_org_id, self.purchased_on.year)

    @classmethod
    def of(cls, purchase: Purchase) -> PurchaseFact:
        """The facts of a purchase row, flushed or not (a new one's preview has id 0)."""
        return cls(
            purchase_id=purchase.id or 0,
            oem_org_id=purchase.oem_org_id,
            supplier_org_id=purchase.supplier_org_id,
            site_city_code=purchase.site_city_code,
            plant_city_code=purchase.plant_city_code,
            site=(purchase.site_lat, purchase.site_lon),
            plant=(purchase.plant_lat, purchase.plant_lon),
            amount=Decimal(purchase.amount),
            purchased_on=purchase.purchased_on,
            countable=purchase.countable,
        )


@dataclass
class YearState:
    """The sums of the entries of (o, Y) so far, and the baseline its last entry stated."""

    near_shore_total: Decimal = ZERO
    increment: Decimal = ZERO
    subsidy: Decimal = ZERO
    entries: int = 0
    baseline: Decimal | None = None
    baseline_source: str | None = None


@dataclass(frozen=True)
class Counted:
    """A purchase the ledger counts now: the verdict of its latest record."""

    verdict: Verdict
    policy_version: int
    records: int
    reversals: int


@dataclass
class Book:
    """What appending needs to know, loaded for the keys a batch touches (and their
    neighbouring years); updated in memory as entries are appended."""

    policies: Sequence[PolicyTerms]
    states: dict[Key, YearState] = field(default_factory=dict)
    declared: dict[Key, Decimal] = field(default_factory=dict)
    verified_on: dict[int, date | None] = field(default_factory=dict)

    def state(self, key: Key) -> YearState:
        return self.states.setdefault(key, YearState())

    def terms(self, year: int) -> tuple[PolicyTerms, bool]:
        return policy_for_year(self.policies, year)

    def baseline(self, oem: int, year: int) -> Baseline:
        return baseline_of(
            year,
            declared_prior=self.declared.get((oem, year - 1)),
            platform_prior=self.state((oem, year - 1)).near_shore_total,
            verified_on=self.verified_on.get(oem),
        )

    def position(self, oem: int, year: int, near_shore_total: Decimal | None = None) -> Position:
        """The position of (oem, year) with T as recorded, or as given."""
        terms, covered = self.terms(year)
        total = self.state((oem, year)).near_shore_total
        return position_of(
            total if near_shore_total is None else near_shore_total,
            self.baseline(oem, year),
            terms,
            covered=covered,
            provisional_baseline=self.state((oem, year - 1)).near_shore_total,
        )


def load_book(keys: set[Key], *, seed_policy: bool = False, from_totals: bool = False) -> Book:
    """A book with the states of ``keys`` and of the years either side of them.

    The worker sums the entries themselves (the record); ``from_totals`` reads the
    ``ledger_totals`` rows it keeps beside them (what a preview can afford on every request).
    """
    book = Book(policies=load_policy_terms(seed=seed_policy))
    oems = {oem for oem, _ in keys}
    if not oems:
        return book
    years = {y + d for _, y in keys for d in (-1, 0, 1)}
    if from_totals:
        rows: Any = db.session.execute(
            select(
                LedgerTotal.oem_org_id,
                LedgerTotal.year,
                LedgerTotal.near_shore_total.label("near"),
                LedgerTotal.increment_total.label("increment"),
                LedgerTotal.subsidy_total.label("subsidy"),
                literal(0).label("entries"),
            ).where(LedgerTotal.oem_org_id.in_(oems), LedgerTotal.year.in_(years))
        )
    else:
        near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=ZERO))
        rows = db.session.execute(
            select(
                LedgerEntry.oem_org_id,
                LedgerEntry.year,
                near.label("near"),
                func.sum(LedgerEntry.increment).label("increment"),
                func.sum(LedgerEntry.subsidy).label("subsidy"),
                func.count().label("entries"),
            )
            .where(LedgerEntry.oem_org_id.in_(oems), LedgerEntry.year.in_(years))
            .group_by(LedgerEntry.oem_org_id, LedgerEntry.year)
        )
    for row in rows:
        book.states[(row.oem_org_id, row.year)] = YearState(
            near_shore_total=money(row.near or ZERO),
            increment=money(row.increment or ZERO),
            subsidy=money(row.subsidy or ZERO),
            entries=row.entries,
        )
    if not from_totals:
        _load_last_baselines(book, oems, years)
    declared = db.session.execute(
        select(DeclaredBaseline.oem_org_id, DeclaredBaseline.year, DeclaredBaseline.amount).where(
            DeclaredBaseline.oem_org_id.in_(oems), DeclaredBaseline.year.in_(years)
        )
    )
    book.declared = {(row.oem_org_id, row.year): row.amount for row in declared}
    verified = db.session.execute(
        select(Organization.id, Organization.verified_at).where(Organization.id.in_(oems))
    )
    book.verified_on = {
        row.id: business_date(row.verified_at) if row.verified_at else None for row in verified
    }
    return book


def _load_last_baselines(book: Book, oems: set[int], years: set[int]) -> None:
    last = (
        select(func.max(LedgerEntry.seq))
        .where(LedgerEntry.oem_org_id.in_(oems), LedgerEntry.year.in_(years))
        .group_by(LedgerEntry.oem_org_id, LedgerEntry.year)
    )
    rows = db.session.execute(
        select(
            LedgerEntry.oem_org_id,
            LedgerEntry.year,
            LedgerEntry.baseline,
            LedgerEntry.baseline_source,
        ).where(LedgerEntry.seq.in_(last))
    )
    for row in rows:
        state = book.state((row.oem_org_id, row.year))
        state.baseline, state.baseline_source = row.baseline, row.baseline_source


def load_facts(purchase_ids: Sequence[int]) -> dict[int, PurchaseFact]:
    """The frozen facts of these purchases (never the sites' current rows)."""
    rows = db.session.scalars(select(Purchase).where(Purchase.id.in_(purchase_ids)))
    return {p.id: PurchaseFact.of(p) for p in rows}


def _load_counted(purchase_ids: Sequence[int]) -> dict[int, Counted]:
    rows = db.session.execute(
        select(
            LedgerEntry.purchase_id,
            LedgerEntry.kind,
            LedgerEntry.near_shore,
            LedgerEntry.reason_code,
            LedgerEntry.distance_km,
            LedgerEntry.policy_version,
        )
        .where(
            LedgerEntry.purchase_id.in_(purchase_ids),
            LedgerEntry.kind.in_([EntryKind.RECORD, EntryKind.REVERSAL]),
        )
        .order_by(LedgerEntry.seq)
    )
    counted: dict[int, Counted] = {}
    for row in rows:
        previous = counted.get(row.purchase_id)
        records = (previous.records if previous else 0) + (row.kind is EntryKind.RECORD)
        reversals = (previous.reversals if previous else 0) + (row.kind is EntryKind.REVERSAL)
        verdict = Verdict(row.near_shore, Reason(row.reason_code), row.distance_km)
        if previous is not None and row.kind is EntryKind.REVERSAL:
            verdict = previous.verdict
        counted[row.purchase_id] = Counted(verdict, row.policy_version, records, reversals)
    return counted


@dataclass
class AppendOutcome:
    """What became of one request: the seqs it appended (none if nothing was due) or an error."""

    purchase_id: int
    appended: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Appender:
    """Appends entries to the chain and keeps the book's states in step."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.seq, self.prev_hash = ledger_head()
        self.rows: list[dict[str, Any]] = []
        self.touched: set[Key] = set()
        self.history: dict[int, Counted] = {}

    def append(self, values: dict[str, Any], position: Position, change_total: Decimal) -> int:
        key = (values["oem_org_id"], values["year"])
        state = self.book.state(key)
        self.seq += 1
        values |= {
            "seq": self.seq,
            "format": 2,
            "recorded_at": utcnow(),
            "policy_version": values.get("policy_version") or position.policy_version,
            "baseline": position.baseline.amount,
            "baseline_source": str(position.baseline.source),
            "held": position.held,
            "near_shore_total_before": state.near_shore_total,
            "near_shore_total": position.near_shore_total,
            "increment_total": position.increment,
            "subsidy_total": position.subsidy,
            "increment": money(position.increment - state.increment),
            "subsidy": money(position.subsidy - state.subsidy),
        }
        values["entry_hash"] = chain_hash(self.prev_hash, values)
        values["prev_hash"] = self.prev_hash
        self.prev_hash = values["entry_hash"]
        self.rows.append(values)
        state.near_shore_total = money(state.near_shore_total + change_total)
        state.increment, state.subsidy = position.increment, position.subsidy
        state.baseline, state.baseline_source = values["baseline"], values["baseline_source"]
        state.entries += 1
        self.touched.add(key)
        return self.seq

    def settle(self, oem: int, year: int) -> int | None:
        """Append an adjustment if (oem, year) has entries and its baseline, I* or S* moved."""
        state = self.book.state((oem, year))
        if not state.entries:
            return None
        position = self.book.position(oem, year)
        baseline = position.baseline
        if (
            baseline.amount == state.baseline
            and str(baseline.source) == state.baseline_source
            and (position.increment, position.subsidy) == (state.increment, state.subsidy)
        ):
            return None
        moved = (baseline.amount, str(baseline.source)) != (state.baseline, state.baseline_source)
        reason = Reason.BASELINE_CHANGED if state.baseline_source and moved else Reason.SETTLED
        return self.append(
            {
                "kind": EntryKind.ADJUSTMENT,
                "cause": f"adjust:{oem}:{year}:{self.seq + 1}",
                "purchase_id": None,
                "oem_org_id": oem,
                "supplier_org_id": None,
                "supplier_city_code": None,
                "plant_city_code": None,
                "year": year,
                "purchased_on": None,
                "amount": ZERO,
                "near_shore": False,
                "reason_code": str(reason),
                "distance_km": None,
            },
            position,
            ZERO,
        )

    def count(self, fact: PurchaseFact) -> list[int]:
        """Record (countable, not counted) or reverse (counted, not countable) a purchase."""
        history = self.history.get(fact.purchase_id)
        counted = history is not None and history.records > history.reversals
        if fact.countable == counted:
            return []
        oem, year = fact.key
        seqs = [s for s in [self.settle(oem, year)] if s]  # a v1 position first, if any
        terms, covered = self.book.terms(year)
        records = history.records if history else 0
        reversals = history.reversals if history else 0
        if history is None or not counted:
            kind, sign, version = EntryKind.RECORD, 1, terms.version
            verdict = decide_near_shore(
                terms, fact.site_city_code, fact.site, fact.plant, covered=covered
            )
            records += 1
            number = records
        else:
            kind, sign, version = EntryKind.REVERSAL, -1, history.policy_version
            verdict = history.verdict
            reversals += 1
            number = reversals
        change = fact.amount * sign if verdict.near_shore else ZERO
        total = self.book.state(fact.key).near_shore_total + change
        seqs.append(
            self.append(
                {
                    "kind": kind,
                    "cause": f"{kind.value}:{fact.purchase_id}:{number}",
                    "purchase_id": fact.purchase_id,
                    "oem_org_id": oem,
                    "supplier_org_id": fact.supplier_org_id,
                    "supplier_city_code": fact.site_city_code,
                    "plant_city_code": fact.plant_city_code,
                    "year": year,
                    "purchased_on": fact.purchased_on,
                    "amount": money(fact.amount * sign),
                    "near_shore": verdict.near_shore,
                    "reason_code": str(verdict.reason_code),
                    "distance_km": verdict.distance_km,
                    "policy_version": version,
                },
                self.book.position(oem, year, total),
                change,
            )
        )
        self.history[fact.purchase_id] = Counted(verdict, version, records, reversals)
        if verdict.near_shore:
            seqs += [s for s in [self.settle(oem, year + 1)] if s]
        return seqs

    def flush(self) -> None:
        if not self.rows:
            return
        # Core executemany (the table's column types still convert the values).
        db.session.execute(insert(cast(Table, LedgerEntry.__table__)), self.rows)
        _store_totals(self.book, self.touched)
        self.rows = []


def sync_purchases(purchase_ids: Sequence[int]) -> list[AppendOutcome]:
    """Bring the ledger's count of each purchase to its row, in order (call under the lock,
    in the caller's transaction; the caller commits)."""
    unique_ids = sorted(set(purchase_ids))
    facts = load_facts(unique_ids)
    appender = _Appender(load_book({fact.key for fact in facts.values()}, seed_policy=True))
    appender.history = _load_counted(unique_ids)
    outcomes = []
    for purchase_id in purchase_ids:
        outcome = AppendOutcome(purchase_id)
        outcomes.append(outcome)
        fact = facts.get(purchase_id)
        if fact is None:
            outcome.error = f"purchase {purchase_id} does not exist"
            continue
        outcome.appended = appender.count(fact)
    appender.flush()
    return outcomes


def sync_purchase(purchase_id: int) -> AppendOutcome:
    """Lock and sync one purchase (no commit): what the worker does for one outbox row."""
    acquire_ledger_lock()
    return sync_purchases([purchase_id])[0]


def settle_year(oem: int, year: int) -> list[int]:
    """Adjust (oem, year) to its baseline now (after a declaration; under the lock)."""
    appender = _Appender(load_book({(oem, year)}, seed_policy=True))
    seq = appender.settle(oem, year)
    appender.flush()
    return [seq] if seq else []


def _store_totals(book: Book, keys: set[Key]) -> None:
    """Write the book's positions of ``keys`` to ``ledger_totals`` (same transaction as the
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
        state = book.state(key)
        row.near_shore_total = state.near_shore_total
        row.increment_total = state.increment
        row.subsidy_total = state.subsidy
    db.session.flush()
