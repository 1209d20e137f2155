"""Reading the ledger: entry pages and CSV (same columns), per-OEM positions, a purchase's
place in the ledger, and the preview of a purchase not counted yet (nothing here writes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import aliased

from market.clock import business_date
from market.extensions import db
from market.ledger import sheets
from market.ledger.append import Book, PurchaseFact, YearState, load_book
from market.ledger.chain import MONEY_FIELDS
from market.ledger.policy import cached_policy_terms, policy_fingerprint, policy_for_year
from market.ledger.rules import METRE, ZERO, Position, decide_near_shore, money
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
    Site,
    SiteKind,
)
from market.permissions import jurisdiction_condition
from market.services.pagination import Page, paginate

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
    # An auditor's jurisdiction: entries whose plant lies in one of these city-code prefixes.
    plant_city_prefixes: tuple[str, ...] | None = None

    def apply(self, query: SelectT) -> SelectT:
        conditions: list[ColumnElement[bool]] = []
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
        if self.plant_city_prefixes is not None:
            # Records and reversals by the plant they were delivered to; an adjustment (no
            # plant: it moves the OEM's whole position) with the OEMs that have a plant there.
            conditions.append(
                or_(
                    _within(LedgerEntry.plant_city_code, self.plant_city_prefixes),
                    and_(
                        LedgerEntry.kind == EntryKind.ADJUSTMENT,
                        LedgerEntry.oem_org_id.in_(oems_in(self.plant_city_prefixes)),
                    ),
                )
            )
        return query.where(*conditions)


def oems_in(prefixes: tuple[str, ...]) -> Select[Any]:
    """The OEMs with a plant in a jurisdiction (its city-code prefixes), as a subquery."""
    return select(Site.organization_id).where(
        Site.kind == SiteKind.PLANT, _within(Site.city_code, prefixes)
    )


def _within(column: Any, prefixes: tuple[str, ...]) -> ColumnElement[bool]:
    condition = jurisdiction_condition(column, prefixes)
    assert condition is not None  # only None for "no restriction", which prefixes are not
    return condition


# The columns of an entry in JSON pages and in the CSV export, in this order.
COLUMNS = (
    "seq",
    "format",
    "cause",
    "kind",
    "purchase_id",
    "invoice_number",
    "purchased_on",
    "year",
    "oem_org_id",
    "oem_uscc",
    "oem_name",
    "plant_city_code",
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
    "baseline_source",
    "held",
    "near_shore_total_before",
    "near_shore_total",
    "increment_total",
    "subsidy_total",
    "increment",
    "subsidy",
    "recorded_at",
    "prev_hash",
    "entry_hash",
)


def _entries_query(filters: LedgerFilter) -> Select:
    oem = aliased(Organization)
    supplier = aliased(Organization)
    return (
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
        .outerjoin(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .join(oem, oem.id == LedgerEntry.oem_org_id)
        .outerjoin(supplier, supplier.id == LedgerEntry.supplier_org_id)
        .order_by(LedgerEntry.seq)
    )


def entry_values(row: Any) -> dict[str, Any]:
    """One entry as the typed values of :data:`COLUMNS` (money Decimal, None kept)."""
    entry: LedgerEntry = row[0]
    joined = set(row._fields)  # Row._fields builds a tuple on every access
    values: dict[str, Any] = {}
    for name in COLUMNS:
        value = getattr(row, name) if name in joined else getattr(entry, name)
        if value is not None and name in MONEY_FIELDS:
            value = money(value)
        elif value is not None and name == "distance_km":
            value = Decimal(value).quantize(METRE)
        values[name] = value
    return values


def ledger_page(filters: LedgerFilter, page: int, per_page: int) -> Page:
    """One page of entries in ledger order, with the organizations' names."""
    result = paginate(_entries_query(filters), page, per_page, rows=True)
    result.items = [entry_values(row) for row in result.items]
    return result


_FORMULA_START = sheets.FORMULA_START  # one set for CSV and XLSX


