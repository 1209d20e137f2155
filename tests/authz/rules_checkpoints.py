"""Authorization rows for the ledger's checkpoints and proofs: the public key is open to all,
auditors and admins read, only admins issue a checkpoint on demand."""

from __future__ import annotations

from tests.authz.rules import EVERYONE, Rule

READERS = frozenset({"auditor", "admin"})

RULES = [
    Rule("GET", "/api/v1/ledger/public-key", EVERYONE),
    Rule("GET", "/api/v1/ledger/checkpoints", READERS),
    Rule("POST", "/api/v1/ledger/checkpoints", frozenset({"admin"})),
    Rule("GET", "/api/v1/ledger/checkpoints/latest", READERS),
    Rule("GET", "/api/v1/ledger/checkpoints/status", READERS),
    Rule("GET", "/api/v1/ledger/checkpoints/{checkpoint_size}", READERS),
    Rule("GET", "/api/v1/ledger/proofs/inclusion", READERS, query="seq=1&size=1"),
    Rule("GET", "/api/v1/ledger/proofs/consistency", READERS, query="old_size=1&new_size=1"),
]
