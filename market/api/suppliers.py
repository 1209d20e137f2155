"""Supplier profiles, sites, capabilities and certifications."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

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


def errors(*statuses: int) -> Any:
    """Document error responses of a view (the bodies are the API's one error envelope)."""

    def decorate(view: Any) -> Any:
        for status in statuses:
            view = blp.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorate


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
    @blp.response(200, page_of(CertificationSchema))
    @errors(401, 403, 404)
    def get(self, org_id: int, **query: Any) -> Page:
        """A supplier's certifications (filters: standard, status).

        Each certificate with its standard, number, validity, optional site and status.
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

        Revocation is final. A corrected certificate is checked like a new one.
        """
        return services.certification_update(actor(), org_id, certification_id, data)
