"""The Elasticsearch index of suppliers: settings and an explicit, strict mapping.

The server may be the bare integration-test distribution (no analysis-common, no ICU or smartcn),
so text uses the ``standard`` analyzer: it splits Chinese into single characters and English into
lower-cased words, which is what the free-text search expects.
"""

from __future__ import annotations

from typing import Any

# One shard is plenty at the programme's scale (thousands of suppliers); a replica when a
# second node exists, none on a single node (which would otherwise stay yellow).
INDEX_SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "auto_expand_replicas": "0-1",
    "refresh_interval": "1s",
}

_TEXT = {"type": "text", "analyzer": "standard"}

MAPPING: dict[str, Any] = {
    # Any field the document builder does not know about is a bug, not a new field.
    "dynamic": "strict",
    "properties": {
        "id": {"type": "long"},
        "version": {"type": "long"},
        "status": {"type": "keyword"},
        "listed": {"type": "boolean"},
        # active, listed and a supplier: every query filters on this.
        "visible": {"type": "boolean"},
        "legal_name": _TEXT,
        "english_name": _TEXT,
        "description": _TEXT,
        "city_code": {"type": "keyword"},
        "tier": {"type": "integer"},
        "specialized": {"type": "boolean"},
        # Every ancestor path of every capability: one term filter matches a whole subtree.
        "categories": {"type": "keyword"},
        # The capabilities themselves, for display.
        "capabilities": {"type": "keyword", "index": False},
        # Active sites only, in the same order as site_info.
        "sites": {"type": "geo_point"},
        # Site id, name, city and exact coordinates for the explanation; not searchable.
        "site_info": {"type": "object", "enabled": False},
        "certifications": {
            "type": "nested",
            "properties": {
                "id": {"type": "long"},
                "standard": {"type": "keyword"},
                "status": {"type": "keyword"},
                "valid_from": {"type": "date", "format": "strict_date"},
                # No expiry is stored as the far future, so one range filter stays correct.
                "valid_until": {"type": "date", "format": "strict_date"},
            },
        },
    },
}