def _csv_cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "recorded_at":
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if name == "kind":
        return value.value
    if isinstance(value, str) and name in ("invoice_number", "oem_name", "supplier_name"):
        # Free text a spreadsheet must not run as a formula (OWASP CSV injection).
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, date):
        return value.isoformat()
    return value


def ledger_csv(filters: LedgerFilter, *, chunk_rows: int = 500) -> Iterator[str]:
    """The filtered ledger as CSV text chunks: a UTF-8 BOM (for Excel), the header, the rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(COLUMNS)
    result = db.session.execute(_entries_query(filters).execution_options(yield_per=chunk_rows))
    try:
        for count, row in enumerate(result, start=1):
            values = entry_values(row)
            writer.writerow([_csv_cell(name, values[name]) for name in COLUMNS])
            if count % chunk_rows == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    finally:
        result.close()
    yield buffer.getvalue()


class TooManyRows(ValueError):
    """An export that does not fit in one worksheet."""


def ledger_xlsx(filters: LedgerFilter, *, chunk_rows: int = 500) -> bytes:
    """The filtered ledger as one XLSX sheet (台账明细): the CSV's columns, Chinese headers,
    amounts as numbers. Raises :class:`TooManyRows` past :data:`sheets.MAX_DATA_ROWS`."""
    count = db.session.scalar(
        select(func.count()).select_from(_entries_query(filters).order_by(None).subquery())
    )
    if (count or 0) > sheets.MAX_DATA_ROWS:
        raise TooManyRows(count)
    workbook = sheets.new_workbook()
    sheet = sheets.Sheet(
        workbook,
        "台账明细",
        [(sheets.LEDGER_HEADERS[name], sheets.ledger_kind(name)) for name in COLUMNS],
    )
    result = db.session.execute(_entries_query(filters).execution_options(yield_per=chunk_rows))
    try:
        for row in result:
            values = entry_values(row)
            sheet.append(values[name] for name in COLUMNS)
    finally:
        result.close()
    return sheets.workbook_bytes(workbook)


def entries_by_seq(seqs: Iterable[int], *, chunk: int = 500) -> list[dict[str, Any]]:
    """The entries of these seqs (as :func:`entry_values`), in ledger order."""
    wanted = sorted(set(seqs))
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), chunk):
        query = _entries_query(LedgerFilter()).where(
            LedgerEntry.seq.in_(wanted[start : start + chunk])
        )
        found.extend(entry_values(row) for row in db.session.execute(query))
    return found


# The summary's columns, for CSV and XLSX (one row per OEM), with the XLSX headers.
SUMMARY_COLUMNS = {
    "year": ("年度", sheets.INTEGER),
    "oem_org_id": ("整车企业编号", sheets.INTEGER),
    "oem_name": ("整车企业名称", sheets.LONG_TEXT),
    "oem_uscc": ("统一社会信用代码", sheets.TEXT),
    "entries": ("条目数", sheets.INTEGER),
    "total_amount": ("采购总额（元）", sheets.MONEY),
    "near_shore_total": ("近岸采购总额 T（元）", sheets.MONEY),
    "baseline": ("基数 B（元）", sheets.MONEY),
    "baseline_source": ("基数来源", sheets.TEXT),
    "increment": ("增量 I*（元）", sheets.MONEY),
    "subsidy": ("补贴 S*（元）", sheets.MONEY),
    "held": ("是否暂缓", sheets.BOOLEAN),
    "increment_if_declared": ("申报基数后增量（元）", sheets.MONEY),
    "subsidy_if_declared": ("申报基数后补贴（元）", sheets.MONEY),
    "annual_cap": ("年度上限（元）", sheets.MONEY),
    "cap_left": ("剩余额度（元）", sheets.MONEY),
    "cap_reached": ("是否达到上限", sheets.BOOLEAN),
    "policy_version": ("政策版本", sheets.INTEGER),
    "consistent": ("核对一致", sheets.BOOLEAN),
}


def _summary_rows(summary: Mapping[str, Any]) -> Iterator[list[Any]]:
    for item in summary["items"]:
        values = {**item, "year": summary["year"]}
        yield [values[name] for name in SUMMARY_COLUMNS]


def summary_csv(summary: Mapping[str, Any]) -> str:
    """A :func:`ledger_summary` as CSV: a UTF-8 BOM, the header, one row per OEM."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(SUMMARY_COLUMNS)
    for row in _summary_rows(summary):
        writer.writerow(
            [_csv_cell(name, value) for name, value in zip(SUMMARY_COLUMNS, row, strict=True)]
        )
    return buffer.getvalue()


