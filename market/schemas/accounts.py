"""Request and response shapes of accounts: organizations, users, sign-in, API tokens."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from market import refdata, uscc
from market.models import OrgKind, OrgRole, OrgStatus, Role
from market.passwords import PASSWORD_MAX, PASSWORD_MIN, password_problems
from market.schemas import PageQuerySchema, StrictSchema
from market.schemas.search import search_words

_LINE_BREAKS = ("\r", "\n", "\t")


class TrimmedLine(fields.String):
    """One line of text: surrounding whitespace removed, no line breaks or tabs."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip()
        if any(ch in text for ch in _LINE_BREAKS):
            raise ValidationError("Must be a single line (no line breaks or tabs).")
        return text


class NormalisedEmail(fields.Email):
    """An email address, compared and stored lower-case without surrounding whitespace."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
        return super()._deserialize(value, attr, data, **kwargs)


class USCCField(fields.String):
    """A unified social credit code, checked against GB 32100-2015 (the message names the rule)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return uscc.validate(text)
        except uscc.InvalidUSCC as exc:
            raise ValidationError(f"Breaks GB 32100-2015 rule '{exc.rule}': {exc}") from exc


def _password_field(**kwargs: Any) -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Length(
            min=PASSWORD_MIN,
            max=PASSWORD_MAX,
            error=f"Passwords have {PASSWORD_MIN} to {PASSWORD_MAX} characters.",
        ),
        load_only=True,
        **kwargs,
    )


def check_password_policy(
    password: str, email: str | None = None, organization_names: tuple[str | None, ...] = ()
) -> list[str]:
    """What is wrong with ``password`` (empty when it is acceptable); see market.passwords."""
    return password_problems(password, email=email, organization_names=organization_names)


# --- organizations ------------------------------------------------------------------------------


class FirstUserSchema(StrictSchema):
    email = NormalisedEmail(required=True, validate=validate.Length(max=254))
    password = _password_field()
    display_name = TrimmedLine(validate=validate.Length(min=1, max=120), load_default=None)


class OrganizationRegisterSchema(StrictSchema):
    """An organization and its first user. Role, status, tier and verification are not inputs:
    the role follows from the kind and an administrator verifies the organization."""

    kind = fields.Enum(OrgKind, by_value=True, required=True)
    uscc = USCCField(required=True)
    legal_name = TrimmedLine(required=True, validate=validate.Length(min=1, max=200))
    english_name = TrimmedLine(validate=validate.Length(min=1, max=200), load_default=None)
    city_code = fields.String(
        required=True,
        validate=validate.OneOf(
            sorted(refdata.cities()),
            error="Not a Guangdong prefecture-level city code (GB/T 2260); see GET /api/v1/cities.",
        ),
    )
    user = fields.Nested(FirstUserSchema, required=True)

    @validates_schema
    def _password_strength(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Here, not on the user: the password must not contain the organisation's names either.
        user = data.get("user") or {}
        if "password" not in user:
            return
        names = (data.get("legal_name"), data.get("english_name"))
        problems = check_password_policy(user["password"], user.get("email"), names)
        if problems:
            raise ValidationError({"user": {"password": problems}})


class RegistrationAcceptedSchema(Schema):
    message = fields.String()


class OrganizationQuerySchema(PageQuerySchema):
    kind = fields.Enum(
        OrgKind,
        by_value=True,
        load_default=None,
        metadata={"description": "Only organizations of this kind: oem or supplier."},
    )
    status = fields.Enum(
        OrgStatus,
        by_value=True,
        load_default=None,
        metadata={
            "description": "Only organizations in this status: pending, active or suspended."
        },
    )
    q = search_words("Words to find in the Chinese or English name or the description")


class SuspendSchema(StrictSchema):
    reason = TrimmedLine(validate=validate.Length(min=1, max=300), load_default=None)


class OrganizationSchema(Schema):
    id = fields.Integer()
    kind = fields.Enum(OrgKind, by_value=True)
    uscc = fields.String()
    legal_name = fields.String()
    english_name = fields.String(allow_none=True)
    city_code = fields.String()
    status = fields.Enum(OrgStatus, by_value=True)
    tier = fields.Integer(allow_none=True)
    verified_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    display_name = fields.String(allow_none=True)
    role = fields.Enum(Role, by_value=True)
    organization_id = fields.Integer(allow_none=True)
    org_role = fields.Enum(
        OrgRole,
        by_value=True,
        allow_none=True,
        metadata={"description": "admin or member of the organization (null for staff)."},
    )
    authority_id = fields.Integer(allow_none=True, metadata={"description": "Auditors only."})
    disabled = fields.Boolean()
    created_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


class OrganizationDetailSchema(OrganizationSchema):
    members = fields.List(fields.Nested(UserSchema), attribute="members")


# --- sign-in ------------------------------------------------------------------------------------


class LoginSchema(StrictSchema):
    # Not validated as an address: any wrong input gets the same answer as a wrong password.
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=PASSWORD_MAX)
    )


