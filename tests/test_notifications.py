"""The inbox, preferences and email: events from purchases, the ledger and the expiry job reach
each member's inbox and, by email, a real SMTP server on 127.0.0.1 (aiosmtpd) or ``.eml`` files.

Jobs run inline after each commit (the embedded default's way), so an event's inbox rows and
emails exist once the request that caused it has answered.
"""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from market import ledger
from market.clock import business_today
from market.extensions import db
from market.models import (
    EmailDelivery,
    InboxNotification,
    Invitation,
    OrgKind,
    OrgRole,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
)
from market.services.events import EventKind, emit_event
from market.services.unit_of_work import commit, emit
from tests import factories
from tests import test_demands as shared
from tests.test_demands import Market
from tests.test_purchases import purchase_body
from workers.embedded import EmbeddedJobs, embedded_jobs
from workers.outbox import process_outbox_event, sweep_outbox

market = shared.market
nothing_committed = shared.nothing_committed


# --- a real SMTP server ------------------------------------------------------------------------


@dataclass
class Inbox:
    """What the SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Smtp:
    port: int
    received: Inbox
    controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.received, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(app, monkeypatch) -> Iterator[Smtp]:
    """The app sends through an SMTP server on 127.0.0.1 (not started: ``smtp.up()``)."""
    server = Smtp(free_port(), Inbox())
    for key, value in {
        "MAIL_BACKEND": "smtp",
        "MAIL_SMTP_HOST": "127.0.0.1",
        "MAIL_SMTP_PORT": server.port,
        "MAIL_SMTP_STARTTLS": False,
        "MAIL_SMTP_TIMEOUT": 5,
    }.items():
        monkeypatch.setitem(app.config, key, value)
    yield server
    server.down()


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def email_rows(status: OutboxStatus | None = None) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(OutboxEvent.topic == OutboxTopic.EMAIL_SEND)
    if status is not None:
        query = query.where(OutboxEvent.status == status)
    return list(db.session.scalars(query.order_by(OutboxEvent.id)))


def record(client: Any, market: Market, **changes: Any) -> Any:
    return client.post(
        "/api/v1/purchases",
        json=purchase_body(market, **changes),
        headers=market.headers(market.buyer),
    )


# --- email through SMTP ------------------------------------------------------------------------


def test_an_event_is_emailed_to_the_member_in_chinese(client, market, smtp):
    smtp.up()
    response = record(client, market)
    assert response.status_code == 201, response.get_json()
    purchase_id = response.get_json()["id"]
    # The supplier (the other party) is told; the buyer who recorded it is not.
    [message] = smtp.received.to(market.supplier_user.email)
    assert smtp.received.to(market.buyer.email) == []
    assert message["Subject"] == f"采购 #{purchase_id}「44031234-00000001」待您确认"
    body = body_of(message)
    assert market.oem.legal_name in body and "请确认或提出异议" in body
    assert "金额: 12345.67" in body
    delivery = db.session.get(EmailDelivery, email_rows()[0].id)
    assert delivery is not None and delivery.message_id == message["Message-ID"]
    assert delivery.transport == "smtp"


def test_smtp_down_never_fails_the_write_and_the_sweep_delivers_once(
    client, market, smtp, monkeypatch, app
):
    response = record(client, market)  # nothing listens on the port
    assert response.status_code == 201, response.get_json()
    [row] = email_rows()
    assert row.status is OutboxStatus.PENDING and row.attempts == 1
    assert row.last_error  # the SMTP connection failed
    # The purchase and its inbox row are there regardless.
    inbox = db.session.scalars(
        select(InboxNotification).where(InboxNotification.user_id == market.supplier_user.id)
    ).all()
    assert [n.kind for n in inbox] == ["purchase.awaiting_confirmation"]
    smtp.up()
    monkeypatch.setitem(app.config, "OUTBOX_STALE_SECONDS", 0)
    sweep_outbox()
    assert len(smtp.received.to(market.supplier_user.email)) == 1
    db.session.refresh(row)
    assert row.status is OutboxStatus.DONE
    # A second sweep and a duplicate delivery of the job send nothing more.
    sweep_outbox()
    process_outbox_event(row.id)
    assert len(smtp.received.messages) == 1


def test_a_retried_job_does_not_send_again_once_sent(client, market, smtp):
    """The delivery record (sent_at) stops a retry, even of a row put back to pending."""
    smtp.up()
    assert record(client, market).status_code == 201
    [row] = email_rows(OutboxStatus.DONE)
    row.status = OutboxStatus.PENDING  # e.g. an admin's retry of a row already sent
    commit()
    process_outbox_event(row.id)
    assert len(smtp.received.messages) == 1


def test_english_readers_get_english_email(client, market, smtp):
    smtp.up()
    market.supplier_user.locale = "en"
    db.session.flush()
    assert record(client, market).status_code == 201
    [message] = smtp.received.to(market.supplier_user.email)
    assert "awaits your confirmation" in message["Subject"]
    assert "confirm it or dispute it" in body_of(message)


# --- .eml files in the embedded default --------------------------------------------------------


def test_the_embedded_default_writes_eml_files(client, market, app, monkeypatch, tmp_path: Path):
    monkeypatch.setitem(app.config, "NAME", "embedded")  # no SMTP host: the embedded default
    monkeypatch.setitem(app.config, "INSTANCE_DIR", tmp_path)
    assert record(client, market).status_code == 201
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml"]  # no temporary file left behind
    message = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert message["To"] == market.supplier_user.email
    assert "待您确认" in message["Subject"]
    [row] = email_rows(OutboxStatus.DONE)
    delivery = db.session.get(EmailDelivery, row.id)
    assert delivery is not None and delivery.transport == "file"
    assert message["Message-ID"] == delivery.message_id
    assert files[0].name == delivery.message_id.strip("<>").replace("@", "_at_") + ".eml"


# --- the inbox routes --------------------------------------------------------------------------


def announce(market: Market, kind: EventKind, subject_id: int, **data: Any) -> None:
    emit_event(
        kind,
        organization_id=market.supplier.id,
        subject_type="quote",
        subject_id=subject_id,
        data=data,
    )
    commit()


def test_each_user_sees_only_their_own_inbox(client, market):
    colleague = factories.make_user(market.supplier, org_role=OrgRole.MEMBER)
    for n in range(3):
        announce(market, EventKind.QUOTE_AWARDED, n + 1, demand_title=f"Calipers {n}")
    announce(market, EventKind.QUOTE_NOT_AWARDED, 9)
    mine = market.headers(market.supplier_user)
    page = client.get("/api/v1/notifications?per_page=2", headers=mine).get_json()
    assert page["meta"]["total"] == 4 and len(page["items"]) == 2
    assert [i["subject_id"] for i in page["items"]] == [9, 3]  # newest first
    second = client.get("/api/v1/notifications?per_page=2&page=2", headers=mine).get_json()
    assert [i["subject_id"] for i in second["items"]] == [2, 1]
    # Other organisations' people see nothing of it; a colleague has their own copy.
    other = client.get("/api/v1/notifications", headers=market.headers(market.buyer))
    assert other.get_json()["meta"]["total"] == 0
    theirs = client.get("/api/v1/notifications", headers=market.headers(colleague)).get_json()
    assert theirs["meta"]["total"] == 4
    foreign_id = theirs["items"][0]["id"]
    assert client.post(f"/api/v1/notifications/{foreign_id}/read", headers=mine).status_code == 404
    assert (
        client.get("/api/v1/notifications/unread-count", headers=market.headers(colleague))
    ).get_json() == {"unread": 4}


def test_read_state_unread_filter_and_read_all(client, market):
    for n in range(3):
        announce(market, EventKind.QUOTE_AWARDED, n + 1)
    mine = market.headers(market.supplier_user)
    items = client.get("/api/v1/notifications", headers=mine).get_json()["items"]
    marked = client.post(f"/api/v1/notifications/{items[0]['id']}/read", headers=mine)
    assert marked.status_code == 200 and marked.get_json()["read_at"] is not None
    again = client.post(f"/api/v1/notifications/{items[0]['id']}/read", headers=mine)
    assert again.get_json()["read_at"] == marked.get_json()["read_at"]
    assert client.get("/api/v1/notifications/unread-count", headers=mine).get_json() == {
        "unread": 2
    }
    unread = client.get("/api/v1/notifications?unread=true", headers=mine).get_json()
    assert [i["id"] for i in unread["items"]] == [items[1]["id"], items[2]["id"]]
    assert client.post("/api/v1/notifications/read-all", headers=mine).get_json() == {"marked": 2}
    assert client.get("/api/v1/notifications/unread-count", headers=mine).get_json() == {
        "unread": 0
    }
    assert client.post("/api/v1/notifications/99999/read", headers=mine).status_code == 404


def test_titles_follow_accept_language_then_the_users_language(client, market):
    announce(market, EventKind.QUOTE_AWARDED, 5, demand_title="Calipers")
    mine = market.headers(market.supplier_user)

    def first(**headers: str) -> dict[str, Any]:
        response = client.get("/api/v1/notifications", headers=mine | headers)
        return response.get_json()["items"][0]  # type: ignore[no-any-return]

    assert first(**{"Accept-Language": "en"})["title"] == "Quote #5 awarded “Calipers”"
    assert first(**{"Accept-Language": "zh-CN"})["title"] == "报价 #5已中标「Calipers」"
    assert first()["title"].startswith("报价 #5")  # no header: the user's language (zh-CN)


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_kind_renders_in_both_languages(client, market, kind):
    """Even with no data at all (an emitter this module does not know): subject and kind."""
    emit_event(kind, organization_id=market.supplier.id, subject_type="thing", subject_id=7)
    commit()
    mine = market.headers(market.supplier_user)
    for language in ("en", "zh-CN"):
        item = client.get(
            "/api/v1/notifications", headers=mine | {"Accept-Language": language}
        ).get_json()["items"][0]
        assert item["kind"] == kind.value
        assert "#7" in item["title"] and "{" not in item["title"] + item["body"]


# --- preferences -------------------------------------------------------------------------------


def test_preferences_defaults_and_validation(client, market):
    mine = market.headers(market.supplier_user)
    got = client.get("/api/v1/notifications/preferences", headers=mine).get_json()
    assert got["locale"] == "zh-CN"
    by_kind = {k["kind"]: k for k in got["kinds"]}
    assert set(by_kind) == {kind.value for kind in EventKind}
    assert by_kind["purchase.awaiting_confirmation"] == {
        "kind": "purchase.awaiting_confirmation",
        "inbox": True,
        "email": True,
    }
    assert by_kind["quote.revised"]["email"] is False
    bad = client.put(
        "/api/v1/notifications/preferences",
        json={"kinds": [{"kind": "quote.eaten", "email": False}]},
        headers=mine,
    )
    assert bad.status_code == 422
    assert "Must be one of" in bad.get_json()["error"]["fields"]["kinds"]["0"]["kind"][0]
    bad_locale = client.put(
        "/api/v1/notifications/preferences", json={"locale": "fr"}, headers=mine
    )
    assert bad_locale.status_code == 422 and "locale" in bad_locale.get_json()["error"]["fields"]
    empty = client.put("/api/v1/notifications/preferences", json={}, headers=mine)
    assert empty.status_code == 422 and "kinds" in empty.get_json()["error"]["fields"]
    assert client.get("/api/v1/notifications/preferences", headers=mine).get_json() == got


def test_email_off_means_no_email_row_and_inbox_off_no_inbox_row(client, market, smtp):
    smtp.up()
    mine = market.headers(market.supplier_user)
    changed = client.put(
        "/api/v1/notifications/preferences",
        json={
            "locale": "en",
            "kinds": [{"kind": "purchase.awaiting_confirmation", "email": False}],
        },
        headers=mine,
    )
    assert changed.status_code == 200, changed.get_json()
    kinds = {k["kind"]: k for k in changed.get_json()["kinds"]}
    assert kinds["purchase.awaiting_confirmation"] == {
        "kind": "purchase.awaiting_confirmation",
        "inbox": True,
        "email": False,
    }
    assert changed.get_json()["locale"] == "en"
    assert record(client, market).status_code == 201
    assert email_rows() == [] and smtp.received.messages == []
    assert client.get("/api/v1/notifications/unread-count", headers=mine).get_json() == {
        "unread": 1
    }
    client.put(
        "/api/v1/notifications/preferences",
        json={"kinds": [{"kind": "purchase.awaiting_confirmation", "inbox": False}]},
        headers=mine,
    )
    assert record(client, market, invoice_number="44031234-00000002").status_code == 201
    assert client.get("/api/v1/notifications/unread-count", headers=mine).get_json() == {
        "unread": 1
    }


def test_a_redelivered_event_reaches_each_inbox_once(client, market):
    announce(market, EventKind.QUOTE_AWARDED, 1)
    row = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
    ).one()
    row.status = OutboxStatus.PENDING
    commit()
    process_outbox_event(row.id)
    count = select(func.count(InboxNotification.id)).where(
        InboxNotification.user_id == market.supplier_user.id
    )
    assert db.session.scalar(count) == 1


# --- the ledger's verdict ----------------------------------------------------------------------


def test_purchase_recorded_tells_the_supplier_the_verdict_only(client, market):
    ledger.ensure_default_policy()
    purchase = factories.make_purchase(
        market.oem, market.plant, market.supplier, market.site, amount="5000.00"
    )
    emit(OutboxTopic.LEDGER_RECORD, purchase.id)
    commit()  # the ledger drains inline, then the events are dispatched

    def recorded(user: Any) -> InboxNotification:
        return db.session.scalars(
            select(InboxNotification).where(
                InboxNotification.user_id == user.id,
                InboxNotification.kind == "purchase.recorded",
            )
        ).one()

    to_supplier = recorded(market.supplier_user)
    to_oem = recorded(market.buyer)
    assert to_supplier.subject_id == to_oem.subject_id == purchase.id
    assert set(to_supplier.data) == {
        "purchase_id",
        "invoice_number",
        "near_shore",
        "reason",
        "distance_km",
    }
    assert to_supplier.data["near_shore"] is True
    assert {"increment", "subsidy", "amount"} <= set(to_oem.data)
    text = client.get(
        "/api/v1/notifications",
        headers=market.headers(market.supplier_user) | {"Accept-Language": "en"},
    ).get_data(as_text=True)
    assert "subsid" not in text.lower() and "increment" not in text.lower()
    assert "near-shore" in text


# --- invitations by email ----------------------------------------------------------------------


def test_an_invitation_is_emailed_to_the_invitee_and_works(client, market, smtp, app):
    smtp.up()
    response = client.post(
        f"/api/v1/organizations/{market.supplier.id}/invitations",
        json={"email": "new.colleague@example.test", "org_role": "member"},
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["emailed"] is True and body["link"] is None and body["token"] is None
    [message] = smtp.received.to("new.colleague@example.test")
    assert market.supplier.legal_name in message["Subject"]
    text = body_of(message)
    token = text.split("#token=")[1].split()[0]
    assert token.startswith("sci_")
    # The raw link is no longer in the outbox row once sent.
    [row] = email_rows(OutboxStatus.DONE)
    assert token not in str(row.payload)
    accepted = client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "password": "a long and unusual passphrase 42"},
    )
    assert accepted.status_code == 201, accepted.get_json()
    invitation = db.session.scalars(
        select(Invitation).where(Invitation.email == "new.colleague@example.test")
    ).one()
    assert invitation.accepted_at is not None


def test_without_email_the_admin_still_gets_the_link(client, market):
    response = client.post(
        f"/api/v1/organizations/{market.supplier.id}/invitations",
        json={"email": "someone@example.test", "org_role": "member"},
        headers=market.headers(market.supplier_user),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["emailed"] is False and "#token=sci_" in body["link"]
    assert email_rows() == []


# --- the embedded default's periodic jobs ------------------------------------------------------


def test_the_embedded_runner_runs_the_expiry_job_without_redis(app, db_session):
    assert app.config["JOB_MODE"] == "inline" and not app.config.get("REDIS_URL")
    supplier = factories.make_org(OrgKind.SUPPLIER)
    member = factories.make_user(supplier)
    factories.make_certification(supplier, valid_until=business_today() + timedelta(days=20))
    db.session.commit()
    runner = EmbeddedJobs(app, embedded_jobs(app))
    names = [
        "sweep_outbox",
        "warn_expiring_certifications",
        "issue_checkpoint_job",
        "refresh_performance_job",
    ]
    assert runner.run_due(0.0) == names  # all due at start
    [note] = db.session.scalars(
        select(InboxNotification).where(InboxNotification.user_id == member.id)
    ).all()
    assert note.kind == "certification.expiring" and note.data["days_left"] == 20
    assert runner.run_due(1.0) == []
    assert runner.run_due(60.0) == ["sweep_outbox"]
    day = float(app.config["EMBEDDED_CERTIFICATIONS_EVERY_SECONDS"])
    assert {"warn_expiring_certifications", "refresh_performance_job"} <= set(runner.run_due(day))
    # Idempotent: the second daily run announced nothing new.
    assert (
        db.session.scalar(
            select(func.count(InboxNotification.id)).where(InboxNotification.user_id == member.id)
        )
        == 1
    )
