"""Webhooks against a real HTTP receiver on 127.0.0.1: signatures checked with the
``standardwebhooks`` verifier, retries, bounded answers, disabling, redelivery, rotation, and
the production profile's SSRF refusals."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from market.clock import utcnow
from market.extensions import db
from market.models import (
    DeliveryStatus,
    OrgKind,
    OrgRole,
    OutboxEvent,
    OutboxTopic,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from market.services import webhooks
from market.services.events import EventKind, emit_event, event_of
from market.services.unit_of_work import commit
from market.services.webhook_urls import is_forbidden
from tests import factories
from tests.timing import scaled
from tests.webhook_receiver import HUGE_BODY_BYTES, Receiver, free_port, self_signed
from workers.outbox import sweep_outbox

API = "/api/v1/webhooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def admin(db_session: Any) -> User:
    return factories.make_user(factories.make_org(kind=OrgKind.OEM))


@pytest.fixture
def fast_retries(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries due at once, so a sweep takes them (the schedule itself is tested apart)."""
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_BASE_SECONDS", 0)


@pytest.fixture
def production(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
    monkeypatch.setitem(app.config, "WEBHOOK_REQUIRE_HTTPS", True)


def register(
    client: FlaskClient, user: User, url: str, topics: list[str] | None = None
) -> dict[str, Any]:
    response = client.post(
        f"{API}/endpoints",
        json={"url": url, "topics": topics or ["*"]},
        headers=factories.auth(user),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def announce(organization_id: int, kind: EventKind = EventKind.QUOTE_RECEIVED) -> int:
    """A business write that emits an event; returns the event's id."""
    emit_event(
        kind,
        organization_id=organization_id,
        subject_type="quote",
        subject_id=41,
        data={"amount": "1250.00"},
    )
    commit()  # inline jobs: dispatched, and the first attempt made, right after the commit
    return int(
        db.session.scalars(
            select(OutboxEvent.id)
            .where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
            .order_by(OutboxEvent.id.desc())
        ).first()
        or 0
    )


def deliveries(endpoint_id: int) -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
        )
    )


def retry_due() -> None:
    sweep_outbox()


def headers_of(received: Any) -> dict[str, str]:
    return {
        k: received.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }


# --- delivery and signatures -----------------------------------------------------------------


def test_a_message_is_signed_and_verifies_with_the_standardwebhooks_library(
    client, admin, receiver
):
    created = register(client, admin, receiver.url)
    assert created["secret"].startswith("whsec_")
    event_id = announce(admin.organization_id)
    assert len(receiver.received) == 1
    message = receiver.received[0]
    payload = Webhook(created["secret"]).verify(message.body, headers_of(message))
    assert payload["type"] == "quote.received"
    assert payload["data"]["event_id"] == event_id
    assert payload["data"]["amount"] == "1250.00"
    assert (payload["data"]["subject_type"], payload["data"]["subject_id"]) == ("quote", 41)
    assert message.headers["webhook-id"] == f"evt_{event_id}"
    assert message.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(message.body, headers_of(message))
    # The log, readable by a plain member; the secret is never shown again.
    member = factories.make_user(admin.organization, org_role=OrgRole.MEMBER)
    log = client.get(
        f"{API}/endpoints/{created['id']}/deliveries", headers=factories.auth(member)
    ).get_json()
    (delivery,) = log["items"]
    assert delivery["status"] == "delivered" and delivery["event_id"] == event_id
    (attempt,) = delivery["attempt_log"]
    assert attempt["succeeded"] and attempt["status_code"] == 200
    assert attempt["response_excerpt"] == "thanks"
    shown = client.get(f"{API}/endpoints/{created['id']}", headers=factories.auth(member))
    assert "secret" not in shown.get_json() and created["secret"] not in shown.get_data(True)


def test_the_secret_is_sealed_at_rest(client, admin, receiver):
    created = register(client, admin, receiver.url)
    endpoint = db.session.get(WebhookEndpoint, created["id"])
    assert created["secret"] not in endpoint.secret_sealed
    assert webhooks.unseal(endpoint.secret_sealed) == created["secret"]


