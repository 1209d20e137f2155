"""The Elasticsearch index of suppliers: settings and an explicit, strict mapping.

Text is analysed in Python (:mod:`search.text`: jieba segmentation, stemming), once, when it is
written; the index receives the token sets and only splits them on whitespace. That keeps the
two backends in agreement, and needs nothing beyond core analysis components — the server may be
the bare integration-test distribution (no analysis-common, no ICU or smartcn, no painless).
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

# The texts themselves are kept for display and highlighting, not searched.
_STORED_TEXT = {"type": "text", "index": False}
# A token set (" tok1 tok2 "), already segmented, stemmed and lower-cased in Python: the
# pre-built ``whitespace`` analyzer (core) only splits it. A custom analyzer cannot be used: the
# ``whitespace`` *tokenizer* lives in the analysis-common module, absent from the test server.
# Matching is by whole tokens and scoring constant, so no positions or norms.
_TOKENS = {
    "type": "text",
    "analyzer": "whitespace",
    "index_options": "docs",
    "norms": False,
}

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
        "legal_name": _STORED_TEXT,
        "english_name": _STORED_TEXT,
        "description": _STORED_TEXT,
        "name_tokens": _TOKENS,
        "text_tokens": _TOKENS,
        "city_code": {"type": "keyword"},
        "tier": {"type": "integer"},
        "specialized": {"type": "boolean"},
        # The delivery performance score (0.5..1.0, absent without deliveries): read by
        # field_value_factor when a demand ranks by performance. A double, so the value the
        # engine multiplies by is the spec's.
        "performance": {"type": "double"},
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
                # The admin review: pending | verified | rejected (only verified ones match).
                "verification": {"type": "keyword"},
                "valid_from": {"type": "date", "format": "strict_date"},
                # No expiry is stored as the far future, so one range filter stays correct.
                "valid_until": {"type": "date", "format": "strict_date"},
            },
        },
    },
}
