"""The ledger's outbox handler: purchases counted and uncounted, baselines settled, once.

Rows of the ledger topics are taken together in outbox order, up to 500 per transaction, under
the ledger lock (``acquire_ledger_lock``); their entries are appended and the rows marked done
in that one transaction. A crash anywhere before the commit leaves nothing behind but pending
rows; a second delivery finds the rows done, and syncing is a function of the purchase row
(the unique ``cause`` would refuse a second effect anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby

from market.ledger import acquire_ledger_lock, settle_year, sync_purchases
from market.models import OutboxTopic
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
            continue
        for event in group:
            settle_year(int(event.payload["oem_org_id"]), int(event.payload["year"]))
            errors[event.id] = None
    return errors
