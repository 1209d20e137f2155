"""The Elasticsearch backend: queries, per-item bulk writes, and index administration.

Writes go through the alias ``<prefix>-suppliers`` with ``require_alias`` (a missing alias never
auto-creates an index with a dynamic mapping) and carry the organization's version with
``version_type=external``, so an older write arriving late is refused (409) instead of
overwriting a newer document. Queries that fail (down, timeout, 5xx) raise
:class:`SearchUnavailable`; after such a failure the backend answers "unavailable" at once for
``breaker_seconds`` instead of making every request wait for the timeout again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator
from datetime import UTC, date, datetime
from typing import Any

from elasticsearch import (
    ApiError,
    Elasticsearch,
    NotFoundError,
    OrjsonSerializer,
    TransportError,
    helpers,
)

from search import queries, spec
from search.backends import (
    MatchHit,
    MatchPage,
    SearchBackend,
    SearchHit,
    SearchPage,
    SearchUnavailable,
    SupplierQuery,
    sorted_buckets,
)
from search.documents import explain, load_supplier_documents, nearest_site
from search.mapping import INDEX_SETTINGS, MAPPING

log = logging.getLogger(__name__)

BULK_CHUNK = 500


class ElasticsearchBackend(SearchBackend):
    name = "elasticsearch"

    def __init__(
        self, url: str, index_prefix: str, timeout: float, breaker_seconds: float = 10.0
    ) -> None:
        self.client = Elasticsearch(
            url,
            request_timeout=timeout,
            retry_on_timeout=False,
            max_retries=0,
            # orjson for request bodies and answers: a third of the client's own time.
            serializer=OrjsonSerializer(),
        )
        self.index_prefix = index_prefix.lower()  # index names must be lower case
        self.breaker_seconds = breaker_seconds
        self._unavailable_until = 0.0
        self._alias_checked = False

    @property
    def alias(self) -> str:
        return f"{self.index_prefix}-suppliers"

    def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            health = self.client.cluster.health(timeout="2s")
        except Exception as exc:
            return {"status": "down", "kind": "elasticsearch", "error": type(exc).__name__}
        latency = round((time.perf_counter() - started) * 1000, 2)
        status = "ok" if health["status"] in {"green", "yellow"} else "degraded"
        return {
            "status": status,
            "kind": "elasticsearch",
            "cluster_status": health["status"],
            "latency_ms": latency,
        }

    # --- queries ------------------------------------------------------------------------------

    def match(self, demand: spec.DemandFact, today: date, page: int, per_page: int) -> MatchPage:
        response = self._search(
            query=queries.match_query(demand, today),
            sort=queries.match_sort(demand),
            from_=(page - 1) * per_page,
            size=per_page,
            track_total_hits=True,
        )
        hits = []
        for hit in response["hits"]["hits"]:
            document = hit["_source"]
            explained = explain(document, demand, today)
            if explained is None:  # cannot happen: the geo filter needs a site
                log.error("a match without an active site", extra={"supplier_id": hit["_id"]})
                continue
            score, distance = hit["sort"][0], hit["sort"][1]
            hits.append(
                MatchHit(
                    document=document,
                    match=explained,
                    engine_score=float(score),
                    engine_distance_km=float(distance),
                )
            )
        return MatchPage(
            hits=hits,
            total=response["hits"]["total"]["value"],
            page=page,
            per_page=per_page,
        )

    def search(self, query: SupplierQuery, today: date, page: int, per_page: int) -> SearchPage:
        response = self._search(
            query=queries.search_query(query, today),
            sort=queries.search_sort(query),
            aggs=queries.facet_aggregations(today, query.verified_only),
            from_=(page - 1) * per_page,
            size=per_page,
            track_total_hits=True,
        )
        hits = []
        for hit in response["hits"]["hits"]:
            document = hit["_source"]
            distance_km = site_id = None
            if query.lat is not None and query.lon is not None:
                found = nearest_site(document, query.lat, query.lon)
                if found is not None:
                    site_id, distance_km = found[0]["id"], found[1]
            hits.append(SearchHit(document, distance_km, site_id))
        aggs = response["aggregations"]
        standards = aggs["certification"]["valid"]["standard"]["buckets"]
        facets = {
            "city": sorted_buckets({b["key"]: b["doc_count"] for b in aggs["city"]["buckets"]}),
            "tier": sorted_buckets(
                {int(b["key"]): b["doc_count"] for b in aggs["tier"]["buckets"]}
            ),
            "certification": sorted_buckets(
                {b["key"]: b["suppliers"]["doc_count"] for b in standards}
            ),
            "specialized": sorted_buckets(
                {
                    b["key_as_string"] == "true": b["doc_count"]
                    for b in aggs["specialized"]["buckets"]
                }
            ),
        }
        return SearchPage(
            hits=hits,
            total=response["hits"]["total"]["value"],
            page=page,
            per_page=per_page,
            facets=facets,
        )

    def _search(self, **request: Any) -> Any:
        if time.monotonic() < self._unavailable_until:
            raise SearchUnavailable("Elasticsearch failed moments ago; not retrying yet")
        try:
            return self.client.search(index=self.alias, **request)
        except (TransportError, ApiError) as exc:
            status = getattr(exc, "status_code", None)
            if isinstance(exc, TransportError) or (status is not None and status >= 429):
                self._unavailable_until = time.monotonic() + self.breaker_seconds
            if isinstance(exc, ApiError) and status == 400:
                # A request we built was refused: a bug, not an outage.
                log.error("Elasticsearch refused a search", extra={"error": str(exc)[:500]})
            else:
                log.warning("Elasticsearch search failed", extra={"error": type(exc).__name__})
            raise SearchUnavailable(type(exc).__name__) from exc

    # --- writes -------------------------------------------------------------------------------

    def upsert_suppliers(self, organization_ids: Collection[int]) -> dict[int, str | None]:
        """Re-read the organizations and write their documents (external versions).

        Suspended and hidden suppliers are written too, as ``visible: false``; ids that are no
        longer suppliers are deleted from the index.
        """
        wanted = set(organization_ids)
        if not wanted:
            return {}
        self.ensure_index()
        documents = list(load_supplier_documents(wanted).values())
        gone = wanted - {doc["id"] for doc in documents}
        return self.write_documents(documents, deletions=gone)

    def write_documents(
        self,
        documents: list[dict[str, Any]],
        deletions: Collection[int] = (),
        index: str | None = None,
        refresh: bool = False,
    ) -> dict[int, str | None]:
        """Bulk-write, judging every item on its own: id → None (written) or the error.

        A 409 on an index action means the index already holds this version or a newer one
        (external versioning), which is success for a sync. A transport failure fails only the
        items of its chunk.
        """
        target = index or self.alias
        operations = [(doc["id"], _index_action(target, doc)) for doc in documents] + [
            (org_id, [{"delete": {"_index": target, "_id": str(org_id)}}]) for org_id in deletions
        ]
        results: dict[int, str | None] = {}
        for start in range(0, len(operations), BULK_CHUNK):
            chunk = operations[start : start + BULK_CHUNK]
            try:
                response = self.client.bulk(
                    operations=[line for _, lines in chunk for line in lines],
                    require_alias=index is None,
                    refresh=refresh,
                )
            except (TransportError, ApiError) as exc:
                for org_id, _ in chunk:
                    results[org_id] = type(exc).__name__
                continue
            for item in response["items"]:
                ((action, outcome),) = item.items()
                org_id = int(outcome["_id"])
                results[org_id] = _bulk_error(action, outcome)
                if outcome.get("status") == 404 and action == "index":
                    self._alias_checked = False  # the alias is gone (data lost?): check it next
        return results

    # --- index administration -----------------------------------------------------------------

    def new_index_name(self) -> str:
        return f"{self.alias}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"

    def create_index(self, name: str, *, alias: bool = False, loading: bool = False) -> None:
        """Create an index with the mapping; ``loading`` turns refreshes off for a bulk fill."""
        settings = dict(INDEX_SETTINGS)
        if loading:
            settings["refresh_interval"] = "-1"
        self.client.indices.create(
            index=name,
            settings=settings,
            mappings=MAPPING,
            aliases={self.alias: {}} if alias else None,
        )

    def finish_loading(self, name: str) -> None:
        self.client.indices.put_settings(
            index=name, settings={"refresh_interval": INDEX_SETTINGS["refresh_interval"]}
        )
        self.client.indices.refresh(index=name)

    def ensure_index(self) -> None:
        """Make sure the alias exists (an empty index behind it if there is none yet).

        The first index has a fixed name, so two workers racing here create it only once.
        ``flask search reindex`` fills it (or replaces it) from the database.
        """
        if self._alias_checked:
            return
        if not self.client.indices.exists_alias(name=self.alias):
            first = f"{self.alias}-initial"
            try:
                self.create_index(first, alias=True)
            except ApiError as exc:
                if exc.status_code != 400:  # 400: resource_already_exists
                    raise
            if not self.client.indices.exists_alias(name=self.alias):
                self.client.indices.put_alias(index=first, name=self.alias)
        self._add_new_fields()
        self._alias_checked = True

    def _add_new_fields(self) -> None:
        """Add fields that indices built before them lack (the mapping is strict, so a document
        with an unknown field would be refused, e.g. ``performance`` or a certificate's
        ``verification``): putting the whole current mapping adds what is new in place (also
        inside nested objects), leaves identical fields alone, and needs no reindex (older
        documents read as missing until their supplier is synced again)."""
        self.client.indices.put_mapping(index=self.alias, properties=MAPPING["properties"])

    def alias_targets(self) -> list[str]:
        try:
            return sorted(self.client.indices.get_alias(name=self.alias))
        except NotFoundError:
            return []

    def swap_alias(self, new_index: str) -> list[str]:
        """Point the alias at ``new_index`` in one atomic step; returns the indices it left."""
        old = [name for name in self.alias_targets() if name != new_index]
        actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": self.alias}}]
        actions += [{"remove": {"index": name, "alias": self.alias}} for name in old]
        # A concrete index squatting on the alias name (auto-created by some stray write)
        # is removed in the same step.
        if not old and self.client.indices.exists(index=self.alias):
            actions.append({"remove_index": {"index": self.alias}})
        self.client.indices.update_aliases(actions=actions)
        self._alias_checked = True
        return old

    def delete_index(self, name: str) -> None:
        self.client.indices.delete(index=name, ignore_unavailable=True)

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.alias)

    def count(self) -> int:
        return int(self.client.count(index=self.alias)["count"])

    def indexed_versions(self) -> Iterator[tuple[int, int]]:
        """(organization id, version) of every document, streamed (none without the alias)."""
        if not self.client.indices.exists_alias(name=self.alias):
            return
        for hit in helpers.scan(
            self.client,
            index=self.alias,
            query={"query": {"match_all": {}}, "_source": ["version"]},
            size=2000,
        ):
            yield int(hit["_id"]), int(hit["_source"]["version"])


def _index_action(target: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The bulk lines indexing ``doc`` with its row version (external versioning)."""
    meta = {"_index": target, "_id": str(doc["id"]), "version": doc["version"]}
    return [{"index": meta | {"version_type": "external"}}, doc]


def _bulk_error(action: str, outcome: dict[str, Any]) -> str | None:
    """None when a bulk item succeeded, else its status and error type.

    A 409 on an index action means the index already holds this version or a newer one
    (external versioning), which is success for a sync; a 404 on a delete, nothing to delete.
    """
    status = outcome.get("status", 500)
    if (
        status < 300
        or (action == "index" and status == 409)
        or (action == "delete" and status == 404)
    ):
        return None
    error = outcome.get("error") or {}
    return f"{status} {error.get('type', 'error')}"
