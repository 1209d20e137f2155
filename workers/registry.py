"""Every module that registers outbox handlers, imported here explicitly so the dependency is
visible; ``workers.outbox`` (the bottom layer) never imports them. ``create_app`` (the
composition root) calls :func:`load_handlers` at start-up, the way a Pyramid app's
``includeme`` wires its tasks."""

from __future__ import annotations

from types import ModuleType

from search import sync as search_sync
from workers import events, ledger, notifications, webhooks

# Each module registers its topic's handlers with ``workers.outbox.handles`` when imported.
HANDLER_MODULES: tuple[ModuleType, ...] = (
    search_sync,  # search.sync: upsert a supplier's document
    ledger,  # ledger.record / ledger.reverse / ledger.rebase: append to the near-shore ledger
    events,  # event.dispatch: give an event to every sink (inbox, email, webhooks)
    webhooks,  # webhook.deliver, and the webhooks event sink
    notifications,  # the inbox sink; email.send: SMTP or an .eml file
)


def load_handlers() -> tuple[ModuleType, ...]:
    """The handler modules (importing this module registered them)."""
    return HANDLER_MODULES
