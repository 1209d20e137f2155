"""Subsidy claims (申报): OEM buyers file and submit them and hand in evidence; auditors of the
OEM's jurisdiction (and admins) review, request evidence, decide per purchase and decide.

Suppliers never see a claim (403); a claim outside the caller's reach does not exist (404).
The evidence upload is the one route of the API that takes ``multipart/form-data`` instead of
JSON (``market.http.accepts_upload``): a document is bytes, and the form keeps its fields
(purchase, kind) beside it as browsers and ``curl -F`` send them.
"""

from __future__ import annotations

import io
from typing import Any

from flask import jsonify, request, send_file
from flask.views import MethodView
from flask.wrappers import Response
from flask_smorest import Blueprint
from marshmallow import RAISE, ValidationError

from market.api.pagination import page_of
from market.errors import ValidationFailed
from market.http import accepts_upload
from market.ledger import package
from market.models import Claim, EvidenceDocument, EvidenceKind, Role
from market.permissions import actor, allow
from market.schemas.claims import (
    ClaimCreateSchema,
    ClaimDecideSchema,
    ClaimDetailSchema,
    ClaimQuerySchema,
    ClaimSchema,
    EvidenceDocumentSchema,
    EvidenceFormSchema,
    EvidenceListSchema,
    EvidenceRequestCreateSchema,
    LineDecisionsSchema,
    ReasonSchema,
)
from market.services import claim_evidence, claim_package, claim_views, claims, evidence_files

blp = Blueprint("claims", __name__, description="Subsidy claims (申报) and their evidence")

READERS = (Role.BUYER, Role.AUDITOR, Role.ADMIN)
DECIDERS = (Role.AUDITOR, Role.ADMIN)
CLAIM_ID = {"description": "The claim's id."}