def summary_xlsx(summary: Mapping[str, Any]) -> bytes:
    """A :func:`ledger_summary` as XLSX: one row per OEM, then a 合计 row of the totals."""
    workbook = sheets.new_workbook()
    sheet = sheets.Sheet(workbook, "汇总", list(SUMMARY_COLUMNS.values()))
    for row in _summary_rows(summary):
        sheet.append(row)
    totals = {**summary["totals"], "year": summary["year"], "oem_name": "合计"}
    sheet.append(totals.get(name) for name in SUMMARY_COLUMNS)
    return sheets.workbook_bytes(workbook)


def _org_names(org_ids: set[int]) -> dict[int, tuple[str, str]]:
    if not org_ids:
        return {}
    rows = db.session.execute(
        select(Organization.id, Organization.legal_name, Organization.uscc).where(
            Organization.id.in_(org_ids)
        )
    )
    return {row.id: (row.legal_name, row.uscc) for row in rows}


def position_dict(position: Position) -> dict[str, Any]:
    """An OEM's position in a year as the API shows it to the OEM and to auditors."""
    baseline = position.baseline
    return {
        "near_shore_total": position.near_shore_total,
        "baseline": baseline.amount,
        "baseline_source": str(baseline.source),
        "increment": position.increment,
        "subsidy": position.subsidy,
        "held": position.held,
        "increment_if_declared": position.increment_if_declared,
        "subsidy_if_declared": position.subsidy_if_declared,
        "annual_cap": position.annual_cap,
        "cap_left": money(position.annual_cap - position.subsidy),
        "cap_reached": position.subsidy >= position.annual_cap,
        "policy_version": position.policy_version,
    }


def ledger_summary(
    year: int, *, oem: int | None = None, plant_city_prefixes: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Per OEM with entries in ``year``: T, B, I*, S*, held, cap, from the entries.

    I* and S* are the sums of the entries (the record), which equal the rule recomputed from
    the counted purchases; ``consistent`` says so for each OEM (False would be a defect).
    """
    # The rule's figures are per OEM: an auditor sees the whole position of every OEM with a
    # plant in the jurisdiction (a partial sum over some plants would be no figure of the rule).
    filters = LedgerFilter(year=year, oem=oem)
    near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=ZERO))
    query = filters.apply(
        select(
            LedgerEntry.oem_org_id,
            func.count().label("entries"),
            func.sum(LedgerEntry.amount).label("amount"),
            near.label("near"),
            func.sum(LedgerEntry.increment).label("increment"),
            func.sum(LedgerEntry.subsidy).label("subsidy"),
        )
        .group_by(LedgerEntry.oem_org_id)
        .order_by(LedgerEntry.oem_org_id)
    )
    if plant_city_prefixes is not None:
        query = query.where(LedgerEntry.oem_org_id.in_(oems_in(plant_city_prefixes)))
    rows = list(db.session.execute(query))
    book = load_book({(row.oem_org_id, year) for row in rows})
    terms, _ = policy_for_year(book.policies, year)
    names = _org_names({row.oem_org_id for row in rows})
    items = []
    for row in rows:
        position = book.position(row.oem_org_id, year)
        increment, subsidy = money(row.increment or ZERO), money(row.subsidy or ZERO)
        name, uscc = names.get(row.oem_org_id, (None, None))
        items.append(
            {
                "oem_org_id": row.oem_org_id,
                "oem_name": name,
                "oem_uscc": uscc,
                "entries": row.entries,
                "total_amount": money(row.amount or ZERO),
                **position_dict(position),
                "increment": increment,
                "subsidy": subsidy,
                "consistent": (increment, subsidy) == (position.increment, position.subsidy),
            }
        )
    totals = {
        name: sum((item[name] for item in items), ZERO)
        for name in ("total_amount", "near_shore_total", "increment", "subsidy")
    }
    return {"year": year, "policy_version": terms.version, "items": items, "totals": totals}


def oem_position(oem: int, year: int) -> dict[str, Any]:
    """One OEM's own position in ``year`` (what its buyers see), zero if it has no entries."""
    book = load_book({(oem, year)})
    return {"oem_org_id": oem, "year": year, **position_dict(book.position(oem, year))}


def _dead_ledger_row(purchase_id: int) -> bool:
    return bool(
        db.session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(
                OutboxEvent.topic.in_([OutboxTopic.LEDGER_RECORD, OutboxTopic.LEDGER_REVERSE]),
                OutboxEvent.aggregate_id == purchase_id,
                OutboxEvent.status == OutboxStatus.DEAD,
            )
        )
    )


