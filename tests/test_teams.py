"""Organisations as teams: org admins, invitations, role changes, removal, the audit log."""

# ruff: noqa: F811  (tests take the imported ``env`` fixture as an argument)

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.models import AuditLogEntry, Invitation, OrgKind, OrgRole, OrgStatus, Role, User
from tests import factories
from tests.isolation import Env, env, make_user  # noqa: F401  (env: the fixture)

PASSWORD = factories.PASSWORD
NEW_MEMBER_PASSWORD = "violet lantern harbour 42"
_addresses = itertools.count(1)


def _address() -> str:
    n = next(_addresses)
    return f"198.51.{n // 250 % 250}.{n % 250 + 1}"


class Team:
    """An OEM with its org admin and a plain member, each with an API token."""

    def __init__(self, env: Env) -> None:
        self.env = env
        with env.db():
            self.org = factories.make_org(OrgKind.OEM, legal_name="佛山示例汽车有限公司")
            self.admin = make_user(self.org)
            self.member = make_user(self.org, org_role=OrgRole.MEMBER)
            self.admin_headers = factories.auth(self.admin)
            self.member_headers = factories.auth(self.member)
        self.client: FlaskClient = env.client()
        self.url = f"/api/v1/organizations/{self.org.id}"

    def invite(self, email: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
        return self.client.post(
            self.url + "/invitations",
            json={"email": email, **body},
            headers=headers or self.admin_headers,
        )


@pytest.fixture
def team(env: Env) -> Team:
    return Team(env)


def accept(client: FlaskClient, token: str, password: str = NEW_MEMBER_PASSWORD) -> Any:
    return client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "password": password, "display_name": "李娜"},
        environ_base={"REMOTE_ADDR": _address()},
    )


def login(client: FlaskClient, email: str, password: str) -> Any:
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": _address()},
    )


def audit_actions(env: Env, organization_id: int) -> list[str]:
    with env.db() as session:
        return list(
            session.scalars(
                select(AuditLogEntry.action)
                .where(AuditLogEntry.organization_id == organization_id)
                .order_by(AuditLogEntry.id)
            )
        )


# --- invitations --------------------------------------------------------------------------------


def test_an_invitation_link_creates_a_member_once(env, team):
    response = team.invite(" Li.Na@Example.TEST ")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["email"] == "li.na@example.test"
    assert created["org_role"] == "member" and created["state"] == "pending"
    token = created["token"]
    # The link carries the token in its fragment (never sent to a server, never logged).
    assert created["link"].endswith(f"#token={token}")
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    with env.db() as session:
        row = session.get(Invitation, created["id"])
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str(row.__dict__)

    response = accept(env.client(), token)
    assert response.status_code == 201, response.get_json()
    user = response.get_json()
    assert user["organization_id"] == team.org.id
    assert user["role"] == "buyer" and user["org_role"] == "member"
    assert user["email"] == "li.na@example.test"
    assert login(env.client(), "li.na@example.test", NEW_MEMBER_PASSWORD).status_code == 200
    # Single use.
    again = accept(env.client(), token, "another strong passphrase 7")
    assert again.status_code == 404
    assert again.get_json()["error"]["code"] == "invitation_invalid"
    listed = team.client.get(team.url + "/invitations", headers=team.admin_headers).get_json()
    assert listed["items"][0]["state"] == "accepted" and "token" not in listed["items"][0]
    assert audit_actions(env, team.org.id)[-2:] == ["invitation.created", "invitation.accepted"]


def test_expired_revoked_and_unknown_links_get_one_answer(env, team):
    expired = team.invite("late@example.test").get_json()
    revoked = team.invite("revoked@example.test").get_json()
    with env.db() as session:
        session.get(Invitation, expired["id"]).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    url = team.url + f"/invitations/{revoked['id']}"
    assert team.client.delete(url, headers=team.admin_headers).status_code == 204
    assert team.client.delete(url, headers=team.admin_headers).status_code == 204  # harmless
    answers = [
        accept(env.client(), token).get_json()["error"]
        for token in (expired["token"], revoked["token"], "sci_never-issued")
    ]
    assert {(a["status"], a["code"], a["message"]) for a in answers} == {
        (404, "invitation_invalid", answers[0]["message"])
    }