@blp.route("/claims")
class Claims(MethodView):
    @allow(*READERS)
    @blp.arguments(ClaimQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, page_of(ClaimSchema))
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the claims you may see.

        Buyers see their organization's claims, auditors those of OEMs with a plant in their
        jurisdiction, admins all; filter by year, OEM, state and kind.
        """
        return claims.claim_list(actor(), query).as_dict()

    @allow(Role.BUYER)
    @blp.arguments(ClaimCreateSchema)
    @blp.response(201, ClaimSchema)
    @blp.alt_response(409, description="An open claim exists for the year, or the kind is wrong")
    @blp.alt_response(422, description="The year has not ended (Asia/Shanghai)")
    def post(self, data: dict[str, Any]) -> Claim:
        """File a draft claim for a year that has ended.

        One open claim per OEM and year. A supplementary claim follows the year's latest
        decided claim and covers the entries appended after it.
        """
        return claims.claim_create(actor(), data)


@blp.route("/claims/<int:claim_id>", parameters=[{"in": "path", "name": "claim_id", **CLAIM_ID}])
class ClaimById(MethodView):
    @allow(*READERS)
    @blp.response(200, ClaimDetailSchema)
    @blp.alt_response(404, description="No such claim, or not yours to see")
    def get(self, claim_id: int) -> dict[str, Any]:
        """One claim with its figures, purchases, history, evidence and ledger delta.

        The delta lists the entries of the claim's OEM and year appended after the
        checkpoint the claim refers to: what a supplementary claim would take up.
        """
        return claim_views.claim_detail(actor(), claim_id)


def _claim_action(rule: str) -> Any:
    return blp.route(rule, parameters=[{"in": "path", "name": "claim_id", **CLAIM_ID}])


@_claim_action("/claims/<int:claim_id>/submit")
class ClaimSubmit(MethodView):
    @allow(Role.BUYER)
    @blp.arguments(ReasonSchema)
    @blp.response(200, ClaimSchema)
    @blp.alt_response(409, description="Not a draft")
    @blp.alt_response(422, description="Nothing to claim, or the year's subsidy is held")
    @blp.alt_response(503, description="The checkpoint could not be signed; nothing submitted")
    def post(self, data: dict[str, Any], claim_id: int) -> Claim:
        """Submit a draft: its figures are frozen and covered by a signed checkpoint.

        T, B, I*, S*, the cap and the near-shore purchases of the year are taken from the
        ledger entries of a checkpoint issued now (or the latest, if nothing was appended).
        """
        return claims.claim_submit(actor(), claim_id, data.get("reason"))


@_claim_action("/claims/<int:claim_id>/review")
class ClaimReview(MethodView):
    @allow(*DECIDERS)
    @blp.arguments(ReasonSchema)
    @blp.response(200, ClaimSchema)
    @blp.alt_response(409, description="Neither submitted nor waiting for evidence")
    def post(self, data: dict[str, Any], claim_id: int) -> Claim:
        """Take a claim into review (auditors of its jurisdiction, admins).

        From submitted, or from evidence_requested without waiting for the evidence (then a
        reason is required).
        """
        return claims.claim_review(actor(), claim_id, data.get("reason"))


@_claim_action("/claims/<int:claim_id>/request-evidence")
class ClaimRequestEvidence(MethodView):
    @allow(*DECIDERS)
    @blp.arguments(EvidenceRequestCreateSchema)
    @blp.response(200, ClaimSchema)
    @blp.alt_response(409, description="Not under review")
    @blp.alt_response(422, description="A named purchase is not in the claim")
    def post(self, data: dict[str, Any], claim_id: int) -> Claim:
        """Ask the OEM for documents of named purchases of the claim.

        The claim waits in evidence_requested until every named purchase has every named
        kind of document handed in (then it returns to under_review by itself).
        """
        return claims.claim_request_evidence(actor(), claim_id, data)


@_claim_action("/claims/<int:claim_id>/decisions")
class ClaimDecisions(MethodView):
    @allow(*DECIDERS)
    @blp.arguments(LineDecisionsSchema)
    @blp.response(200, ClaimSchema)
    @blp.alt_response(409, description="Not under review (evidence outstanding, or decided)")
    @blp.alt_response(422, description="A purchase not in the claim, or named twice")
    def post(self, data: dict[str, Any], claim_id: int) -> Claim:
        """Approve or reject purchases of a claim under review.

        All decisions are checked before any is applied; a rejection needs a reason. A
        decision may be changed until the claim is decided.
        """
        return claims.claim_decide_lines(actor(), claim_id, data["decisions"])


@_claim_action("/claims/<int:claim_id>/decide")
class ClaimDecide(MethodView):
    @allow(*DECIDERS)
    @blp.arguments(ClaimDecideSchema)
    @blp.response(200, ClaimSchema)
    @blp.alt_response(409, description="Not under review, or purchases undecided")
    def post(self, data: dict[str, Any], claim_id: int) -> Claim:
        """Decide a claim under review: approve (with the purchase decisions) or reject it.

        The approved amount is min(cap, round_half_up(max(0, T_approved − B) × rate, 0.01))
        with T_approved excluding every rejected purchase of the year's claims, less what the
        year's earlier claims approved.
        """
        return claims.claim_decide(actor(), claim_id, data["decision"], data["reason"])


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["purchase_id", "kind", "file"],
                "properties": {
                    "purchase_id": {
                        "type": "integer",
                        "description": "A purchase of the claim.",
                    },
                    "kind": {
                        "type": "string",
                        "enum": [k.value for k in EvidenceKind],
                        "description": "Which document this is.",
                    },
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "PDF, JPEG or PNG, at most 10 MB; the bytes decide the "
                        "type, never the name or the part's Content-Type.",
                    },
                },
            }
        }
    },
}


def _read_upload() -> claim_evidence.Upload:
    """The form's fields and file (422 with the field otherwise), after authorization."""
    try:
        form = EvidenceFormSchema().load(request.form.to_dict())
    except ValidationError as exc:
        raise ValidationFailed(fields=exc.messages_dict) from None
    unknown = set(request.files) - {"file"}
    if unknown:
        raise ValidationFailed(fields={name: ["Unknown field."] for name in sorted(unknown)})
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed(fields={"file": ["Missing data for required field."]})
    data = upload.stream.read(evidence_files.MAX_EVIDENCE_BYTES + 1)
    return claim_evidence.Upload(
        form["purchase_id"], EvidenceKind(form["kind"]), upload.filename, data
    )


