"""Signed checkpoints of the ledger and their proofs: auditors and admins read, admins may
issue one now; the public key is open to everyone (it is published anyway)."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.pagination import page_of
from market.errors import NotFound, ServiceUnavailable, ValidationFailed
from market.ledger import checkpoints
from market.models import Role
from market.permissions import allow, public
from market.schemas.checkpoints import (
    CheckpointPageQuerySchema,
    CheckpointSchema,
    CheckpointStatusSchema,
    ConsistencyProofSchema,
    ConsistencyQuerySchema,
    InclusionProofSchema,
    InclusionQuerySchema,
    PublicKeySchema,
)

blp = Blueprint(
    "checkpoints",
    __name__,
    description="Signed Merkle checkpoints of the ledger, inclusion and consistency proofs",
)

READERS = (Role.AUDITOR, Role.ADMIN)


def _key_unavailable(exc: checkpoints.CheckpointError) -> ServiceUnavailable:
    return ServiceUnavailable(f"The ledger signing key is unavailable: {exc}")


@blp.route("/ledger/public-key")
@public
@blp.response(200, PublicKeySchema)
def ledger_public_key() -> dict[str, str]:
    """The Ed25519 public key that signs ledger checkpoints.

    Keep a copy: with it an auditor checks checkpoints, inclusion proofs and claim manifests
    offline with ``strongchain-verify``.
    """
    try:
        return checkpoints.public_key_document()
    except checkpoints.SigningKeyUnavailable as exc:
        raise _key_unavailable(exc) from exc


@blp.route("/ledger/checkpoints")
@allow(*READERS)
@blp.arguments(CheckpointPageQuerySchema, location="query", unknown=RAISE)
@blp.response(200, page_of(CheckpointSchema))
def checkpoint_list(args: dict[str, Any]) -> dict[str, Any]:
    """Signed checkpoints, newest first.

    Each checkpoint signs the size, the RFC 9162 Merkle root and the time of a prefix of the
    ledger.
    """
    return checkpoints.checkpoint_page(args["page"], args["per_page"]).as_dict()


@blp.route("/ledger/checkpoints", methods=["POST"])
@allow(Role.ADMIN)
@blp.response(201, CheckpointSchema)
def checkpoint_issue() -> dict[str, Any]:
    """Issue a checkpoint of the ledger now (the latest one if the ledger has not grown).

    Checkpoints are also issued on a schedule and at every claim submission.
    """
    try:
        return checkpoints.checkpoint_document(checkpoints.issue_checkpoint())
    except checkpoints.SigningKeyUnavailable as exc:
        raise _key_unavailable(exc) from exc
    except checkpoints.CheckpointError as exc:
        raise ServiceUnavailable(f"No checkpoint was issued: {exc}") from exc


@blp.route("/ledger/checkpoints/latest")
@allow(*READERS)
@blp.response(200, CheckpointSchema)
def checkpoint_latest() -> dict[str, Any]:
    """The newest signed checkpoint.

    The most recent signed tree head: size, root, time and signature.
    """
    latest = checkpoints.latest_checkpoint()
    if latest is None:
        raise NotFound("No checkpoint has been issued yet.")
    return checkpoints.checkpoint_document(latest)


@blp.route("/ledger/checkpoints/status")
@allow(*READERS)
@blp.response(200, CheckpointStatusSchema)
def checkpoint_status() -> dict[str, Any]:
    """How far checkpoints cover the ledger, and issuance failures since the latest one.

    Shows the latest checkpoint's size against the ledger's, and signing failures (e.g. the key
    unavailable) since; entries keep being recorded meanwhile.
    """
    status = checkpoints.checkpoint_status()
    return {
        "ledger_size": status.ledger_size,
        "tree_size": status.tree_size,
        "uncovered_entries": status.uncovered_entries,
        "latest": checkpoints.checkpoint_document(status.latest) if status.latest else None,
        "failures": status.failures,
    }


@blp.route("/ledger/checkpoints/<int:size>")
@allow(*READERS)
@blp.response(200, CheckpointSchema)
def checkpoint_get(size: int) -> dict[str, Any]:
    """The signed checkpoint of the first ``size`` entries.

    404 when no checkpoint of exactly that size was issued.
    """
    checkpoint = checkpoints.checkpoint_at(size) if size <= checkpoints.MAX_TREE_SIZE else None
    if checkpoint is None:
        raise NotFound(f"No checkpoint of size {size}.")
    return checkpoints.checkpoint_document(checkpoint)


@blp.route("/ledger/proofs/inclusion")
@allow(*READERS)
@blp.arguments(InclusionQuerySchema, location="query", unknown=RAISE)
@blp.response(200, InclusionProofSchema)
def inclusion_proof(args: dict[str, Any]) -> dict[str, Any]:
    """The audit path of entry ``seq`` in the tree of the first ``size`` entries.

    With the leaf hash of the entry, the path verifies against the root of the checkpoint of
    ``size`` (RFC 9162, section 2.1.3). ``seq`` must be at most ``size``.
    """
    try:
        return checkpoints.inclusion_proof(args["seq"], args["size"])
    except checkpoints.ProofRequestError as exc:
        raise ValidationFailed(fields={exc.field: [str(exc)]}) from exc


@blp.route("/ledger/proofs/consistency")
@allow(*READERS)
@blp.arguments(ConsistencyQuerySchema, location="query", unknown=RAISE)
@blp.response(200, ConsistencyProofSchema)
def consistency_proof(args: dict[str, Any]) -> dict[str, Any]:
    """The proof that the first ``old_size`` entries are a prefix of the first ``new_size``.

    With the roots of both checkpoints, the proof shows the newer ledger only appended to the older
    one (RFC 9162, section 2.1.4): a rewrite of any old entry fails it.
    """
    try:
        return checkpoints.consistency_proof(args["old_size"], args["new_size"])
    except checkpoints.ProofRequestError as exc:
        raise ValidationFailed(fields={exc.field: [str(exc)]}) from exc
