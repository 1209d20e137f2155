"""The modules that register outbox handlers; imported once before a job runs."""

from __future__ import annotations

import importlib
from functools import cache

# Each module registers its topic's handler with ``workers.outbox.handles``.
HANDLER_MODULES: tuple[str, ...] = (
    "search.sync",  # search.sync: upsert a supplier's document
    "workers.ledger",  # ledger.record / ledger.reverse: append to the near-shore ledger
    "workers.events",  # event.dispatch: give an event to every sink (inbox, email, webhooks)
    "workers.notifications",  # the inbox sink; email.send: SMTP or an .eml file
)


@cache
def load_handlers() -> None:
    for name in HANDLER_MODULES:
        importlib.import_module(name)