def ledger_status(purchase_id: int, *, confidential: bool = False) -> dict[str, Any]:
    """A purchase's place in the ledger, for ``GET /purchases/{id}``.

    ``status``: ``pending`` (countable, not recorded yet), ``failed`` (its outbox row is dead:
    an admin must look), ``recorded``, ``reversed`` or ``not_counted`` (never counted: not
    confirmed, disputed, held or rejected). ``confidential`` (the supplier's view) keeps the
    verdict, reason and distance and leaves out the OEM's baseline, totals and subsidy.
    """
    entries = list(
        db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.purchase_id == purchase_id)
            .order_by(LedgerEntry.seq)
        )
    )
    records = [e for e in entries if e.kind is EntryKind.RECORD]
    reversals = [e for e in entries if e.kind is EntryKind.REVERSAL]
    purchase = db.session.get(Purchase, purchase_id)
    if records and len(records) > len(reversals):
        status = "recorded"
    elif reversals:
        status = "reversed"
    elif _dead_ledger_row(purchase_id):
        status = "failed"
    elif purchase is not None and purchase.countable:
        status = "pending"
    else:
        status = "not_counted"

    def describe(entry: LedgerEntry | None) -> dict[str, Any] | None:
        if entry is None:
            return None
        described: dict[str, Any] = {
            "seq": entry.seq,
            "entry_hash": entry.entry_hash,
            "recorded_at": entry.recorded_at,
            "near_shore": entry.near_shore,
            "reason_code": entry.reason_code,
            "distance_km": Decimal(entry.distance_km).quantize(METRE)
            if entry.distance_km is not None
            else None,
            "policy_version": entry.policy_version,
        }
        if not confidential:
            described |= {
                "baseline": entry.baseline,
                "baseline_source": entry.baseline_source,
                "held": entry.held,
                "increment": entry.increment,
                "subsidy": entry.subsidy,
            }
        return described

    return {
        "status": status,
        "entry": describe(records[-1] if records else None),
        "reversal": describe(reversals[-1] if reversals else None),
    }


@dataclass(frozen=True)
class SubsidyPreview:
    """What confirming a purchase would do to its OEM's position (nothing written)."""

    near_shore: bool
    reason_code: str
    distance_km: Decimal
    policy_version: int
    year: int
    baseline: Decimal | None
    baseline_source: str
    held: bool
    near_shore_total_before: Decimal
    near_shore_total_after: Decimal
    increment: Decimal
    subsidy: Decimal
    message: str


def _yuan(amount: Decimal) -> str:
    return f"¥{amount:,.2f}"