class SessionSchema(Schema):
    user = fields.Nested(UserSchema)
    csrf_token = fields.String(
        metadata={"description": "Send it back in the X-CSRF-Token header on every write."}
    )


class MeSchema(Schema):
    user = fields.Nested(UserSchema)
    organization = fields.Nested(OrganizationSchema, allow_none=True)
    auth = fields.String(metadata={"description": "How this request was authenticated."})


class PasswordChangeSchema(StrictSchema):
    current_password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=PASSWORD_MAX)
    )
    new_password = _password_field()


# --- API tokens ---------------------------------------------------------------------------------


class TokenCreateSchema(StrictSchema):
    name = TrimmedLine(required=True, validate=validate.Length(min=1, max=80))
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=PASSWORD_MAX),
        metadata={"description": "Your password: a session alone cannot mint a token."},
    )
    expires_in_days = fields.Integer(
        validate=validate.Range(min=1, max=365),
        metadata={"description": "1 to 365; 90 when omitted. Tokens always expire."},
    )


class ApiTokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "The first characters, to recognise it."})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(
        allow_none=True, metadata={"description": "Updated at most once a minute."}
    )
    revoked_at = fields.DateTime(allow_none=True)


class ApiTokenCreatedSchema(ApiTokenSchema):
    token = fields.String(metadata={"description": "The bearer token; shown this once only."})


# --- security events ----------------------------------------------------------------------------


class SecurityEventQuerySchema(PageQuerySchema):
    kind = fields.String(
        load_default=None,
        validate=validate.Length(max=40),
        metadata={"description": "Only events of this kind (e.g. login_failed, token_revoked)."},
    )
    user_id = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "Only events of this user."},
    )


class SecurityEventSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    user_id = fields.Integer(allow_none=True)
    ip = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    created_at = fields.DateTime()


# --- teams --------------------------------------------------------------------------------------


class InvitationCreateSchema(StrictSchema):
    email = NormalisedEmail(required=True, validate=validate.Length(max=254))
    org_role = fields.Enum(
        OrgRole,
        by_value=True,
        load_default=OrgRole.MEMBER,
        metadata={"description": "The role in the organization once accepted (member)."},
    )


class InvitationSchema(Schema):
    id = fields.Integer()
    organization_id = fields.Integer()
    email = fields.String()
    org_role = fields.Enum(OrgRole, by_value=True)
    state = fields.String(metadata={"description": "pending, accepted, revoked or expired."})
    invited_by_id = fields.Integer()
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    accepted_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


class InvitationCreatedSchema(InvitationSchema):
    token = fields.String(
        allow_none=True,
        metadata={
            "description": "The one-time token; shown this once only (null when it was emailed "
            "to the invitee instead)."
        },
    )
    link = fields.String(
        allow_none=True,
        metadata={
            "description": "The link to give the invitee (the token is in its fragment); null "
            "when email is configured: the link went to the invitee's address."
        },
    )
    emailed = fields.Boolean(
        metadata={"description": "true: the link was sent to the invitee by email."}
    )


class InvitationAcceptSchema(StrictSchema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=100))
    password = _password_field()
    display_name = TrimmedLine(validate=validate.Length(min=1, max=120), load_default=None)


class MemberRoleSchema(StrictSchema):
    org_role = fields.Enum(OrgRole, by_value=True, required=True)


# --- authorities and the audit log --------------------------------------------------------------


class JurisdictionCodes(fields.List):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            fields.String(validate=validate.Regexp(r"^\d{2,6}$", error="Digits only.")),
            validate=validate.Length(min=1, max=30),
            metadata={"description": "GB/T 2260 codes: 44 (the province) or city codes."},
            **kwargs,
        )


class AuthorityCreateSchema(StrictSchema):
    name = TrimmedLine(required=True, validate=validate.Length(min=1, max=200))
    city_codes = JurisdictionCodes(required=True)


class AuthorityUpdateSchema(StrictSchema):
    name = TrimmedLine(validate=validate.Length(min=1, max=200))
    city_codes = JurisdictionCodes()


class AuthoritySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    city_codes = fields.List(fields.String())
    created_at = fields.DateTime()


class AuthorityDetailSchema(AuthoritySchema):
    auditors = fields.List(fields.Nested(UserSchema))


class AuditLogQuerySchema(PageQuerySchema):
    organization_id = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={
            "description": "Only entries about this organization (admins; org admins: their own)."
        },
    )
    action = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=60),
        metadata={
            "description": "Only entries of this action, e.g. member.removed or baseline.declared."
        },
    )


class AuditLogEntrySchema(Schema):
    id = fields.Integer()
    actor_id = fields.Integer(allow_none=True)
    organization_id = fields.Integer(allow_none=True)
    action = fields.String()
    target = fields.String(allow_none=True)
    details = fields.Dict()
    ip = fields.String(allow_none=True)
    created_at = fields.DateTime()
