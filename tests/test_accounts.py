"""Organizations: registration, USCC rules, verification, suspension; staff accounts by CLI."""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from market import uscc
from market.models import (
    ApiToken,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    OutboxEvent,
    OutboxTopic,
    Role,
    SecurityEvent,
    User,
)
from market.permissions import OrganizationNotActive, require_active_organization
from market.schemas.accounts import OrganizationRegisterSchema
from tests import factories
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)

VECTORS = json.loads((Path(__file__).parent / "data" / "uscc_vectors.json").read_text())
PASSWORD = "a long enough password"
_serial = itertools.count(1)
_addresses = itertools.count(1)


def registration(kind: str = "supplier", **overrides: Any) -> dict[str, Any]:
    n = next(_serial)
    body: dict[str, Any] = {
        "kind": kind,
        "uscc": uscc.complete(f"91440300MA{n:07d}".replace("I", "J")),
        "legal_name": f"广州测试{n}有限公司",
        "english_name": f"Guangzhou Test {n} Co., Ltd.",
        "city_code": "440100",
        "user": {"email": f"first-user-{n}@example.test", "password": PASSWORD},
    }
    body.update(overrides)
    return body


def register(env: Env, body: dict[str, Any]) -> Any:
    return env.client().post("/api/v1/organizations", json=body)


def registered_lookup(env: Env, code: str) -> tuple[Organization, User]:
    """The organization registered with ``code`` and its first user."""
    with env.db() as session:
        organization = session.scalar(select(Organization).where(Organization.uscc == code.upper()))
        assert organization is not None
        [user] = organization.users
        return organization, user


def registered(env: Env, body: dict[str, Any]) -> tuple[Organization, User]:
    """Register ``body`` (202: the answer names nothing) and read what was created."""
    response = register(env, body)
    assert response.status_code == 202, response.get_json()
    return registered_lookup(env, body["uscc"])


def bearer(env: Env, user: Any) -> dict[str, str]:
    with env.db():
        return factories.auth(user)


def login(env: Env, email: str, password: str = factories.PASSWORD) -> Any:
    client = env.client()
    n = next(_addresses)
    response = client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": f"198.19.{n // 250 % 250}.{n % 250 + 1}"},
    )
    return client, response


def count(env: Env, model: Any) -> int:
    with env.db() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


@pytest.fixture
def admin(env: Env) -> User:
    with env.db():
        return make_user(role=Role.ADMIN)


# --- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "role"), [("oem", "buyer"), ("supplier", "supplier")])
def test_registration_creates_a_pending_organization_and_its_first_user(env, kind, role):
    body = registration(kind)
    body["user"]["email"] = "  First.User@Example.TEST "
    body["uscc"] = body["uscc"].lower()
    response = register(env, body)
    assert response.status_code == 202, response.get_json()
    # The answer names nothing: it is the same for an address that already has an account.
    assert set(response.get_json()) == {"message"}
    organization, user = registered_lookup(env, body["uscc"])
    assert organization.status is OrgStatus.PENDING
    assert organization.kind.value == kind
    assert user.role.value == role
    assert user.email == "first.user@example.test"
    assert user.org_role is OrgRole.ADMIN  # the first user is the org admin
    assert user.password_hash.startswith("$argon2id$")
    # The new user can sign in at once (but the organization cannot trade until verified).
    client, response = login(env, "first.user@example.test", PASSWORD)
    assert response.status_code == 200
    me = client.get("/api/v1/auth/me").get_json()
    assert me["organization"]["id"] == organization.id
    assert me["user"]["org_role"] == "admin"


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("org", "status", "active"),
        ("org", "verified", True),
        ("org", "verified_at", "2026-01-01T00:00:00Z"),
        ("org", "tier", 1),
        ("org", "role", "admin"),
        ("org", "id", 1),
        ("user", "role", "admin"),
        ("user", "organization", 1),
        ("user", "organization_id", 1),
        ("user", "disabled", False),
        ("user", "session_token", "chosen"),
    ],
)
def test_mass_assignment_is_rejected_with_422_and_nothing_written(env, where, field, value):
    body = registration()
    (body if where == "org" else body["user"])[field] = value
    before = (count(env, Organization), count(env, User))
    response = register(env, body)
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert (fields if where == "org" else fields["user"])[field] == ["Unknown field."]
    assert (count(env, Organization), count(env, User)) == before


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("91440300MA5F", "length"),
        ("91440300MA5FKPXW02X", "length"),
        ("91440300MA5FIO0S0Z", "alphabet"),
        ("9144X300MA5FKPXW02", "division_code"),
        ("91440300MA5FKPXW03", "check_character"),
    ]
    + [(case["code"], None) for case in VECTORS["invalid"]],
)
def test_invalid_uscc_gets_a_422_naming_the_rule(env, code, rule):
    response = register(env, registration(uscc=code))
    assert response.status_code == 422
    [message] = response.get_json()["error"]["fields"]["uscc"]
    assert "GB 32100-2015" in message
    if rule:
        assert f"'{rule}'" in message


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["code"])
def test_real_codes_from_the_reference_vectors_are_accepted(case):
    # Schema only: no rows for real companies are written.
    data = OrganizationRegisterSchema().load(registration(uscc=case["code"]))
    assert data["uscc"] == case["code"]


