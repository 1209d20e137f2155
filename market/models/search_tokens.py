"""Keeping the precomputed search tokens of organizations and demands in step with their text.

The token columns (see :mod:`search.text`) are filled by a column default on INSERT — which also
runs for bulk ``insert(Model)`` statements, reading the row's other values — and recomputed by a
``before_update`` hook when an ORM flush changes the text. A bulk ``update()`` of the text columns
would bypass the hook: ``flask search retokenize`` repairs that (none exists in the code).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine.default import DefaultExecutionContext

from search.text import index_tokens  # pure text processing: it imports no model

ORGANIZATION_NAME_FIELDS = ("legal_name", "english_name")
ORGANIZATION_TEXT_FIELDS = ("description",)
DEMAND_TEXT_FIELDS = ("title", "description")


def tokens_of(*texts: str | None) -> str:
    return index_tokens(*texts)


def _default(fields: tuple[str, ...]) -> Any:
    def compute(context: DefaultExecutionContext) -> str:
        values = context.get_current_parameters()
        return tokens_of(*(values.get(name) for name in fields))

    return compute


organization_name_tokens = _default(ORGANIZATION_NAME_FIELDS)
organization_text_tokens = _default(ORGANIZATION_TEXT_FIELDS)
demand_text_tokens = _default(DEMAND_TEXT_FIELDS)


def _changed(target: Any, fields: tuple[str, ...]) -> bool:
    state = inspect(target)
    return any(state.attrs[name].history.has_changes() for name in fields)


def register(organization: type, demand: type) -> None:
    """Hook the ORM on the Organization and Demand classes (``market.models`` calls this once,
    when it has imported them)."""

    @event.listens_for(organization, "before_update")
    def _organization_tokens(_mapper: Any, _connection: Any, target: Any) -> None:
        if _changed(target, ORGANIZATION_NAME_FIELDS):
            target.search_names = tokens_of(target.legal_name, target.english_name)
        if _changed(target, ORGANIZATION_TEXT_FIELDS):
            target.search_text = tokens_of(target.description)

    @event.listens_for(demand, "before_update")
    def _demand_tokens(_mapper: Any, _connection: Any, target: Any) -> None:
        if _changed(target, DEMAND_TEXT_FIELDS):
            target.search_text = tokens_of(target.title, target.description)
