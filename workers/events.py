"""The ``event.dispatch`` handler: one event, every sink, one transaction.

The sinks (the inbox and email, the webhooks) register with ``market.services.events.sink`` in
the modules listed in ``workers/registry.py``. They write rows and emit their own outbox work in
this job's transaction, which also marks the outbox row done: an event reaches each sink once,
however often its job is delivered.
"""

from __future__ import annotations

from market.models import OutboxEvent, OutboxTopic
from market.services.events import event_of, sinks
from workers.outbox import handles


@handles(OutboxTopic.EVENT_DISPATCH)
def dispatch_event(row: OutboxEvent) -> None:
    event = event_of(row.id, row.aggregate_id, row.payload)
    for deliver in sinks().values():
        deliver(event)
