"""One pagination shape for every list endpoint: ``{"items": [...], "meta": {...}}``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from market.extensions import db


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def meta(self) -> dict[str, int]:
        return {
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": math.ceil(self.total / self.per_page) if self.per_page else 0,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "meta": self.meta}


def paginate(query: Select[Any], page: int, per_page: int, *, rows: bool = False) -> Page:
    """Run ``query`` for one page (it must already be ordered by a unique key); the items are
    its first column's objects, or whole rows with ``rows=True``."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    window = query.limit(per_page).offset((page - 1) * per_page)
    result = db.session.execute(window) if rows else db.session.scalars(window)
    items = list(result)
    return Page(items=items, page=page, per_page=per_page, total=total or 0)


def order_by(sort: str, columns: Mapping[str, Any], tiebreak: Any) -> list[Any]:
    """``name`` ascending or ``-name`` descending, then ``tiebreak`` in the same direction."""
    descending = sort.startswith("-")
    column = columns[sort.removeprefix("-")]
    keys = [column.desc() if descending else column.asc()]
    if column is not tiebreak:
        keys.append(tiebreak.desc() if descending else tiebreak.asc())
    return keys
