"""The ledger's outbox handler: purchases counted and uncounted, baselines settled, once.

Rows of the ledger topics are taken together in outbox order, up to 500 per transaction, under
the ledger lock (``acquire_ledger_lock``); their entries are appended and the rows marked done
in that one transaction. A crash anywhere before the commit leaves nothing behind but pending
rows; a second delivery finds the rows done, and syncing is a function of the purchase row
(the unique ``cause`` would refuse a second effect anyway).

A purchase counted (a ``record`` entry appended) is announced in the same transaction
(``purchase.recorded``): to the OEM with the verdict and the subsidy effect, to the supplier
with the verdict only (near-shore, reason, distance), never the OEM's baseline, totals or
subsidy, which are the OEM's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby

from sqlalchemy import select

from market.extensions import db
from market.ledger import acquire_ledger_lock, settle_year, sync_purchases
from market.models import EntryKind, LedgerEntry, OutboxTopic, Purchase
from market.services.events import EventKind, emit_event
from workers.outbox import OutboxItem, handles_batch

PURCHASE_TOPICS = frozenset({OutboxTopic.LEDGER_RECORD, OutboxTopic.LEDGER_REVERSE})
BATCH_SIZE = 500


@handles_batch(
    OutboxTopic.LEDGER_RECORD,
    OutboxTopic.LEDGER_REVERSE,
    OutboxTopic.LEDGER_REBASE,
    name="ledger",
    lock=acquire_ledger_lock,
    batch_size=BATCH_SIZE,
)
def record_ledger_events(events: list[OutboxItem]) -> Mapping[int, str | None]:
    """Sync the purchases (aggregate id = purchase id) and settle the years whose declared
    baseline changed (payload ``oem_org_id`` and ``year``: the year that baseline serves), in
    outbox order."""
    errors: dict[int, str | None] = {}
    for is_purchase, run in groupby(events, key=lambda e: e.topic in PURCHASE_TOPICS):
        group = list(run)
        if is_purchase:
            outcomes = sync_purchases([event.aggregate_id for event in group])
            errors |= {e.id: o.error for e, o in zip(group, outcomes, strict=True)}
            announce_recorded([seq for outcome in outcomes for seq in outcome.appended])
            continue
        for event in group:
            settle_year(int(event.payload["oem_org_id"]), int(event.payload["year"]))
            errors[event.id] = None
    return errors


def _money(value: object) -> str | None:
    return None if value is None else format(value, "f")


def announce_recorded(seqs: list[int]) -> None:
    """``purchase.recorded`` for each record entry among ``seqs`` (in the batch transaction)."""
    if not seqs:
        return
    rows = db.session.execute(
        select(LedgerEntry, Purchase.invoice_number)
        .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .where(LedgerEntry.seq.in_(seqs), LedgerEntry.kind == EntryKind.RECORD)
        .order_by(LedgerEntry.seq)
    ).all()
    for entry, invoice_number in rows:
        assert entry.purchase_id is not None and entry.supplier_org_id is not None
        verdict = {
            "purchase_id": entry.purchase_id,
            "invoice_number": invoice_number,
            "near_shore": entry.near_shore,
            "reason": entry.reason_code,
            "distance_km": _money(entry.distance_km),
        }
        oem_view = verdict | {
            "year": entry.year,
            "amount": _money(entry.amount),
            "increment": _money(entry.increment),
            "subsidy": _money(entry.subsidy),
        }
        for organization_id, data in (
            (entry.oem_org_id, oem_view),
            (entry.supplier_org_id, verdict),
        ):
            emit_event(
                EventKind.PURCHASE_RECORDED,
                organization_id=organization_id,
                subject_type="purchase",
                subject_id=entry.purchase_id,
                data=data,
            )
