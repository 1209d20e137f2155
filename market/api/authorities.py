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
        """Create an authority with its jurisdiction (44 = the province, or city codes)."""
        return authorities.authority_create(data["name"], data["city_codes"])

    @allow(Role.ADMIN)
    @blp.response(200, AuthoritySchema(many=True))
    def get(self) -> list[Authority]:
        """Every authority (admins)."""
        return authorities.authority_list()


@blp.route("/authorities/<int:authority_id>")
class AuthorityDetail(MethodView):
    @allow(Role.ADMIN)
    @blp.response(200, AuthorityDetailSchema)
    def get(self, authority_id: int) -> Authority:
        """One authority with its auditors (admins)."""
        return authorities.authority_get(authority_id)

    @allow(Role.ADMIN)
    @blp.arguments(AuthorityUpdateSchema)
    @blp.response(200, AuthoritySchema)
    @blp.alt_response(409, description="An authority with this name exists")
    def patch(self, data: dict[str, Any], authority_id: int) -> Authority:
        """Rename an authority or change its jurisdiction; its auditors see the change at once."""
        return authorities.authority_update(
            authority_id, name=data.get("name"), city_codes=data.get("city_codes")
        )


@blp.route("/authorities/<int:authority_id>/auditors/<int:user_id>")
class AuthorityAuditor(MethodView):
    @allow(Role.ADMIN)
    @blp.response(200, UserSchema)
    def put(self, authority_id: int, user_id: int) -> User:
        """Attach an auditor to this authority (moving them from another)."""
        return authorities.auditor_attach(authority_id, user_id)

    @allow(Role.ADMIN)
    @blp.response(204)
    def delete(self, authority_id: int, user_id: int) -> None:
        """Detach an auditor: with no authority they see nothing."""
        authorities.auditor_detach(authority_id, user_id)