@_claim_action("/claims/<int:claim_id>/evidence")
class ClaimEvidence(MethodView):
    @accepts_upload
    @allow(Role.BUYER)
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(201, EvidenceDocumentSchema)
    @blp.alt_response(409, description="The claim is a draft or decided")
    @blp.alt_response(413, description="The request is larger than 10 MB and its form")
    @blp.alt_response(415, description="Not multipart/form-data")
    @blp.alt_response(
        422, description="Empty, over 10 MB, not PDF/JPEG/PNG, or not a claim purchase"
    )
    def post(self, claim_id: int) -> EvidenceDocument:
        """Hand in a document for a purchase of your claim (multipart/form-data).

        Send the fields `purchase_id` and `kind` and the part `file`. The answer shows the
        detected content type and the SHA-256 of the stored bytes.
        """
        user = actor()
        claims.find_claim(user, claim_id)  # 404 before the body is judged
        return claim_evidence.evidence_upload(user, claim_id, _read_upload())

    @allow(*READERS)
    @blp.response(200, EvidenceListSchema)
    def get(self, claim_id: int) -> dict[str, Any]:
        """List a claim's documents (metadata and SHA-256; no bytes).

        Oldest first; download one with GET .../evidence/{document_id}.
        """
        return {"items": claim_evidence.evidence_list(actor(), claim_id)}


@blp.route(
    "/claims/<int:claim_id>/evidence/<int:document_id>",
    parameters=[
        {"in": "path", "name": "claim_id", **CLAIM_ID},
        {"in": "path", "name": "document_id", "description": "The document's id."},
    ],
)
@allow(*READERS)
@blp.response(
    200,
    {"type": "string", "format": "binary"},
    content_type="application/octet-stream",
    description="The stored bytes, as an attachment, with the detected type",
)
def evidence_download(claim_id: int, document_id: int) -> Response:
    """Download a document of a claim, always as an attachment.

    The Content-Type is the one detected at upload, with `nosniff`; nothing is served
    inline (a PDF with JavaScript included). `X-Content-SHA256` repeats the stored hash.
    """
    document = claim_evidence.evidence_get(actor(), claim_id, document_id)
    response = send_file(
        io.BytesIO(document.content),
        mimetype=document.content_type,
        as_attachment=True,
        download_name=evidence_files.download_name(
            document.id, document.filename, document.content_type
        ),
        etag=document.sha256,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-SHA256"] = document.sha256
    return response


@_claim_action("/claims/<int:claim_id>/package.xlsx")
class ClaimWorkbook(MethodView):
    @allow(*READERS)
    @blp.response(
        200,
        {"type": "string", "format": "binary"},
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        description="The claim's workbook: summary, entries with decisions, evidence index",
    )
    @blp.alt_response(409, description="A draft has no package")
    def get(self, claim_id: int) -> Response:
        """The claim's workbook (XLSX) for auditors and the claiming OEM.

        Three sheets with Chinese headers: the summary of the figures, the ledger entries
        the claim covers with each purchase's decision, and the evidence index (SHA-256).
        """
        facts = claim_package.package_facts(actor(), claim_id)
        return send_file(
            io.BytesIO(package.claim_workbook(facts)),
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            as_attachment=True,
            download_name=f"claim-{claim_id}-{facts.year}.xlsx",
            max_age=0,
        )


@_claim_action("/claims/<int:claim_id>/manifest.json")
class ClaimManifest(MethodView):
    @allow(*READERS)
    @blp.response(
        200,
        {"type": "object"},
        description="The signed checkpoint, every entry with its inclusion proof, the figures",
    )
    @blp.alt_response(409, description="A draft has no package")
    def get(self, claim_id: int) -> Response:
        """The claim's JSON manifest, checkable offline (`strongchain-verify manifest`).

        It carries the signed checkpoint the claim refers to, each entry's canonical JSON,
        leaf hash and RFC 9162 inclusion proof, the figures and the evidence index.
        """
        manifest = package.claim_manifest(claim_package.package_facts(actor(), claim_id))
        return jsonify(manifest)
