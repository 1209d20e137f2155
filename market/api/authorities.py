"""Authorities and their jurisdictions (admins): which auditors see which cities."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from market.models import Authority, Role, User
from market.permissions import allow
from market.schemas.accounts import (
    AuthorityCreateSchema,
    AuthorityDetailSchema,
    AuthoritySchema,
    AuthorityUpdateSchema,
    UserSchema,
)
from market.services import authorities

blp = Blueprint("authorities", __name__, description="Auditors' authorities and jurisdictions")


@blp.route("/authorities")
class Authorities(MethodView):
    @allow(Role.ADMIN)
    @blp.arguments(AuthorityCreateSchema)
    @blp.response(201, AuthoritySchema)
    @blp.alt_response(409, description="An authority with this name exists")
    def post(self, data: dict[str, Any]) -> Authority:
        """Create an authority with its jurisdiction (44 = the province, or city codes).

        The jurisdiction is a list of GB/T 2260 city codes, or ``44`` for the whole province.
        Auditors of the authority see ledger entries, summaries and claims of OEM plants inside it.
        """
        return authorities.authority_create(data["name"], data["city_codes"])

    @allow(Role.ADMIN)
    @blp.response(200, AuthoritySchema(many=True))
    def get(self) -> list[Authority]:
        """Every authority (admins).

        Authorities are the local governments whose auditors review claims; each has a jurisdiction
        of city codes.
        """
        return authorities.authority_list()


@blp.route("/authorities/<int:authority_id>")
class AuthorityDetail(MethodView):
    @allow(Role.ADMIN)
    @blp.response(200, AuthorityDetailSchema)
    def get(self, authority_id: int) -> Authority:
        """One authority with its auditors (admins).

        The authority's jurisdiction and the auditors attached to it.
        """
        return authorities.authority_get(authority_id)

    @allow(Role.ADMIN)
    @blp.arguments(AuthorityUpdateSchema)
    @blp.response(200, AuthoritySchema)
    @blp.alt_response(409, description="An authority with this name exists")
    def patch(self, data: dict[str, Any], authority_id: int) -> Authority:
        """Rename an authority or change its jurisdiction; its auditors see the change at once.

        Changing the jurisdiction changes at once what its auditors see; the change is written to
        the audit log.
        """
        return authorities.authority_update(
            authority_id, name=data.get("name"), city_codes=data.get("city_codes")
        )


@blp.route("/authorities/<int:authority_id>/auditors/<int:user_id>")
class AuthorityAuditor(MethodView):
    @allow(Role.ADMIN)
    @blp.response(200, UserSchema)
    def put(self, authority_id: int, user_id: int) -> User:
        """Attach an auditor to this authority (moving them from another).

        An auditor belongs to at most one authority; attaching them here detaches them from the
        previous one.
        """
        return authorities.auditor_attach(authority_id, user_id)

    @allow(Role.ADMIN)
    @blp.response(204)
    def delete(self, authority_id: int, user_id: int) -> None:
        """Detach an auditor: with no authority they see nothing.

        The auditor keeps their account but sees no ledger entry, summary or claim until attached
        again.
        """
        authorities.auditor_detach(authority_id, user_id)