def test_only_subscribed_enabled_endpoints_of_the_organisation_get_the_event(
    client, admin, receiver
):
    other = factories.make_user(factories.make_org(kind=OrgKind.OEM))
    register(client, admin, receiver.url, ["quote.awarded"])
    register(client, other, receiver.url, ["*"])
    paused = register(client, admin, receiver.url, ["*"])
    client.patch(
        f"{API}/endpoints/{paused['id']}", json={"enabled": False}, headers=factories.auth(admin)
    )
    announce(admin.organization_id, EventKind.QUOTE_RECEIVED)
    assert receiver.received == []
    announce(admin.organization_id, EventKind.QUOTE_AWARDED)
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["quote.awarded"]


def test_the_sink_writes_one_delivery_per_endpoint_and_event(client, admin, receiver):
    created = register(client, admin, receiver.url)
    event_id = announce(admin.organization_id)
    row = db.session.get(OutboxEvent, event_id)
    event = event_of(row.id, row.aggregate_id, row.payload)
    assert webhooks.create_deliveries(event) == 0  # a second dispatch of the same event
    commit()
    assert len(deliveries(created["id"])) == 1
    assert len(receiver.received) == 1


# --- faults of the receiver -------------------------------------------------------------------


def test_a_down_receiver_fails_no_write_and_gets_the_message_once_when_back(
    client, admin, fast_retries
):
    down = Receiver(port=free_port())
    created = register(client, admin, down.url)
    supplier = factories.make_org(kind=OrgKind.SUPPLIER)  # the business row of the write
    announce(admin.organization_id)
    assert db.session.get(type(supplier), supplier.id) is not None
    (delivery,) = deliveries(created["id"])
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_status_code is None and "Connection" in (delivery.last_error or "")
    assert delivery.next_attempt_at is not None
    down.start()
    try:
        retry_due()
        retry_due()  # nothing left to do: no second copy
        (delivery,) = deliveries(created["id"])
        assert delivery.status is DeliveryStatus.DELIVERED
        assert len(down.received) == 1
        assert [a.succeeded for a in delivery.attempt_log] == [False, True]
    finally:
        down.stop()


def test_a_500_is_retried_with_the_same_message_id(client, admin, receiver, fast_retries):
    receiver.behaviour = "500"
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.PENDING, 500)
    receiver.behaviour = "ok"
    retry_due()
    (delivery,) = deliveries(created["id"])
    assert delivery.status is DeliveryStatus.DELIVERED
    assert len(set(receiver.ids())) == 1 and len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body


def test_a_receiver_slower_than_the_timeout_is_a_logged_failure(
    app, client, admin, receiver, monkeypatch
):
    monkeypatch.setitem(app.config, "WEBHOOK_READ_TIMEOUT", 0.5)
    receiver.behaviour, receiver.slow_seconds = "slow", 3.0
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    (attempt,) = delivery.attempt_log
    assert not attempt.succeeded and "Timeout" in (attempt.error or "")
    assert 400 <= attempt.duration_ms < 3000
    assert delivery.status is DeliveryStatus.PENDING


def test_a_redirect_is_not_followed(client, admin, receiver):
    receiver.behaviour = "302"
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code == 302
    assert "redirects are not followed" in (delivery.last_error or "")
    assert len(receiver.received) == 1


def test_a_huge_answer_is_read_no_further_than_4_kb(client, admin, receiver):
    receiver.behaviour = "huge"
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    (attempt,) = delivery.attempt_log
    assert delivery.status is DeliveryStatus.DELIVERED
    assert len(attempt.response_excerpt or "") == webhooks.EXCERPT_BYTES
    assert receiver.huge_done.wait(scaled(10))
    assert receiver.huge_bytes_sent < HUGE_BODY_BYTES  # we hung up; the rest was never sent


def test_repeated_failures_disable_the_endpoint_and_tell_the_organisation(
    app, client, admin, receiver, fast_retries, monkeypatch
):
    monkeypatch.setitem(app.config, "WEBHOOK_DISABLE_AFTER_FAILURES", 3)
    watcher = Receiver().start()
    try:
        register(client, admin, watcher.url, ["webhook.endpoint_disabled"])
        receiver.behaviour = "500"
        created = register(client, admin, receiver.url, ["quote.received"])
        announce(admin.organization_id)
        retry_due()
        retry_due()
        endpoint = db.session.get(WebhookEndpoint, created["id"])
        assert not endpoint.enabled and "3 failed attempts" in (endpoint.disabled_reason or "")
        (delivery,) = deliveries(created["id"])
        assert delivery.status is DeliveryStatus.FAILED and len(delivery.attempt_log) == 3
        (notice,) = watcher.received
        payload = json.loads(notice.body)
        assert payload["type"] == "webhook.endpoint_disabled"
        assert payload["data"]["subject_id"] == created["id"]
        # Nothing more is sent to it; re-enabling resends what failed, once.
        announce(admin.organization_id)
        assert len(receiver.received) == 3
        receiver.behaviour = "ok"
        enabled = client.post(
            f"{API}/endpoints/{created['id']}/enable", headers=factories.auth(admin)
        )
        assert enabled.status_code == 200 and enabled.get_json()["enabled"] is True
        assert [d.status for d in deliveries(created["id"])] == [DeliveryStatus.DELIVERED]
        assert len(receiver.received) == 4
    finally:
        watcher.stop()


