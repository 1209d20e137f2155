"""Rebuild the supplier index from the database with no downtime.

A new index ``<prefix>-suppliers-<timestamp>`` is filled while searches keep using the old one
behind the alias; then the alias moves in one atomic step and the old index is deleted. Writes
that the sync made to the old index while the new one was filling are caught up afterwards by
re-reading the suppliers changed since the rebuild started (external versions make that safe).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from elasticsearch import ApiError, TransportError
from sqlalchemy import func, select, update

from market.extensions import db
from market.models import Organization, OrgKind
from search.documents import serialised_documents_after
from search.elastic import ElasticsearchBackend

log = logging.getLogger(__name__)

# Transactions that committed just after the rebuild started may carry an earlier updated_at.
CATCH_UP_MARGIN = timedelta(minutes=2)
# Bulk requests in flight while the next body is being built.
SENDERS = 2
SEND_RETRIES = 3


class ReindexFailed(Exception):
    """Some documents could not be written; the alias was left where it was."""


@dataclass
class ReindexResult:
    index: str
    indexed: int = 0
    caught_up: int = 0
    removed_indices: list[str] = field(default_factory=list)


def supplier_count() -> int:
    return (
        db.session.scalar(
            select(func.count(Organization.id)).where(Organization.kind == OrgKind.SUPPLIER)
        )
        or 0
    )


def _bodies(index: str, batch_size: int, written: dict[int, int]) -> Iterator[tuple[bytes, int]]:
    """Bulk bodies of ``batch_size`` documents (NDJSON) and their counts, every supplier in id
    order (keyset, not OFFSET)."""
    last_id = 0
    while documents := serialised_documents_after(last_id, batch_size):
        lines: list[bytes] = []
        for org_id, version, document in documents:
            written[org_id] = version
            action = {
                "_index": index,
                "_id": str(org_id),
                "version": version,
                "version_type": "external",
            }
            lines.append(orjson.dumps({"index": action}))
            lines.append(document)
        lines.append(b"")
        yield b"\n".join(lines), len(documents)
        last_id = documents[-1][0]  # in id order


def _send(backend: ElasticsearchBackend, body: bytes) -> list[dict[str, Any]]:
    """Post one bulk body; the failed items. A refused request (429, e.g. a full write queue)
    or a dropped connection is retried with back-off; the index is fresh, so resending is
    harmless (same ids, same external versions)."""
    for attempt in range(1 + SEND_RETRIES):
        try:
            answer = backend.client.bulk(operations=cast(Any, body))  # bytes go out as they are
        except (ApiError, TransportError) as exc:
            status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
            if attempt == SEND_RETRIES or (isinstance(exc, ApiError) and status != 429):
                raise
            time.sleep(2**attempt)
            continue
        if not answer["errors"]:
            return []
        failed = [next(iter(item.values())) for item in answer["items"]]
        failed = [item for item in failed if item.get("status", 500) >= 300]
        if attempt < SEND_RETRIES and all(item.get("status") == 429 for item in failed):
            time.sleep(2**attempt)  # the whole body again: items that were written answer 409
            continue
        return [item for item in failed if item.get("status") != 409]
    raise AssertionError("unreachable")


def reindex(
    backend: ElasticsearchBackend,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ReindexResult:
    """Build a fresh index from the database, swap the alias to it, delete the old one."""
    started = datetime.now(UTC)
    index = backend.new_index_name()
    backend.create_index(index, loading=True)
    result = ReindexResult(index=index)
    written: dict[int, int] = {}  # organization id → the version that went into the new index
    try:
        # Reading and serialising (this thread) overlaps with Elasticsearch indexing the
        # previous bodies (the sender threads wait on the network): together, not one after
        # the other. At most SENDERS + 1 bodies are held in memory.
        failures: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="reindex") as pool:
            in_flight: deque[tuple[Future[list[dict[str, Any]]], int]] = deque()
            for body, count in _bodies(index, batch_size, written):
                in_flight.append((pool.submit(_send, backend, body), count))
                while len(in_flight) > SENDERS:
                    result.indexed += _collect(*in_flight.popleft(), failures, progress)
            while in_flight:
                result.indexed += _collect(*in_flight.popleft(), failures, progress)
        if failures:
            raise ReindexFailed(f"{len(failures)} documents failed, e.g. {failures[0]}")
        backend.finish_loading(index)
        result.removed_indices = backend.swap_alias(index)
    except BaseException:
        backend.delete_index(index)
        raise
    result.caught_up = _catch_up(backend, started - CATCH_UP_MARGIN, written)
    for old in result.removed_indices:
        backend.delete_index(old)
    log.info(
        "search index rebuilt",
        extra={"index": index, "indexed": result.indexed, "caught_up": result.caught_up},
    )
    return result


def _collect(
    sent: Future[list[dict[str, Any]]],
    count: int,
    failures: list[dict[str, Any]],
    progress: Callable[[int], None] | None,
) -> int:
    failed = sent.result()
    failures.extend(failed)
    if progress is not None:
        progress(count)
    return count - len(failed)


def _catch_up(backend: ElasticsearchBackend, since: datetime, written: dict[int, int]) -> int:
    """Rewrite the suppliers that changed while the index was filling.

    Their sync may have gone to the old index; any supplier updated since the rebuild started
    whose version is not the one written into the new index is written again.
    """
    changed = [
        org_id
        for org_id, version in db.session.execute(
            select(Organization.id, Organization.version).where(
                Organization.kind == OrgKind.SUPPLIER, Organization.updated_at >= since
            )
        )
        if written.get(org_id) != version
    ]
    if not changed:
        return 0
    errors = {k: v for k, v in backend.upsert_suppliers(changed).items() if v}
    if errors:
        # Not fatal: their outbox rows (or the next reconcile) will write them.
        log.warning("catch-up after reindex left some suppliers", extra={"failed": len(errors)})
    return len(changed) - len(errors)


@dataclass
class RetokenizeResult:
    organizations: int = 0
    demands: int = 0


def retokenize(batch_size: int = 1000) -> RetokenizeResult:
    """Recompute every stored token set (search.text) and commit those that changed.

    Needed after the segmenter's dictionary or the stemming rules change (synonyms are expanded
    at query time and need nothing). Elasticsearch holds copies: rebuild it afterwards.
    """
    from market.models import Demand
    from market.models.search_tokens import (
        DEMAND_TEXT_FIELDS,
        ORGANIZATION_NAME_FIELDS,
        ORGANIZATION_TEXT_FIELDS,
        tokens_of,
    )

    result = RetokenizeResult()
    tables: list[tuple[Any, dict[str, tuple[str, ...]]]] = [
        (
            Organization,
            {"search_names": ORGANIZATION_NAME_FIELDS, "search_text": ORGANIZATION_TEXT_FIELDS},
        ),
        (Demand, {"search_text": DEMAND_TEXT_FIELDS}),
    ]
    for model, columns in tables:
        sources = sorted({name for fields in columns.values() for name in fields})
        selected = [
            model.id,
            *(getattr(model, c) for c in columns),
            *(getattr(model, s) for s in sources),
        ]
        last_id = 0
        while True:
            rows = db.session.execute(
                select(*selected).where(model.id > last_id).order_by(model.id).limit(batch_size)
            ).all()
            if not rows:
                break
            last_id = rows[-1].id
            changes = []
            for row in rows:
                values = row._mapping
                fresh = {
                    column: tokens_of(*(values[name] for name in fields))
                    for column, fields in columns.items()
                }
                if any(values[column] != token_set for column, token_set in fresh.items()):
                    changes.append({"id": row.id, **fresh})
            if changes:
                # A bulk UPDATE by primary key: the token columns only, no version bump.
                db.session.execute(update(model), changes)
            db.session.commit()
            if model is Organization:
                result.organizations += len(changes)
            else:
                result.demands += len(changes)
    return result
