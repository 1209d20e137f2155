"""The ledger's outbox handler: purchases recorded and reversed, in batches, exactly once.

Rows of both topics are taken together in outbox order, up to 500 per transaction, under the
ledger lock (``acquire_ledger_lock``); their entries are appended and the rows marked done in
that one transaction. A crash anywhere before the commit leaves nothing behind but pending rows;
a second delivery finds the rows done, and the unique ``(purchase_id, kind)`` would refuse a
second entry anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

from market.models import EntryKind, OutboxTopic
from market.services.ledger import LedgerRequest, acquire_ledger_lock, append_entries
from workers.outbox import OutboxItem, handles_batch

ENTRY_KIND = {
    OutboxTopic.LEDGER_RECORD: EntryKind.RECORD,
    OutboxTopic.LEDGER_REVERSE: EntryKind.REVERSAL,
}
BATCH_SIZE = 500


@handles_batch(
    OutboxTopic.LEDGER_RECORD,
    OutboxTopic.LEDGER_REVERSE,
    name="ledger",
    lock=acquire_ledger_lock,
    batch_size=BATCH_SIZE,
)
def record_ledger_events(events: list[OutboxItem]) -> Mapping[int, str | None]:
    """Append the entries of these outbox rows (aggregate id = the purchase id), in order."""
    outcomes = append_entries(
        [LedgerRequest(event.aggregate_id, ENTRY_KIND[event.topic]) for event in events]
    )
    return {event.id: outcome.error for event, outcome in zip(events, outcomes, strict=True)}
