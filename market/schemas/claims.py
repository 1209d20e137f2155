"""Schemas of the claims API: filing, review, evidence, decisions, and how a claim reads."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market.models import ClaimKind, ClaimState, EvidenceKind, LineDecision
from market.schemas import MAX_PAGE_SIZE, PageQuerySchema, StrictSchema
from market.schemas.ledger import SignedMoney
from market.schemas.marketplace import Id, PlainText, sort_field

MAX_NAMED_PURCHASES = 100
MAX_DECISIONS = 500


def _described(text: str) -> dict[str, Any]:
    return {"metadata": {"description": text}}


def Reason(*, required: bool = False, text: str = "Why (kept with the transition).") -> Any:
    return PlainText(max_length=500, multiline=True, required=required, **_described(text))


class ClaimQuerySchema(PageQuerySchema):
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=100_000),
        **_described("The page, from 1."),
    )
    per_page = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        **_described(f"Claims per page (1 to {MAX_PAGE_SIZE}, default 20)."),
    )
    year = fields.Integer(
        validate=validate.Range(min=2000, max=2100), **_described("The claimed year.")
    )
    oem = Id(strict=False, **_described("The claiming OEM's organization id."))
    state = fields.String(
        validate=validate.OneOf([s.value for s in ClaimState]), **_described("A claim state.")
    )
    kind = fields.String(
        validate=validate.OneOf([k.value for k in ClaimKind]),
        **_described("primary or supplementary."),
    )
    sort = sort_field("id", "year", "state", default="-id")


class ClaimCreateSchema(StrictSchema):
    year = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=2000, max=2100),
        **_described("The year claimed for; it must have ended (Asia/Shanghai)."),
    )
    kind = fields.String(
        load_default=ClaimKind.PRIMARY.value,
        validate=validate.OneOf([k.value for k in ClaimKind]),
        **_described(
            "primary (the year's first claim) or supplementary (the entries appended after "
            "the year's latest decided claim, which becomes its parent)."
        ),
    )
    note = Reason(text="A note kept with the claim's first transition.")


class ReasonSchema(StrictSchema):
    reason = Reason()


class EvidenceRequestCreateSchema(StrictSchema):
    purchase_ids = fields.List(
        Id(),
        required=True,
        validate=validate.Length(min=1, max=MAX_NAMED_PURCHASES),
        **_described("Purchases of the claim whose documents are needed."),
    )
    kinds = fields.List(
        fields.String(validate=validate.OneOf([k.value for k in EvidenceKind])),
        required=True,
        validate=validate.Length(min=1, max=len(EvidenceKind)),
        **_described("Which documents: invoice, purchase_order, delivery_note."),
    )
    note = PlainText(
        max_length=2000, multiline=True, **_described("What the OEM should hand in, and why.")
    )


class LineDecisionSchema(StrictSchema):
    purchase_id = Id(required=True, **_described("A purchase of the claim."))
    decision = fields.String(
        required=True,
        validate=validate.OneOf([LineDecision.APPROVED.value, LineDecision.REJECTED.value]),
        **_described("approved or rejected."),
    )
    reason = Reason(text="Why; required for a rejection.")

    @validates_schema
    def _rejection_has_a_reason(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("decision") == LineDecision.REJECTED.value and not data.get("reason"):
            raise ValidationError("A rejection needs a reason.", field_name="reason")


class LineDecisionsSchema(StrictSchema):
    decisions = fields.List(
        fields.Nested(LineDecisionSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_DECISIONS),
        **_described("One decision per purchase; all are checked before any is applied."),
    )


class ClaimDecideSchema(StrictSchema):
    decision = fields.String(
        required=True,
        validate=validate.OneOf(["approve", "reject"]),
        **_described(
            "approve: every purchase must be decided; the claim becomes approved, or "
            "partially_approved if some were rejected. reject: the whole claim."
        ),
    )
    reason = Reason(required=True, text="Why (kept with the decision).")


class EvidenceFormSchema(StrictSchema):
    purchase_id = Id(strict=False, required=True, **_described("A purchase of the claim."))
    kind = fields.String(
        required=True,
        validate=validate.OneOf([k.value for k in EvidenceKind]),
        **_described("invoice, purchase_order or delivery_note."),
    )


class EvidenceFileSchema(StrictSchema):
    file = Upload(
        required=True,
        **_described(
            "The document: PDF, JPEG or PNG, at most 10 MB; its bytes decide its type, "
            "never its name or the part's Content-Type."
        ),
    )


# --- responses -----------------------------------------------------------------------------------


class ClaimFiguresSchema(Schema):
    near_shore_total = SignedMoney(allow_none=True, **_described("T of the year at submission"))
    baseline = SignedMoney(allow_none=True, **_described("B"))
    baseline_source = fields.String(allow_none=True)
    increment = SignedMoney(allow_none=True, **_described("I* of the year at submission"))
    subsidy = SignedMoney(allow_none=True, **_described("S* of the year at submission"))
    held = fields.Boolean(allow_none=True)
    rate = fields.Decimal(as_string=True, allow_none=True, places=6)
    annual_cap = SignedMoney(allow_none=True)
    policy_version = fields.Integer(allow_none=True)
    claimed_amount = SignedMoney(
        allow_none=True, **_described("S* (primary) or its change since the parent claim")
    )
    approved_amount = SignedMoney(allow_none=True, **_described("Set when decided"))


class ClaimSchema(Schema):
    id = fields.Integer()
    oem_org_id = fields.Integer()
    year = fields.Integer()
    kind = fields.Enum(ClaimKind, by_value=True)
    parent_id = fields.Integer(allow_none=True)
    state = fields.Enum(ClaimState, by_value=True)
    created_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    submitted_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    checkpoint_size = fields.Integer(
        allow_none=True, **_described("The signed checkpoint covering the claim's entries")
    )
    checkpoint_root = fields.String(allow_none=True)
    covered_after = fields.Integer(
        allow_none=True, **_described("The claim covers entries with seq in (this, size]")
    )
    claimed_amount = SignedMoney(allow_none=True)
    approved_amount = SignedMoney(allow_none=True)


class ClaimLineSchema(Schema):
    purchase_id = fields.Integer()
    record_seq = fields.Integer(**_described("The ledger entry that counted it"))
    amount = SignedMoney()
    decision = fields.Enum(LineDecision, by_value=True)
    reason = fields.String(allow_none=True)
    decided_by_id = fields.Integer(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)


class ClaimTransitionSchema(Schema):
    from_state = fields.Enum(ClaimState, by_value=True, allow_none=True)
    to_state = fields.Enum(ClaimState, by_value=True)
    actor_id = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class OutstandingSchema(Schema):
    purchase_id = fields.Integer()
    kind = fields.String()


class EvidenceRequestSchema(Schema):
    id = fields.Integer()
    purchase_ids = fields.List(fields.Integer())
    kinds = fields.List(fields.String())
    note = fields.String(allow_none=True)
    requested_by_id = fields.Integer(allow_none=True)
    requested_at = fields.DateTime()
    outstanding = fields.List(fields.Nested(OutstandingSchema))


class EvidenceDocumentSchema(Schema):
    id = fields.Integer()
    claim_id = fields.Integer()
    purchase_id = fields.Integer()
    kind = fields.Enum(EvidenceKind, by_value=True)
    filename = fields.String()
    content_type = fields.String(**_described("Detected from the bytes"))
    size = fields.Integer()
    sha256 = fields.String(**_described("SHA-256 of the bytes, hex"))
    active_content = fields.Boolean(
        **_described("A PDF naming JavaScript or a launch action; served as an attachment")
    )
    uploaded_by_id = fields.Integer(allow_none=True)
    uploaded_at = fields.DateTime()


class EvidenceListSchema(Schema):
    items = fields.List(fields.Nested(EvidenceDocumentSchema))


class ClaimDeltaSchema(Schema):
    since_size = fields.Integer()
    entries = fields.Integer()
    entry_seqs = fields.List(fields.Integer(), **_described("At most the first 1000"))
    purchase_ids = fields.List(fields.Integer())
    near_shore_total_change = SignedMoney()
    increment_change = SignedMoney()
    subsidy_change = SignedMoney()


class ClaimDetailSchema(Schema):
    claim = fields.Nested(ClaimSchema)
    oem_name = fields.String(allow_none=True)
    figures = fields.Nested(ClaimFiguresSchema)
    approved_preview = SignedMoney(
        allow_none=True, **_described("Under review: approving now would grant this")
    )
    lines = fields.List(fields.Nested(ClaimLineSchema))
    transitions = fields.List(fields.Nested(ClaimTransitionSchema))
    evidence_requests = fields.List(fields.Nested(EvidenceRequestSchema))
    evidence = fields.List(fields.Nested(EvidenceDocumentSchema))
    delta = fields.Nested(
        ClaimDeltaSchema,
        allow_none=True,
        **_described("Entries of the year appended after the claim's checkpoint"),
    )
    supplementary_claim_id = fields.Integer(allow_none=True)