def preview_inputs(
    oem_org_id: int | ColumnElement[int], year: int | ColumnElement[int]
) -> list[ColumnElement[Any]]:
    """What a preview of a purchase of (``oem_org_id``, ``year``) reads, as labelled scalar
    subqueries a caller adds to its own statement (so the preview costs no round trip of its
    own): T of the year and of the one before (the ``ledger_totals`` the worker keeps), the
    declared baseline of the year before, when the OEM was verified, and the policy
    fingerprint (the terms themselves come from the cache). The OEM and the year may be
    bound parameters (a statement built once)."""

    def total(of_year: int | ColumnElement[int]) -> Any:
        return (
            select(LedgerTotal.near_shore_total)
            .where(LedgerTotal.oem_org_id == oem_org_id, LedgerTotal.year == of_year)
            .scalar_subquery()
        )

    declared = select(DeclaredBaseline.amount).where(
        DeclaredBaseline.oem_org_id == oem_org_id, DeclaredBaseline.year == year - 1
    )
    verified = select(Organization.verified_at).where(Organization.id == oem_org_id)
    return [
        total(year).label("preview_total"),
        total(year - 1).label("preview_prior_total"),
        declared.scalar_subquery().label("preview_declared_prior"),
        verified.scalar_subquery().label("preview_verified_at"),
        policy_fingerprint().label("preview_policies"),
    ]


def preview_from(fact: PurchaseFact, row: Any) -> SubsidyPreview:
    """The preview of ``fact`` from a row holding the columns of :func:`preview_inputs`."""
    oem, year = fact.key
    book = Book(policies=cached_policy_terms(row.preview_policies))
    for of_year, total in ((year, row.preview_total), (year - 1, row.preview_prior_total)):
        if total is not None:
            book.states[(oem, of_year)] = YearState(near_shore_total=money(total))
    if row.preview_declared_prior is not None:
        book.declared[(oem, year - 1)] = row.preview_declared_prior
    verified_at = row.preview_verified_at
    book.verified_on = {oem: business_date(verified_at) if verified_at else None}
    return _preview(fact, book)


def preview(fact: PurchaseFact) -> SubsidyPreview:
    """The change to I* and S* this purchase would cause if it were counted now, from the
    totals the worker keeps (an estimate: purchases still waiting for the worker are not in
    them; the ledger entry is the figure that counts). One query."""
    row = db.session.execute(select(*preview_inputs(*fact.key))).one()
    return preview_from(fact, row)


def _preview(fact: PurchaseFact, book: Book) -> SubsidyPreview:
    oem, year = fact.key
    terms, covered = book.terms(year)
    verdict = decide_near_shore(terms, fact.site_city_code, fact.site, fact.plant, covered=covered)
    before = book.position(oem, year)
    total = before.near_shore_total + (fact.amount if verdict.near_shore else ZERO)
    after = book.position(oem, year, total)
    increment = money(after.increment - before.increment)
    subsidy = money(after.subsidy - before.subsidy)
    if not verdict.near_shore:
        message = (
            f"not near-shore ({verdict.reason_code}, {verdict.distance_km} km from the plant): "
            "no subsidy"
        )
    elif after.held:
        message = (
            f"near-shore; the {year} subsidy is held until the {year - 1} baseline is declared"
        )
    elif increment:
        message = (
            f"adds {_yuan(increment)} of new near-shore purchasing "
            f"(estimated subsidy {_yuan(subsidy)}, policy v{after.policy_version})"
        )
    else:
        message = (
            f"near-shore, but adds no new near-shore purchasing ({year} total "
            f"{_yuan(after.near_shore_total)} against a baseline of "
            f"{_yuan(after.baseline.amount or ZERO)})"
        )
    return SubsidyPreview(
        near_shore=verdict.near_shore,
        reason_code=str(verdict.reason_code),
        distance_km=verdict.distance_km,
        policy_version=after.policy_version,
        year=year,
        baseline=after.baseline.amount,
        baseline_source=str(after.baseline.source),
        held=after.held,
        near_shore_total_before=before.near_shore_total,
        near_shore_total_after=after.near_shore_total,
        increment=increment,
        subsidy=subsidy,
        message=message,
    )


def org_names(org_ids: set[int]) -> Mapping[int, tuple[str, str]]:
    return _org_names(org_ids)