def test_the_retry_schedule_is_exponential_and_capped(app):
    with app.app_context():
        delays = [webhooks.retry_delay(n) for n in range(1, 9)]
    assert delays[:4] == [30, 90, 270, 810]
    assert max(delays) == app.config["WEBHOOK_RETRY_MAX_SECONDS"]


def test_a_retry_waits_for_its_due_time(client, admin, receiver):
    receiver.behaviour = "500"
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    receiver.behaviour = "ok"
    retry_due()  # due in 30 s: not yet
    (delivery,) = deliveries(created["id"])
    assert delivery.status is DeliveryStatus.PENDING and len(receiver.received) == 1
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=20)


# --- redelivery, rotation ---------------------------------------------------------------------


def test_redelivery_sends_the_same_message_again(client, admin, receiver):
    created = register(client, admin, receiver.url)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    member = factories.make_user(admin.organization, org_role=OrgRole.MEMBER)
    refused = client.post(
        f"{API}/deliveries/{delivery.id}/redeliver", headers=factories.auth(member)
    )
    assert refused.status_code == 403
    again = client.post(f"{API}/deliveries/{delivery.id}/redeliver", headers=factories.auth(admin))
    assert again.status_code == 202
    assert len(receiver.received) == 2
    assert receiver.ids()[0] == receiver.ids()[1]
    assert receiver.received[0].body == receiver.received[1].body
    Webhook(created["secret"]).verify(receiver.received[1].body, headers_of(receiver.received[1]))


def test_after_rotation_both_secrets_verify_until_the_grace_ends(client, admin, receiver):
    created = register(client, admin, receiver.url)
    rotated = client.post(
        f"{API}/endpoints/{created['id']}/rotate-secret", headers=factories.auth(admin)
    ).get_json()
    old, new = created["secret"], rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"]
    announce(admin.organization_id)
    message = receiver.received[-1]
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(message.body, headers_of(message))
    Webhook(new).verify(message.body, headers_of(message))
    endpoint = db.session.get(WebhookEndpoint, created["id"])
    endpoint.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    commit()
    announce(admin.organization_id)
    message = receiver.received[-1]
    Webhook(new).verify(message.body, headers_of(message))
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(message.body, headers_of(message))


def test_https_goes_to_the_checked_address_with_the_host_name_verified(
    app, client, admin, monkeypatch, tmp_path
):
    """The connection is pinned to the resolved address, yet TLS checks the URL's host name:
    a certificate for that name passes, one for another name fails."""
    good = self_signed(tmp_path, "localhost")
    other = self_signed(tmp_path, "elsewhere.test")
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(good[0]).read_text() + Path(other[0]).read_text())
    monkeypatch.setitem(app.config, "WEBHOOK_CA_BUNDLE", str(bundle))
    monkeypatch.setitem(app.config, "WEBHOOK_REQUIRE_HTTPS", True)
    right, wrong = Receiver(tls=good).start(), Receiver(tls=other).start()
    try:
        ok = register(client, admin, right.https_url("localhost"))
        bad = register(client, admin, wrong.https_url("localhost"))
        announce(admin.organization_id)
        assert deliveries(ok["id"])[0].status is DeliveryStatus.DELIVERED
        Webhook(ok["secret"]).verify(right.received[0].body, headers_of(right.received[0]))
        (failed,) = deliveries(bad["id"])
        assert failed.status is DeliveryStatus.PENDING and "SSL" in (failed.last_error or "")
        assert wrong.received == []
    finally:
        right.stop()
        wrong.stop()


# --- URLs and SSRF ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://100.64.0.1/hook",
        "https://localhost/hook",
        "https://2130706433/hook",
    ],
)
def test_production_refuses_internal_addresses(client, admin, production, url):
    response = client.post(
        f"{API}/endpoints", json={"url": url, "topics": ["*"]}, headers=factories.auth(admin)
    )
    assert response.status_code == 422, url
    assert "url" in response.get_json()["error"]["fields"]
    assert db.session.scalar(select(WebhookEndpoint.id)) is None


