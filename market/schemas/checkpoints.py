"""Schemas of the checkpoint API: the public key, signed checkpoints, proofs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from market.ledger.checkpoints import MAX_TREE_SIZE
from market.schemas import PageQuerySchema, StrictSchema

# Sizes and seqs beyond this are refused by the schema (a real ledger never gets near it).
_TREE_INDEX = validate.Range(min=1, max=MAX_TREE_SIZE, error="Must be between 1 and {max}.")


def HexHash() -> fields.String:
    """A SHA-256 value, lowercase hex."""
    return fields.String(metadata={"pattern": "^[0-9a-f]{64}$"})


class PublicKeySchema(Schema):
    algorithm = fields.String(metadata={"example": "Ed25519"})
    key_id = fields.String(metadata={"description": "First 16 hex digits of SHA-256(raw key)"})
    public_key = fields.String(metadata={"description": "The raw 32-byte key, base64"})
    pem = fields.String(metadata={"description": "SubjectPublicKeyInfo PEM"})
    origin = fields.String()


class CheckpointSchema(Schema):
    origin = fields.String()
    size = fields.Integer()
    root = HexHash()
    time = fields.String(metadata={"description": "UTC, ISO 8601 with microseconds"})
    algorithm = fields.String()
    key_id = fields.String()
    signature = fields.String(metadata={"description": "Ed25519 signature, base64"})


class CheckpointPageQuerySchema(PageQuerySchema):
    pass


class CheckpointFailureSchema(Schema):
    attempted_at = fields.DateTime()
    ledger_size = fields.Integer()
    reason = fields.String()


class CheckpointStatusSchema(Schema):
    ledger_size = fields.Integer()
    tree_size = fields.Integer()
    uncovered_entries = fields.Integer()
    latest = fields.Nested(CheckpointSchema, allow_none=True)
    failures = fields.List(fields.Nested(CheckpointFailureSchema))


class InclusionQuerySchema(StrictSchema):
    seq = fields.Integer(
        required=True,
        validate=_TREE_INDEX,
        metadata={"description": "The entry's sequence number (its leaf is seq - 1 in the tree)."},
    )
    size = fields.Integer(
        required=True,
        validate=_TREE_INDEX,
        metadata={"description": "The tree size of the checkpoint to prove against; at least seq."},
    )


class ConsistencyQuerySchema(StrictSchema):
    old_size = fields.Integer(
        required=True,
        validate=_TREE_INDEX,
        metadata={"description": "The size of the older checkpoint."},
    )
    new_size = fields.Integer(
        required=True,
        validate=_TREE_INDEX,
        metadata={"description": "The size of the newer checkpoint; at least old_size."},
    )


class InclusionProofSchema(Schema):
    seq = fields.Integer()
    leaf_index = fields.Integer()
    size = fields.Integer()
    leaf_hash = HexHash()
    root = HexHash()
    proof = fields.List(HexHash())
    checkpoint = fields.Nested(CheckpointSchema, allow_none=True)


class ConsistencyProofSchema(Schema):
    old_size = fields.Integer()
    new_size = fields.Integer()
    old_root = HexHash()
    new_root = HexHash()
    proof = fields.List(HexHash())
    old_checkpoint = fields.Nested(CheckpointSchema, allow_none=True)
    new_checkpoint = fields.Nested(CheckpointSchema, allow_none=True)
