"""Supplier profiles, sites, capabilities and certifications."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market.api.openapi import error_responses
from market.api.pagination import page_of
from market.models import Capability, Certification, Organization, Role, Site
from market.permissions import ALL_ROLES, OWN_ORGANIZATION, actor, allow
from market.schemas.suppliers import (
    CapabilityCreateSchema,
    CapabilityListQuerySchema,
    CapabilityPatchSchema,
    CapabilitySchema,
    CertificationCreateSchema,
    CertificationListQuerySchema,
    CertificationPatchSchema,
    CertificationRejectSchema,
    CertificationReviewQuerySchema,
    CertificationSchema,
    SiteCreateSchema,
    SiteListQuerySchema,
    SitePatchSchema,
    SiteSchema,
    SupplierProfilePatchSchema,
    SupplierProfileSchema,
    SupplierSchema,
)
from market.services import suppliers as services
from market.services.pagination import Page

blp = Blueprint(
    "suppliers",
    __name__,
    description="Supplier profiles: sites, part capabilities and certifications",
)

EDITORS = (Role.SUPPLIER, Role.ADMIN)
# One page schema for the two certificate lists (OpenAPI names schemas; two would clash).
CERTIFICATION_PAGE = page_of(CertificationSchema)


def errors(*statuses: int) -> Any:
    """Document error responses of a view (the bodies are the API's one error envelope)."""
    return error_responses(blp, *statuses)


@blp.route("/suppliers/<int:org_id>")
class Supplier(MethodView):
    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.response(200, SupplierSchema)
    @errors(401, 403, 404)
    def get(self, org_id: int) -> Organization:
        """A supplier's profile with its sites, capabilities and certifications.

        Visible to verified organizations, auditors and admins. Certificates show their status, so
        a buyer can tell a verified one from a declared one.
        """
        return services.supplier_get(actor(), org_id)


@blp.route("/suppliers/<int:org_id>/profile")
class SupplierProfile(MethodView):
    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(SupplierProfileSchema)
    @blp.response(200, SupplierSchema)
    @errors(401, 403, 404)
    def put(self, data: dict[str, Any], org_id: int) -> Organization:
        """Replace a supplier's profile (all of it).

        A full replacement of tier, description, 专精特新 flag, size bands, English name and
        listing: ``tier`` is required and every optional field not sent takes its default
        (``description``, bands and ``english_name`` cleared, ``specialized`` false, ``listed``
        true). To change some fields only, use PATCH.
        """
        return services.supplier_profile_update(actor(), org_id, data)

    @allow(*EDITORS)
    @blp.arguments(SupplierProfilePatchSchema(partial=True))
    @blp.response(200, SupplierSchema)
    @errors(401, 403, 404)
    def patch(self, data: dict[str, Any], org_id: int) -> Organization:
        """Change some fields of a supplier's profile.

        Only the fields sent change; ``null`` clears a nullable one (``description``, the
        bands, ``english_name``). A body that changes nothing changes nothing (same
        ``version``).
        """
        return services.supplier_profile_update(actor(), org_id, data)


@blp.route("/suppliers/<int:org_id>/sites")
class Sites(MethodView):
    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(SiteCreateSchema)
    @blp.response(201, SiteSchema)
    @errors(401, 403, 404)
    def post(self, data: dict[str, Any], org_id: int) -> Site:
        """Add a plant or warehouse to a supplier.

        The coordinates must lie inside the declared city (GB/T 2260 code, checked against the real
        boundary with a 2 km tolerance). Purchases freeze a copy of the site's place when they are
        recorded, so moving a site later changes no verdict.
        """
        return services.site_create(actor(), org_id, data)

    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(SiteListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, page_of(SiteSchema))
    @errors(401, 403, 404)
    def get(self, org_id: int, **query: Any) -> Page:
        """A supplier's sites (filters: kind, city_code, active).

        Sites are plants and warehouses with a city code and coordinates inside that city's real
        boundary. Inactive sites are kept for the purchases that refer to them.
        """
        return services.site_list(actor(), org_id, **query)


@blp.route("/suppliers/<int:org_id>/sites/<int:site_id>")
class SiteItem(MethodView):
    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.response(200, SiteSchema)
    @errors(401, 403, 404)
    def get(self, org_id: int, site_id: int) -> Site:
        """One site of a supplier.

        Includes whether the site is active.
        """
        return services.site_get(actor(), org_id, site_id)

    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(SitePatchSchema)
    @blp.response(200, SiteSchema)
    @errors(401, 403, 404)
    def patch(self, data: dict[str, Any], org_id: int, site_id: int) -> Site:
        """Change a site's fields (``active: true`` reactivates it).

        Coordinates and city are checked as on creation. Past purchases keep the place they were
        recorded with.
        """
        return services.site_update(actor(), org_id, site_id, data)

    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.response(204)
    @errors(401, 403, 404)
    def delete(self, org_id: int, site_id: int) -> None:
        """Deactivate a site (it is kept: quotes and purchases refer to it).

        An inactive site takes no part in matching or new purchases; it is never deleted.
        """
        services.site_deactivate(actor(), org_id, site_id)


@blp.route("/suppliers/<int:org_id>/capabilities")
class Capabilities(MethodView):
    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CapabilityCreateSchema)
    @blp.response(201, CapabilitySchema)
    @errors(401, 403, 404, 409)
    def post(self, data: dict[str, Any], org_id: int) -> Capability:
        """Declare a part category the supplier makes (one per category).

        A second capability for the same category is a 409. The supplier's search document is
        updated after the commit.
        """
        return services.capability_create(actor(), org_id, data)

    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CapabilityListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, page_of(CapabilitySchema))
    @errors(401, 403, 404)
    def get(self, org_id: int, **query: Any) -> Page:
        """A supplier's capabilities (filter: category, including its descendants).

        Each capability names one taxonomy category; matching uses a capability for the category
        and every category under it.
        """
        return services.capability_list(actor(), org_id, **query)