def test_authority_codes_beyond_digits_are_accepted():
    # GB 32100 allows registration authorities A, N and Y (python-stdnum would reject them).
    for first17 in ("N2440300MA5FKPXW0", "Y1440300MA5FKPXW0", "A1440300MA5FKPXW0"):
        code = uscc.complete(first17)
        assert uscc.validate(code) == code


def test_a_duplicate_uscc_is_409_but_a_duplicate_email_is_not_revealed(env):
    first = registration()
    assert register(env, first).status_code == 202
    same_code = registration(uscc=first["uscc"])
    response = register(env, same_code)
    assert response.status_code == 409
    assert "uscc" in response.get_json()["error"]["fields"]
    same_email = registration()
    same_email["user"]["email"] = first["user"]["email"].upper()
    before = (count(env, Organization), count(env, User))
    response = register(env, same_email)
    assert response.status_code == 202
    # Nothing is created for it.
    assert (count(env, Organization), count(env, User)) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"city_code": "430100"}, "city_code"),  # Changsha: not in Guangdong
        ({"city_code": "440000"}, "city_code"),  # the province itself, not a city
        ({"kind": "bank"}, "kind"),
        ({"legal_name": "   "}, "legal_name"),
        ({"legal_name": "x" * 201}, "legal_name"),
        ({"legal_name": "Evil\r\nCo"}, "legal_name"),
        ({"user": {"email": "not-an-email", "password": PASSWORD}}, "user"),
        ({"user": {"email": "a@b.test", "password": "too short"}}, "user"),
        ({"user": {"email": "long-password@b.test", "password": "x" * 257}}, "user"),
        ({"user": {"email": "same@b.test", "password": "same@b.test "}}, "user"),
        ({"user": {"email": "a@b.test"}}, "user"),
        ({"uscc": None}, "uscc"),
        ({"uscc": 914403001922038216}, "uscc"),
    ],
)
def test_bad_registrations_get_field_messages(env, change, field):
    response = register(env, registration(**change))
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_registration_needs_a_json_body(env):
    response = env.client().post(
        "/api/v1/organizations", data="kind=oem", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415


# --- verification and suspension ----------------------------------------------------------------


def test_an_admin_verifies_a_pending_organization(env, admin):
    org_id = registered(env, registration("oem"))[0].id
    headers = bearer(env, admin)
    response = env.client().post(f"/api/v1/organizations/{org_id}/verify", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "active"
    assert response.get_json()["verified_at"]
    again = env.client().post(f"/api/v1/organizations/{org_id}/verify", headers=headers)
    assert again.status_code == 409
    missing = env.client().post("/api/v1/organizations/999999999/verify", headers=headers)
    assert missing.status_code == 404


def test_a_suspended_users_session_and_tokens_stop_working(env, admin):
    with env.db():
        org = factories.make_org(OrgKind.SUPPLIER)
        user = make_user(org)
        colleague = make_user(org)
        raw = factories.make_token(user)
    browser, response = login(env, user.email)
    assert response.status_code == 200
    token = {"Authorization": f"Bearer {raw}"}
    assert browser.get("/api/v1/auth/me").status_code == 200
    assert env.client().get("/api/v1/auth/me", headers=token).status_code == 200

    admin_headers = bearer(env, admin)
    response = env.client().post(
        f"/api/v1/organizations/{org.id}/suspend",
        json={"reason": "invoice fraud under review"},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "suspended"
    assert browser.get("/api/v1/auth/me").status_code == 401
    assert env.client().get("/api/v1/auth/me", headers=token).status_code == 401
    # Suspended users cannot sign in again (a right password gets a clear 403).
    assert login(env, colleague.email)[1].status_code == 403
    with env.db() as session:
        assert require_suspended(session, org.id)
        tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)).all()
        assert tokens and all(t.revoked_at is not None for t in tokens)
        event = session.scalar(
            select(SecurityEvent)
            .where(SecurityEvent.kind == "org_suspended")
            .order_by(SecurityEvent.id.desc())
        )
        assert event.user_id == admin.id and "invoice fraud" in event.detail

    response = env.client().post(
        f"/api/v1/organizations/{org.id}/reactivate", headers=admin_headers
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "active"
    # Reactivation does not revive what the suspension ended.
    assert browser.get("/api/v1/auth/me").status_code == 401
    assert env.client().get("/api/v1/auth/me", headers=token).status_code == 401
    assert login(env, user.email)[1].status_code == 200
    again = env.client().post(f"/api/v1/organizations/{org.id}/reactivate", headers=admin_headers)
    assert again.status_code == 409


def require_suspended(session: Any, org_id: int) -> bool:
    return session.get(Organization, org_id).status is OrgStatus.SUSPENDED


def test_an_unverified_organization_reactivates_as_pending(env, admin):
    org_id = registered(env, registration())[0].id
    headers = bearer(env, admin)
    c = env.client()
    assert c.post(f"/api/v1/organizations/{org_id}/suspend", headers=headers).status_code == 200
    assert c.post(f"/api/v1/organizations/{org_id}/suspend", headers=headers).status_code == 409
    response = c.post(f"/api/v1/organizations/{org_id}/reactivate", headers=headers)
    assert response.get_json()["status"] == "pending"


def test_supplier_status_changes_resync_search(env, admin):
    with env.db():
        supplier = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
        oem = factories.make_org(OrgKind.OEM, status=OrgStatus.PENDING)
        version = supplier.version
    headers = bearer(env, admin)
    for org in (supplier, oem):
        for action in ("verify", "suspend", "reactivate"):
            response = env.client().post(
                f"/api/v1/organizations/{org.id}/{action}", headers=headers
            )
            assert response.status_code == 200, response.get_json()
    with env.db() as session:
        assert session.get(Organization, supplier.id).version == version + 3

        def syncs(org_id: int) -> int:
            return int(
                session.scalar(
                    select(func.count()).where(
                        OutboxEvent.topic == OutboxTopic.SEARCH_SYNC,
                        OutboxEvent.aggregate_id == org_id,
                    )
                )
            )

        assert syncs(supplier.id) == 3
        # OEMs are not in the supplier search: nothing to re-sync.
        assert syncs(oem.id) == 0


def test_only_active_organizations_may_trade(env):
    with env.db():
        users = {
            status: make_user(factories.make_org(OrgKind.OEM, status=status))
            for status in OrgStatus
        }
        auditor = make_user(role=Role.AUDITOR)
        assert require_active_organization(users[OrgStatus.ACTIVE]).status is OrgStatus.ACTIVE
        for status, message in [
            (OrgStatus.PENDING, "pending verification"),
            (OrgStatus.SUSPENDED, "suspended"),
        ]:
            with pytest.raises(OrganizationNotActive, match=message) as caught:
                require_active_organization(users[status])
            assert caught.value.status == 403
        with pytest.raises(OrganizationNotActive, match="members of an OEM or supplier"):
            require_active_organization(auditor)


# --- reading organizations ----------------------------------------------------------------------


def test_admins_and_auditors_list_organizations_with_filters(env, admin):
    with env.db():
        auditor = make_user(role=Role.AUDITOR)
        pending = [factories.make_org(OrgKind.OEM, status=OrgStatus.PENDING) for _ in range(3)]
    c = env.client()
    response = c.get(
        "/api/v1/organizations?kind=oem&status=pending&per_page=2", headers=bearer(env, auditor)
    )
    assert response.status_code == 200
    page = response.get_json()
    assert page["meta"]["per_page"] == 2 and page["meta"]["total"] >= 3
    assert len(page["items"]) == 2
    assert all(o["kind"] == "oem" and o["status"] == "pending" for o in page["items"])
    ids: set[int] = set()
    for number in range(1, page["meta"]["pages"] + 1):
        more = c.get(
            f"/api/v1/organizations?kind=oem&status=pending&per_page=2&page={number}",
            headers=bearer(env, admin),
        ).get_json()
        ids |= {o["id"] for o in more["items"]}
    assert {o.id for o in pending} <= ids
    for bad in ("kind=bank", "status=deleted", "per_page=0", "per_page=1000", "page=-1"):
        response = c.get(f"/api/v1/organizations?{bad}", headers=bearer(env, admin))
        assert response.status_code == 422, bad


def test_an_organization_is_visible_to_its_members_and_overseers_only(env, admin):
    with env.db():
        org = factories.make_org(OrgKind.OEM)
        member = make_user(org)
        outsider = make_user(factories.make_org(OrgKind.OEM))
        auditor = make_user(role=Role.AUDITOR)
    url = f"/api/v1/organizations/{org.id}"
    for who in (member, auditor, admin):
        response = env.client().get(url, headers=bearer(env, who))
        assert response.status_code == 200
        assert [m["email"] for m in response.get_json()["members"]] == [member.email]
    assert env.client().get(url, headers=bearer(env, outsider)).status_code == 404
    # A missing organization looks exactly like someone else's.
    missing = env.client().get("/api/v1/organizations/999999999", headers=bearer(env, outsider))
    assert missing.status_code == 404


# --- staff accounts by command line -------------------------------------------------------------


def run_cli(env: Env, *args: str, stdin: str | None = None) -> Any:
    return env.app.test_cli_runner().invoke(args=["users", *args], input=stdin)


def test_cli_creates_auditors_and_admins_only(env):
    result = run_cli(env, "authority-create", "广州市财政局", "--city-codes", "440100")
    assert result.exit_code == 0, result.output
    # An auditor belongs to an authority: without one, or with an unknown one, it is refused.
    for extra in ([], ["--authority", "no such authority"]):
        result = run_cli(
            env,
            "create",
            "--email",
            "lost@gov.test",
            "--role",
            "auditor",
            *extra,
            "--password-stdin",
            stdin=f"{PASSWORD}\n",
        )
        assert result.exit_code != 0 and "authority" in result.output
    result = run_cli(
        env,
        "create",
        "--email",
        " Auditor@Gov.TEST",
        "--role",
        "auditor",
        "--authority",
        "广州市财政局",
        "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created auditor auditor@gov.test" in result.output
    _, response = login(env, "auditor@gov.test", PASSWORD)
    assert response.status_code == 200
    assert response.get_json()["user"]["role"] == "auditor"
    assert response.get_json()["user"]["organization_id"] is None
    assert response.get_json()["user"]["authority_id"] is not None

    result = run_cli(
        env,
        "create",
        "--email",
        "b@gov.test",
        "--role",
        "buyer",
        "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )
    assert result.exit_code != 0
    result = run_cli(
        env,
        "create",
        "--email",
        "c@gov.test",
        "--role",
        "admin",
        "--password-stdin",
        stdin="short\n",
    )
    assert result.exit_code != 0 and "password" in result.output
    result = run_cli(
        env,
        "create",
        "--email",
        "AUDITOR@gov.test",
        "--role",
        "admin",
        "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )
    assert result.exit_code != 0 and "already exists" in result.output


def test_cli_lists_sets_roles_and_disables(env):
    with env.db():
        auditor = make_user(role=Role.AUDITOR)
        buyer = make_user(factories.make_org(OrgKind.OEM))
        raw = factories.make_token(auditor)
    browser, response = login(env, auditor.email)
    assert response.status_code == 200
    listed = run_cli(env, "list", "--role", "auditor")
    assert listed.exit_code == 0 and auditor.email in listed.output

    result = run_cli(env, "set-role", auditor.email, "admin")
    assert result.exit_code == 0, result.output
    # A role change ends the sessions started under the old role.
    assert browser.get("/api/v1/auth/me").status_code == 401
    assert run_cli(env, "set-role", buyer.email, "admin").exit_code != 0
    assert run_cli(env, "set-role", "nobody@example.test", "admin").exit_code != 0

    token = {"Authorization": f"Bearer {raw}"}
    assert env.client().get("/api/v1/auth/me", headers=token).get_json()["user"]["role"] == "admin"
    result = run_cli(env, "disable", auditor.email)
    assert result.exit_code == 0, result.output
    assert env.client().get("/api/v1/auth/me", headers=token).status_code == 401
    assert login(env, auditor.email)[1].status_code == 403
    with env.db() as session:
        kinds = set(
            session.scalars(
                select(SecurityEvent.kind).where(SecurityEvent.user_id == auditor.id)
            ).all()
        )
    assert {"role_changed", "user_disabled"} <= kinds
