"""The invariants of RELIABILITY.md, written once and checked after every fault scenario.

Each check raises ``AssertionError`` naming the invariant; the ``*_ok``/``*_caught_up`` forms
return a bool for polling with :func:`tests.faults.toolkit.wait_until`. They read the database
through their own connections (never the test's session, whose snapshot could be stale) and the
API through the real HTTP server, as an auditor or an admin would.

- I1 nothing lost: every purchase that got a 2xx has exactly one ledger ``record`` entry.
- I2 no phantom: every entry references a committed purchase with the same parties and amount
  (negated for a reversal, which only a cancelled purchase has); the ledger's sums equal the
  purchases' (records = all purchases, reversals = cancelled ones).
- I3 exactly-once by construction: the unique constraints exist in the live schema.
- I4 search converges: the index's (id, version) pairs equal the database's; no suspended or
  hidden supplier appears in a search result answered after it was hidden.
- I5 clean failure: no 500, no reply without an HTTP answer; 4xx/503/504 bodies are the error
  envelope with a message (422 with field messages); no stack trace, SQL or Elasticsearch error
  text in any body.
- I6 the hash chain verifies (``GET /ledger/verify``) and covers every entry.
- I7 nothing dropped silently: every outbox row not done (pending with an error, or dead) is
  listed by ``GET /admin/outbox`` with its last error.
- I8 order-independent money: for every (OEM, year) the entries sum to I* and S* recomputed
  from the counted purchases alone (DESIGN.md v2).
- I9 no one-sided money: every ``record`` entry is of a confirmed purchase, and its verdict was
  decided from the purchase's frozen facts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from elasticsearch import Elasticsearch
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from market.models import (
    EntryKind,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseStatus,
)
from tests.faults.harness import Api, Reply, World

LEDGER_TOPICS = (OutboxTopic.LEDGER_RECORD, OutboxTopic.LEDGER_REVERSE, OutboxTopic.LEDGER_REBASE)

# Unique constraints that make effects exactly-once (table → column sets).
REQUIRED_UNIQUE: dict[str, list[tuple[str, ...]]] = {
    "ledger_entries": [("cause",), ("seq",), ("entry_hash",)],
    "purchases": [("oem_org_id", "supplier_org_id", "invoice_number"), ("quote_id",)],
    "idempotency_records": [("user_id", "key")],
    "quotes": [("demand_id", "organization_id")],
}

TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
SQL = re.compile(
    r"\[SQL:|\bSELECT\b[^\"]{0,200}\bFROM\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|\bDELETE FROM\b"
    r"|\bDETAIL:|\bHINT:"
)
DRIVER = re.compile(
    r"\bpsycopg\b|\bsqlalchemy\b|\bsqlite3\b|\bOperationalError\b|\bIntegrityError\b"
    r"|\bProgrammingError\b|\bredis\.exceptions\b"
)
SEARCH_ENGINE = re.compile(
    r"elastic_transport|\belasticsearch\.|\w+_exception\b|\"caused_by\"|\"root_cause\""
    r"|\bConnectionTimeout\b|\bApiError\b|\bTransportError\b|\bBadRequestError\b|/_bulk|/_search"
)
# Admins are shown the first line of an outbox row's error on purpose (I7): it may name the
# exception's type there, never a trace or a statement.
DIAGNOSTIC_PATHS = ("/api/v1/admin/outbox",)


class InvariantBroken(AssertionError):
    pass


def _fail(invariant: str, message: str) -> None:
    raise InvariantBroken(f"{invariant} broken: {message}")


@dataclass
class Invariants:
    engine: Engine
    api: Api
    world: World
    checked: set[str] = field(default_factory=set)

    # --- I1 ------------------------------------------------------------------------------------

    def _record_counts(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(LedgerEntry.purchase_id, func.count())
                .where(LedgerEntry.kind == EntryKind.RECORD)
                .group_by(LedgerEntry.purchase_id)
            )
            return {purchase_id: count for purchase_id, count in rows}

    def pending_ledger_rows(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(
                        OutboxEvent.topic.in_(LEDGER_TOPICS),
                        OutboxEvent.status == OutboxStatus.PENDING,
                    )
                )
                or 0
            )

    def ledger_has(self, acknowledged: Collection[int]) -> bool:
        """Every acknowledged purchase has its record entry (for polling under load)."""
        counts = self._record_counts()
        return all(counts.get(p) for p in acknowledged)

    def ledger_caught_up(self, acknowledged: Collection[int]) -> bool:
        """Every acknowledged purchase recorded and no ledger work pending (for polling)."""
        counts = self._record_counts()
        return all(counts.get(p) for p in acknowledged) and self.pending_ledger_rows() == 0

    def i1_nothing_lost(self, acknowledged: Collection[int]) -> None:
        counts = self._record_counts()
        missing = sorted(p for p in acknowledged if counts.get(p, 0) == 0)
        doubled = sorted(p for p, n in counts.items() if n != 1)
        if missing or doubled:
            _fail("I1", f"acknowledged purchases without entry {missing}, doubled {doubled}")
        self.checked.add("I1")

    # --- I2 ------------------------------------------------------------------------------------

    def i2_no_phantom(self) -> None:
        e, p = LedgerEntry, Purchase
        with self.engine.connect() as conn:
            orphans = conn.scalars(
                select(e.seq)
                .outerjoin(p, p.id == e.purchase_id)
                .where(p.id.is_(None), e.kind != EntryKind.ADJUSTMENT)
                .order_by(e.seq)
            ).all()
            if orphans:
                _fail("I2", f"entries {orphans} reference no committed purchase")
            mismatched = conn.execute(
                select(e.seq, e.kind, e.amount, p.amount, p.status)
                .join(p, p.id == e.purchase_id)
                .where(
                    (e.oem_org_id != p.oem_org_id)
                    | (e.supplier_org_id != p.supplier_org_id)
                    | ((e.kind == EntryKind.RECORD) & (e.amount != p.amount))
                    | ((e.kind == EntryKind.REVERSAL) & (e.amount != -p.amount))
                    | (
                        (e.kind == EntryKind.REVERSAL)
                        & (p.status != PurchaseStatus.CANCELLED)
                        & p.review.is_(None)
                    )
                )
            ).all()
            if mismatched:
                _fail("I2", f"entries that do not match their purchase: {mismatched[:5]}")
            records = _money(
                conn.scalar(select(func.sum(e.amount)).where(e.kind == EntryKind.RECORD))
            )
            reversals = _money(
                conn.scalar(select(func.sum(e.amount)).where(e.kind == EntryKind.REVERSAL))
            )
            # Purchases the other party confirmed (the only ones the ledger may count).
            confirmed = p.confirmation.is_not(None)
            purchased = _money(conn.scalar(select(func.sum(p.amount)).where(confirmed)))
            cancelled = _money(
                conn.scalar(
                    select(func.sum(p.amount)).where(
                        confirmed, p.status == PurchaseStatus.CANCELLED
                    )
                )
            )
        if records != purchased or -reversals != cancelled:
            _fail(
                "I2",
                f"ledger records {records} / reversals {reversals} vs purchases {purchased} / "
                f"cancelled {cancelled}",
            )
        self.checked.add("I2")

    # --- I3 ------------------------------------------------------------------------------------

    def i3_unique_constraints(self) -> None:
        with self.engine.connect() as conn:
            inspector = inspect(conn)
            for table, wanted in REQUIRED_UNIQUE.items():
                present: set[tuple[Any, ...]] = {
                    tuple(cast(list[Any], c["column_names"]))
                    for c in inspector.get_unique_constraints(table)
                }
                present |= {
                    tuple(cast(list[Any], i["column_names"]))
                    for i in inspector.get_indexes(table)
                    if i.get("unique")
                }
                for columns in wanted:
                    if not any(set(columns) == set(found) for found in present):
                        _fail("I3", f"no unique constraint on {table}{columns}")
        self.checked.add("I3")

    # --- I4 ------------------------------------------------------------------------------------

    def database_versions(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Organization.id, Organization.version).where(
                    Organization.kind == OrgKind.SUPPLIER
                )
            )
            return {org_id: version for org_id, version in rows}

    def invisible_suppliers(self) -> set[int]:
        with self.engine.connect() as conn:
            return set(
                conn.scalars(
                    select(Organization.id).where(
                        Organization.kind == OrgKind.SUPPLIER,
                        (Organization.status != OrgStatus.ACTIVE) | Organization.listed.is_(False),
                    )
                )
            )

    def index_difference(self, es: Elasticsearch, alias: str) -> dict[int, tuple[Any, Any]]:
        """Suppliers whose (id, version) differ: id → (database version, index version)."""
        truth = self.database_versions()
        if not es.indices.exists_alias(name=alias):
            return {org_id: (version, None) for org_id, version in truth.items()}
        es.indices.refresh(index=alias)
        indexed = {
            int(hit["_id"]): int(hit["_source"]["version"])
            for hit in es.search(
                index=alias, query={"match_all": {}}, source_includes=["version"], size=10_000
            )["hits"]["hits"]
        }
        return {
            org_id: (truth.get(org_id), indexed.get(org_id))
            for org_id in truth.keys() | indexed.keys()
            if truth.get(org_id) != indexed.get(org_id)
        }

    def index_converged(self, es: Elasticsearch, alias: str) -> bool:
        return not self.index_difference(es, alias)

    def i4_search_converged(self, es: Elasticsearch, alias: str) -> None:
        difference = self.index_difference(es, alias)
        if difference:
            _fail("I4", f"index differs from the database (db, index): {difference}")
        # No document claims visibility for a supplier the database hides.
        invisible = self.invisible_suppliers()
        if invisible:
            shown = es.search(
                index=alias,
                query={
                    "bool": {
                        "filter": [
                            {"term": {"visible": True}},
                            {"ids": {"values": [str(i) for i in invisible]}},
                        ]
                    }
                },
            )["hits"]["hits"]
            if shown:
                _fail("I4", f"hidden suppliers indexed as visible: {[h['_id'] for h in shown]}")
        self.checked.add("I4")

    def i4_no_hidden_supplier_in_results(self, hidden_since: Mapping[int, float]) -> None:
        """No search reply sent after a supplier was hidden lists it (ids → monotonic time)."""
        for reply in self.api.replies:
            if reply.status != 200 or (
                "/search" not in reply.path and "/matches" not in reply.path
            ):
                continue
            listed = {item["supplier"]["id"] for item in reply.json()["items"]}
            leaked = {i for i in listed if i in hidden_since and reply.started > hidden_since[i]}
            if leaked:
                _fail("I4", f"hidden suppliers {sorted(leaked)} in a result: {reply}")
        self.checked.add("I4")

    # --- I5 ------------------------------------------------------------------------------------

    def i5_clean_failures(self, replies: Iterable[Reply] | None = None) -> None:
        for reply in self.api.replies if replies is None else replies:
            problem = _unclean(reply)
            if problem:
                _fail("I5", f"{problem}: {reply}")
        self.checked.add("I5")

    # --- I6 ------------------------------------------------------------------------------------

    def i6_chain_verifies(self) -> None:
        reply = self.api.get("/api/v1/ledger/verify", self.world.auditor)
        if reply.status != 200:
            _fail("I6", f"verify answered {reply}")
        report = reply.json()
        with self.engine.connect() as conn:
            entries = conn.scalar(select(func.count()).select_from(LedgerEntry))
        if not report["ok"] or report["entries"] != entries:
            _fail("I6", f"chain report {report} over {entries} entries")
        self.checked.add("I6")

    # --- I7 ------------------------------------------------------------------------------------

    def _unfinished(self) -> dict[int, tuple[OutboxStatus, int, str | None, OutboxTopic]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    OutboxEvent.id,
                    OutboxEvent.status,
                    OutboxEvent.attempts,
                    OutboxEvent.last_error,
                    OutboxEvent.topic,
                ).where(OutboxEvent.status != OutboxStatus.DONE)
            )
            return {row.id: (row.status, row.attempts, row.last_error, row.topic) for row in rows}

    def admin_outbox(self) -> dict[int, dict[str, Any]]:
        listed: dict[int, dict[str, Any]] = {}
        page = 1
        while True:
            reply = self.api.get(f"/api/v1/admin/outbox?per_page=100&page={page}", self.world.admin)
            if reply.status != 200:
                _fail("I7", f"the admin's outbox list answered {reply}")
            body = reply.json()
            listed.update({item["id"]: item for item in body["items"]})
            if page >= body["meta"]["pages"]:
                return listed
            page += 1

    def i7_failures_listed(self) -> None:
        # The list is paged by offset while jobs may still finish rows (events, email): a row
        # finished on an earlier page shifts a later one onto a page already read. A row missed
        # that way is listed on the next pass; one never listed in five passes is a real miss.
        missed: set[int] | None = None
        for _attempt in range(5):
            before = self._unfinished()
            listed = self.admin_outbox()
            after = self._unfinished()
            unlisted = (before.keys() & after.keys()) - listed.keys()
            missed = unlisted if missed is None else missed & unlisted
            if not missed:
                break
        if missed:
            shown = {event_id: after.get(event_id) for event_id in sorted(missed)}
            _fail("I7", f"outbox rows {shown} are not done and not listed for the admin")
        for event_id, item in listed.items():
            failed = item["status"] == OutboxStatus.DEAD.value or item["attempts"] > 0
            if failed and not item["last_error"]:
                _fail("I7", f"failed outbox row {event_id} is listed without its error: {item}")
        self.checked.add("I7")

    def failing_rows_listed(self, topic: OutboxTopic) -> list[dict[str, Any]]:
        """The admin's view of rows of ``topic`` that failed at least once and are not done."""
        return [
            item
            for item in self.admin_outbox().values()
            if item["topic"] == topic.value and item["attempts"] > 0 and item["last_error"]
        ]

    # --- I8, I9 -------------------------------------------------------------------------------

    def i8_order_independent_money(self) -> None:
        """Each (OEM, year)'s entries sum to the rule recomputed from the counted purchases."""
        from market.ledger.policy import PolicyTerms, policy_for_year
        from market.ledger.rules import baseline_of, decide_near_shore, position_of
        from market.models import DeclaredBaseline, InvoiceReview, SubsidyPolicy

        e, p = LedgerEntry, Purchase
        with self.engine.connect() as conn:
            policies = [
                PolicyTerms(
                    version=r.version,
                    effective_from=r.effective_from,
                    effective_until=r.effective_until,
                    province_prefix=r.province_prefix,
                    max_distance_km=Decimal(r.max_distance_km).quantize(Decimal("0.001")),
                    rate=Decimal(r.rate),
                    annual_cap=_money(r.annual_cap),
                )
                for r in conn.execute(select(SubsidyPolicy))
            ]
            counted = conn.execute(
                select(p).where(
                    p.status == PurchaseStatus.CONFIRMED,
                    p.review.is_(None) | (p.review == InvoiceReview.RELEASED),
                )
            ).all()
            sums = {
                (r.oem_org_id, r.year): (_money(r.inc), _money(r.sub))
                for r in conn.execute(
                    select(
                        e.oem_org_id,
                        e.year,
                        func.sum(e.increment).label("inc"),
                        func.sum(e.subsidy).label("sub"),
                    ).group_by(e.oem_org_id, e.year)
                )
            }
            declared = {
                (r.oem_org_id, r.year): r.amount for r in conn.execute(select(DeclaredBaseline))
            }
            verified = {
                r.id: r.verified_at
                for r in conn.execute(select(Organization.id, Organization.verified_at))
            }
        totals: dict[tuple[int, int], Decimal] = {}
        for row in counted:
            terms, covered = policy_for_year(policies, row.purchased_on.year)
            verdict = decide_near_shore(
                terms,
                row.site_city_code,
                (row.site_lat, row.site_lon),
                (row.plant_lat, row.plant_lon),
                covered=covered,
            )
            key = (row.oem_org_id, row.purchased_on.year)
            totals[key] = totals.get(key, _money(0)) + (row.amount if verdict.near_shore else 0)
        from market.clock import business_date

        wrong = {}
        for (oem, year), (inc, sub) in sums.items():
            terms, covered = policy_for_year(policies, year)
            verified_on = business_date(verified[oem]) if verified.get(oem) else None
            position = position_of(
                totals.get((oem, year), _money(0)),
                baseline_of(
                    year,
                    declared_prior=declared.get((oem, year - 1)),
                    platform_prior=totals.get((oem, year - 1), _money(0)),
                    verified_on=verified_on,
                ),
                terms,
                covered=covered,
            )
            if (inc, sub) != (position.increment, position.subsidy):
                wrong[(oem, year)] = ((inc, sub), (position.increment, position.subsidy))
        if wrong:
            _fail("I8", f"(oem, year): (entries' sums, recomputed) {wrong}")
        self.checked.add("I8")

    def i9_no_one_sided_money(self) -> None:
        e, p = LedgerEntry, Purchase
        with self.engine.connect() as conn:
            one_sided = conn.scalars(
                select(e.seq)
                .join(p, p.id == e.purchase_id)
                .where(
                    e.kind == EntryKind.RECORD,
                    p.confirmation.is_(None) | (e.supplier_city_code != p.site_city_code),
                )
            ).all()
        if one_sided:
            _fail("I9", f"record entries without confirmation or frozen facts: {one_sided[:5]}")
        self.checked.add("I9")

    # --- together -----------------------------------------------------------------------------

    def ledger_invariants(self, acknowledged: Collection[int]) -> None:
        """I1, I2, I3, I5, I6, I7, I8, I9: what every ledger-touching scenario ends with."""
        self.i1_nothing_lost(acknowledged)
        self.i2_no_phantom()
        self.i8_order_independent_money()
        self.i9_no_one_sided_money()
        self.i3_unique_constraints()
        self.i6_chain_verifies()
        self.i7_failures_listed()
        self.i5_clean_failures()


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"))


def _unclean(reply: Reply) -> str | None:
    if reply.status is None:
        return "no HTTP answer"
    body = reply.body
    if TRACE.search(body):
        return "a stack trace in the body"
    if SQL.search(body):
        return "SQL in the body"
    if not reply.path.startswith(DIAGNOSTIC_PATHS):
        if DRIVER.search(body):
            return "database or Redis error text in the body"
        if SEARCH_ENGINE.search(body):
            return "Elasticsearch error text in the body"
    if reply.status < 400:
        return None
    if reply.status >= 500 and reply.status not in (503, 504):
        return f"a {reply.status}"
    try:
        error = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        return "an error without the error envelope"
    if error.get("status") != reply.status or not error.get("message"):
        return "an error envelope without status or message"
    if reply.status == 422 and not error.get("fields"):
        return "a 422 without field messages"
    return None