@blp.route(
    "/suppliers/<int:org_id>/capabilities/<int:capability_id>",
    parameters=[
        {"in": "path", "name": "org_id", "description": "The supplier organization."},
        {"in": "path", "name": "capability_id", "description": "One of its capabilities."},
    ],
)
class CapabilityItem(MethodView):
    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CapabilityPatchSchema)
    @blp.response(200, CapabilitySchema)
    @errors(401, 403, 404, 422)
    def patch(self, data: dict[str, Any], org_id: int, capability_id: int) -> Capability:
        """Set whether a chip capability is of domestic origin.

        Only capabilities under ``ic.chips`` carry the flag (422 elsewhere). Purchases keep
        the value they froze when they were created: changing it affects later purchases only.
        """
        return services.capability_update(actor(), org_id, capability_id, data)

    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.response(204)
    @errors(401, 403, 404)
    def delete(self, org_id: int, capability_id: int) -> None:
        """Remove a capability.

        The supplier stops matching demands of that category once search has caught up (seconds).
        """
        services.capability_delete(actor(), org_id, capability_id)


@blp.route("/suppliers/<int:org_id>/certifications")
class Certifications(MethodView):
    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CertificationCreateSchema)
    @blp.response(201, CertificationSchema)
    @errors(401, 403, 404)
    def post(self, data: dict[str, Any], org_id: int) -> Certification:
        """Record a certificate or qualification (standard, level, validity, optional site).

        Validity dates are checked (valid_until after valid_from). A demand requiring a standard
        matches only suppliers whose certificate is valid on the business date (Asia/Shanghai).
        """
        return services.certification_create(actor(), org_id, data)

    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CertificationListQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, CERTIFICATION_PAGE)
    @errors(401, 403, 404)
    def get(self, org_id: int, **query: Any) -> Page:
        """A supplier's certifications (filters: standard, status, verification).

        Each certificate carries its admin review: ``verification`` (pending, verified or
        rejected), ``reviewed_at`` and, when rejected, ``review_reason``. Only verified
        certificates count for matching.
        """
        return services.certification_list(actor(), org_id, **query)


@blp.route("/suppliers/<int:org_id>/certifications/<int:certification_id>")
class CertificationItem(MethodView):
    @allow(*ALL_ROLES, pending_ok=OWN_ORGANIZATION)
    @blp.response(200, CertificationSchema)
    @errors(401, 403, 404)
    def get(self, org_id: int, certification_id: int) -> Certification:
        """One certification of a supplier.

        With its validity and status.
        """
        return services.certification_get(actor(), org_id, certification_id)

    @allow(*EDITORS, pending_ok=OWN_ORGANIZATION)
    @blp.arguments(CertificationPatchSchema)
    @blp.response(200, CertificationSchema)
    @errors(401, 403, 404, 409)
    def patch(self, data: dict[str, Any], org_id: int, certification_id: int) -> Certification:
        """Correct a certification, or revoke it with ``status: revoked`` (final).

        A change to what the certificate states (level, number, issuer, validity, scope, site)
        sends it back to review: it is ``pending`` again and no longer counts for matching until
        an admin verifies it — also after a verification or a rejection.
        """
        return services.certification_update(actor(), org_id, certification_id, data)


@blp.route("/suppliers/<int:org_id>/certifications/<int:certification_id>/verify")
class CertificationVerify(MethodView):
    @allow(Role.ADMIN)
    @blp.response(200, CertificationSchema)
    @errors(401, 403, 404, 409)
    def post(self, org_id: int, certification_id: int) -> Certification:
        """Verify a pending certificate (admin).

        From now on it counts for matching (the search index is updated through the outbox)
        until the supplier changes what it states. The supplier is told
        (``certification.verified``) and the act is in the audit log. 409 if the certificate is
        not pending (already reviewed, or revoked).
        """
        return services.certification_review(
            actor(), org_id, certification_id, verify=True, reason=None
        )


@blp.route("/suppliers/<int:org_id>/certifications/<int:certification_id>/reject")
class CertificationReject(MethodView):
    @allow(Role.ADMIN)
    @blp.arguments(CertificationRejectSchema)
    @blp.response(200, CertificationSchema)
    @errors(401, 403, 404, 409)
    def post(self, data: dict[str, Any], org_id: int, certification_id: int) -> Certification:
        """Reject a pending certificate with a reason (admin).

        It never counts for matching; the supplier sees the reason (``review_reason``), is told
        (``certification.rejected``), and may correct the certificate, which makes it pending
        again. The act is in the audit log. 422 without a reason; 409 if it is not pending.
        """
        return services.certification_review(
            actor(), org_id, certification_id, verify=False, reason=data["reason"]
        )


@blp.route("/admin/certifications")
class CertificationReviewQueue(MethodView):
    @allow(Role.ADMIN)
    @blp.arguments(CertificationReviewQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, CERTIFICATION_PAGE)
    @errors(401, 403)
    def get(self, **query: Any) -> Page:
        """The admins' certificate review queue.

        Active certificates of every supplier in one review state — ``status=pending`` (the
        default) lists those waiting for a verification or a rejection — oldest first, with
        ``organization_id`` to review them at ``/suppliers/{org}/certifications/{id}/verify``
        or ``/reject``. ``GET /certifications`` stays the public list of standards.
        """
        return services.certification_review_queue(
            actor(),
            page=query["page"],
            per_page=query["per_page"],
            verification=query["status"],
            standard=query.get("standard"),
        )