@pytest.mark.parametrize(
    ("url", "production_only"),
    [
        ("ftp://example.com/hook", False),
        ("https://user:pass@example.com/hook", False),
        ("https://example.com/" + "a" * 10_000, False),
        ("https:///nohost", False),
        ("https://example.com/a b", False),
        ("https://example.com:99999/", False),
        ("javascript:alert(1)", False),
        ("https://exa\u202emple.com/hook", False),
        ("https://例子.测试/hook", False),
        ("http://93.184.215.14/hook", True),
    ],
)
def test_bad_urls_are_422_on_url(client, admin, app, monkeypatch, url, production_only):
    if production_only:
        monkeypatch.setitem(app.config, "WEBHOOK_REQUIRE_HTTPS", True)
    response = client.post(
        f"{API}/endpoints", json={"url": url, "topics": ["*"]}, headers=factories.auth(admin)
    )
    assert response.status_code == 422, url
    assert "url" in response.get_json()["error"]["fields"]


def test_production_accepts_a_public_https_address(client, admin, production):
    created = register(client, admin, "https://93.184.215.14/hook")
    assert created["url"] == "https://93.184.215.14/hook"


def test_delivery_checks_the_address_again(app, client, admin, receiver, monkeypatch):
    """A host that was fine when saved but points inward at delivery (DNS rebinding) is
    refused, and nothing reaches the internal receiver."""
    created = register(client, admin, receiver.url)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
    announce(admin.organization_id)
    (delivery,) = deliveries(created["id"])
    assert delivery.status is DeliveryStatus.PENDING
    assert (delivery.last_error or "").startswith("Refused:")
    assert receiver.received == []


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("172.16.5.4", True),
        ("::", True),
        ("fc00::1", True),
        ("2002:7f00:0001::1", True),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("ff02::1", True),
        ("240.0.0.1", True),
    ],
)
def test_forbidden_addresses(address, forbidden):
    assert is_forbidden(ipaddress.ip_address(address)) is forbidden


# --- who may ----------------------------------------------------------------------------------


def test_members_read_and_org_admins_manage(client, admin, receiver):
    member = factories.make_user(admin.organization, org_role=OrgRole.MEMBER)
    created = register(client, admin, receiver.url)
    as_member = factories.auth(member)
    assert client.get(f"{API}/endpoints", headers=as_member).get_json()["meta"]["total"] == 1
    body = {"url": receiver.url, "topics": ["*"]}
    assert client.post(f"{API}/endpoints", json=body, headers=as_member).status_code == 403
    path = f"{API}/endpoints/{created['id']}"
    assert client.patch(path, json={"topics": ["*"]}, headers=as_member).status_code == 403
    assert client.delete(path, headers=as_member).status_code == 403
    stranger = factories.make_user(factories.make_org(kind=OrgKind.OEM))
    assert client.get(path, headers=factories.auth(stranger)).status_code == 404
    assert client.delete(path, headers=factories.auth(admin)).status_code == 204
    assert client.get(path, headers=as_member).status_code == 404


def test_unknown_topics_and_fields_are_422(client, admin, receiver):
    response = client.post(
        f"{API}/endpoints",
        json={"url": receiver.url, "topics": ["quote.received", "nope"]},
        headers=factories.auth(admin),
    )
    assert response.status_code == 422 and "topics" in response.get_json()["error"]["fields"]
    response = client.post(
        f"{API}/endpoints",
        json={"url": receiver.url, "topics": ["*"], "secret": "whsec_mine"},
        headers=factories.auth(admin),
    )
    assert response.status_code == 422 and "secret" in response.get_json()["error"]["fields"]


def test_url_messages_are_translated(client, admin):
    response = client.post(
        f"{API}/endpoints",
        json={"url": "ftp://example.com/", "topics": ["*"]},
        headers=factories.auth(admin) | {"Accept-Language": "zh-CN"},
    )
    assert response.get_json()["error"]["fields"]["url"] == ["必须是 http 或 https URL。"]


def test_ids_beyond_the_range_are_404(client, admin):
    headers = factories.auth(admin)
    assert client.get(f"{API}/endpoints/{2**40}", headers=headers).status_code == 404
    assert client.post(f"{API}/deliveries/{2**40}/redeliver", headers=headers).status_code == 404