def test_accepting_checks_the_password_and_the_address(env, team):
    token = team.invite("wang.fang@example.test").get_json()["token"]
    for weak, why in (
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("wang.fang.2027.spring", "email"),
        ("佛山示例汽车有限公司 password", "organisation"),
    ):
        response = accept(env.client(), token, weak)
        assert response.status_code == 422, weak
        assert any(why in m for m in response.get_json()["error"]["fields"]["password"])
    with env.db() as session:
        assert session.scalar(select(User.id).where(User.email == "wang.fang@example.test")) is None
    # An address that already has an account cannot take a second one.
    taken = team.invite(team_outsider_email(env)).get_json()["token"]
    response = accept(env.client(), taken)
    assert response.status_code == 409
    assert "email" in response.get_json()["error"]["fields"]


def team_outsider_email(env: Env) -> str:
    with env.db():
        return make_user(factories.make_org(OrgKind.SUPPLIER)).email


def test_only_org_admins_invite_and_the_same_address_is_not_invited_twice(env, team):
    response = team.invite("colleague@example.test", team.member_headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "org_admin_required"
    assert team.invite("colleague@example.test").status_code == 201
    response = team.invite("colleague@example.test")
    assert response.status_code == 409 and "email" in response.get_json()["error"]["fields"]
    response = team.invite(team.member.email)
    assert response.status_code == 409  # already a member
    for body in ({"email": "x@example.test", "org_role": "owner"}, {"email": "not an address"}):
        response = team.client.post(
            team.url + "/invitations", json=body, headers=team.admin_headers
        )
        assert response.status_code == 422
    # Someone else's organisation does not exist for an org admin.
    with env.db():
        other = factories.make_org(OrgKind.OEM)
    response = team.client.post(
        f"/api/v1/organizations/{other.id}/invitations",
        json={"email": "x@example.test"},
        headers=team.admin_headers,
    )
    assert response.status_code == 404


def test_an_invited_admin_can_administer(env, team):
    token = team.invite("deputy@example.test", org_role="admin").get_json()["token"]
    assert accept(env.client(), token).get_json()["org_role"] == "admin"


# --- roles and removal --------------------------------------------------------------------------


def test_org_admins_change_roles_but_the_last_admin_stays(env, team):
    url = team.url + f"/members/{team.member.id}"
    response = team.client.patch(url, json={"org_role": "admin"}, headers=team.member_headers)
    assert response.status_code == 403
    response = team.client.patch(url, json={"org_role": "admin"}, headers=team.admin_headers)
    assert response.status_code == 200 and response.get_json()["org_role"] == "admin"
    # Two admins: one may step down...
    own = team.url + f"/members/{team.admin.id}"
    response = team.client.patch(own, json={"org_role": "member"}, headers=team.admin_headers)
    assert response.status_code == 200
    # ...but then the other is the last one.
    response = team.client.patch(url, json={"org_role": "member"}, headers=team.member_headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "last_org_admin"
    response = team.client.delete(url, headers=team.member_headers)  # leaving
    assert response.status_code == 409
    assert "last org admin" in response.get_json()["error"]["message"]
    assert audit_actions(env, team.org.id).count("member.role_changed") == 2


def test_a_removed_members_sessions_and_tokens_end_at_once(env, team):
    browser = env.client()
    assert login(browser, team.member.email, PASSWORD).status_code == 200
    assert browser.get("/api/v1/auth/me").status_code == 200
    url = team.url + f"/members/{team.member.id}"
    assert team.client.delete(url, headers=team.admin_headers).status_code == 204
    assert browser.get("/api/v1/auth/me").status_code == 401
    assert env.client().get("/api/v1/auth/me", headers=team.member_headers).status_code == 401
    assert login(env.client(), team.member.email, PASSWORD).status_code == 403
    members = team.client.get(team.url + "/members", headers=team.admin_headers).get_json()
    assert [m["id"] for m in members["items"]] == [team.admin.id]
    detail = team.client.get(team.url, headers=team.admin_headers).get_json()
    assert [m["id"] for m in detail["members"]] == [team.admin.id]
    assert team.client.delete(url, headers=team.admin_headers).status_code == 404
    assert audit_actions(env, team.org.id)[-1] == "member.removed"


def test_a_member_may_leave_but_not_remove_others(env, team):
    with env.db():
        colleague = make_user(team.org, org_role=OrgRole.MEMBER)
    other = team.url + f"/members/{colleague.id}"
    response = team.client.delete(other, headers=team.member_headers)
    assert response.status_code == 403
    own = team.url + f"/members/{team.member.id}"
    assert team.client.delete(own, headers=team.member_headers).status_code == 204
    assert audit_actions(env, team.org.id)[-1] == "member.left"


def test_members_see_their_colleagues_outsiders_do_not(env, team):
    listed = team.client.get(team.url + "/members", headers=team.member_headers)
    assert listed.status_code == 200
    assert {m["id"] for m in listed.get_json()["items"]} == {team.admin.id, team.member.id}
    with env.db():
        outsider = factories.auth(make_user(factories.make_org(OrgKind.OEM)))
        auditor = factories.auth(make_user(role=Role.AUDITOR))
    assert team.client.get(team.url + "/members", headers=outsider).status_code == 403
    assert team.client.get(team.url + "/members", headers=auditor).status_code == 403


def test_a_pending_organisation_builds_its_team(env):
    with env.db():
        org = factories.make_org(OrgKind.SUPPLIER, status=OrgStatus.PENDING)
        headers = factories.auth(make_user(org))
    response = env.client().post(
        f"/api/v1/organizations/{org.id}/invitations",
        json={"email": "early@example.test"},
        headers=headers,
    )
    assert response.status_code == 201


# --- the audit log ------------------------------------------------------------------------------


def test_the_audit_log_shows_who_did_what_from_where(env, team):
    team.client.post(
        team.url + "/invitations",
        json={"email": "audited@example.test"},
        headers=team.admin_headers,
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    with env.db():
        other_team = Team(env)
    other_team.invite("elsewhere@example.test")
    response = team.client.get("/api/v1/audit-log", headers=team.admin_headers)
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert {item["organization_id"] for item in items} == {team.org.id}
    newest = items[0]
    assert newest["action"] == "invitation.created"
    assert newest["actor_id"] == team.admin.id and newest["ip"] == "192.0.2.44"
    assert newest["details"] == {"email": "audited@example.test", "org_role": "member"}
    assert newest["created_at"].endswith("+00:00")
    # Another organisation's log is not theirs to read.
    response = team.client.get(
        f"/api/v1/audit-log?organization_id={other_team.org.id}", headers=team.admin_headers
    )
    assert response.status_code == 403
    with env.db():
        admin = factories.auth(make_user(role=Role.ADMIN))
        auditor = factories.auth(make_user(role=Role.AUDITOR))
    everything = team.client.get("/api/v1/audit-log?action=invitation.created", headers=admin)
    assert {i["organization_id"] for i in everything.get_json()["items"]} >= {
        team.org.id,
        other_team.org.id,
    }
    assert team.client.get("/api/v1/audit-log", headers=auditor).status_code == 403
    assert team.client.get("/api/v1/audit-log", headers=team.member_headers).status_code == 403


def test_token_actions_are_audited(env, team):
    browser = env.client()
    csrf = login(browser, team.admin.email, PASSWORD).get_json()["csrf_token"]
    created = browser.post(
        "/api/v1/auth/tokens",
        json={"name": "erp", "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    ).get_json()
    browser.delete(f"/api/v1/auth/tokens/{created['id']}", headers={"X-CSRF-Token": csrf})
    assert audit_actions(env, team.org.id)[-2:] == ["token.created", "token.revoked"]


# --- the migration ------------------------------------------------------------------------------


def test_the_migration_makes_each_organisations_users_its_org_admins(tmp_path):
    """Before teams an organisation had one user: after 0010 it is the org admin; staff have
    no org role; tokens that never expired get the new 90-day lifetime."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from market.extensions import db
    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'before-teams.db'}")
    with app.app_context():
        upgrade(revision="0008_ledger_totals")
        now = "2026-01-01 00:00:00"
        db.session.execute(
            text(
                "INSERT INTO organizations (id, kind, uscc, legal_name, city_code, status, "
                "specialized, listed, version, created_at, updated_at) VALUES "
                "(1, 'oem', :uscc, '旧公司', '440100', 'active', 0, 1, 1, :now, :now)"
            ),
            {"uscc": factories.fictional_uscc(), "now": now},
        )
        for user_id, role, org in ((1, "buyer", 1), (2, "auditor", None)):
            db.session.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role, organization_id, "
                    "session_token, disabled, created_at, password_changed_at) VALUES "
                    "(:id, :email, 'x', :role, :org, :token, 0, :now, :now)"
                ),
                {
                    "id": user_id,
                    "email": f"old{user_id}@example.test",
                    "role": role,
                    "org": org,
                    "token": f"token-{user_id}",
                    "now": now,
                },
            )
        db.session.execute(
            text(
                "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) "
                "VALUES (1, 'old', :hash, 'sct_old', :now)"
            ),
            {"hash": "0" * 64, "now": now},
        )
        db.session.commit()
        upgrade(revision="0010_teams")
        roles = dict(db.session.execute(text("SELECT id, org_role FROM users")).all())
        assert roles == {1: "admin", 2: None}
        expires = db.session.scalar(text("SELECT expires_at FROM api_tokens"))
        assert expires is not None
        db.session.remove()
        db.engine.dispose()
