"""Webhook receivers that fail: down, answering 500, redirecting, slower than the timeout.

Real RQ worker and scheduler processes (the production profile, with http and 127.0.0.1
allowed for the receivers and a seconds-long retry schedule) deliver events committed by the
test to four real HTTP receivers on 127.0.0.1. Every event is committed whatever the receivers
do. Then the receivers recover, and the invariant is checked: every event reaches every
subscribed endpoint — delivered at least once, exactly once by ``webhook-id`` (what a
receiver deduplicates by), every copy signed and verifying with the ``standardwebhooks``
library, ``data.event_id`` the sequence number a receiver orders by — and every delivery row
ends ``delivered`` with exactly one successful attempt; no outbox row is dead. Time to converge:
from the receivers' recovery to the last delivery.
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from market.models import (
    DeliveryStatus,
    OutboxEvent,
    OutboxStatus,
    WebhookAttempt,
    WebhookDelivery,
)
from market.services.events import EventKind, emit_event
from market.services.unit_of_work import commit
from tests.faults.harness import build_world
from tests.faults.toolkit import wait_until
from tests.webhook_receiver import Receiver, free_port

pytestmark = [pytest.mark.faults, pytest.mark.redis]

EVENTS = 5
CONVERGE_WITHIN = 120.0  # RQ forks a work-horse per attempt: ~0.5 s each here
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "1",
    "WEBHOOK_REQUIRE_HTTPS": "0",
    "WEBHOOK_READ_TIMEOUT": "1",
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
    "WEBHOOK_RETRY_FACTOR": "2",
    "WEBHOOK_RETRY_MAX_SECONDS": "4",
    "WEBHOOK_DISABLE_AFTER_FAILURES": "50",
}


def _verified_ids(receiver: Receiver, secret: str) -> list[int]:
    """The event ids of every copy received, each copy's signature checked."""
    ids = []
    for message in list(receiver.received):
        headers = {k: message.headers[k] for k in ("webhook-id", "webhook-timestamp")}
        headers["webhook-signature"] = message.headers["webhook-signature"]
        payload = Webhook(secret).verify(message.body, headers)
        assert message.headers["webhook-id"] == f"evt_{payload['data']['event_id']}"
        ids.append(payload["data"]["event_id"])
    return ids


def test_failing_receivers_get_every_event_once_they_recover(
    fresh_db, engine, database_url, redis_url, make_stack, scenario
):
    report = scenario(
        "webhook receivers down / 500 / 3xx / slow past the timeout, then recovered",
        "writes commit; every event delivered to every endpoint, signed, once by webhook-id",
    )
    stack = make_stack(
        database_url=database_url,
        redis_url=redis_url,
        world=build_world(1),
        engine=engine,
        name="webhooks",
        worker_env=WORKER_ENV,
    )
    stack.processes.worker(ready=True)
    stack.processes.worker(ready=True)
    stack.processes.scheduler(every=1, ready=True)
    receivers = {
        "500": Receiver(behaviour="500").start(),
        "302": Receiver(behaviour="302").start(),
        "slow": Receiver(behaviour="slow", slow_seconds=3).start(),
        "down": Receiver(port=free_port()),
    }
    try:
        secrets = {}
        for name, receiver in receivers.items():
            reply = stack.api.post(
                "/api/v1/webhooks/endpoints",
                {"url": receiver.url, "topics": ["*"], "description": name},
                stack.world.buyer,
            )
            assert reply.status == 201, reply
            secrets[name] = reply.json()["secret"]
        with stack.app.app_context():
            for n in range(EVENTS):
                emit_event(
                    EventKind.QUOTE_RECEIVED,
                    organization_id=stack.world.oem_id,
                    subject_type="quote",
                    subject_id=n,
                    data={"n": n},
                )
                commit()  # never fails, whatever the receivers do
        with engine.connect() as conn:
            event_ids = sorted(
                conn.scalars(select(OutboxEvent.id).where(OutboxEvent.topic == "event.dispatch"))
            )
        assert len(event_ids) == EVENTS

        def failed_at_least_once() -> bool:
            with engine.connect() as conn:
                failed = conn.scalar(
                    select(func.count(func.distinct(WebhookDelivery.endpoint_id)))
                    .join(WebhookAttempt, WebhookAttempt.delivery_id == WebhookDelivery.id)
                    .where(WebhookAttempt.succeeded.is_(False))
                )
            return failed == len(receivers)

        wait_until(failed_at_least_once, timeout=CONVERGE_WITHIN, what=stack.processes.logs)
        started = time.monotonic()
        for name in ("500", "302", "slow"):
            receivers[name].behaviour = "ok"
        receivers["down"].start()

        def all_delivered() -> bool:
            with engine.connect() as conn:
                statuses = conn.scalars(select(WebhookDelivery.status)).all()
            return len(statuses) == EVENTS * len(receivers) and all(
                s is DeliveryStatus.DELIVERED for s in statuses
            )

        wait_until(all_delivered, timeout=CONVERGE_WITHIN, what=stack.processes.logs)
        report.converged(time.monotonic() - started)
        for name, receiver in receivers.items():
            ids = _verified_ids(receiver, secrets[name])
            assert set(ids) == set(event_ids), name
        with engine.connect() as conn:
            successes = conn.execute(
                select(WebhookAttempt.delivery_id, func.count())
                .where(WebhookAttempt.succeeded.is_(True))
                .group_by(WebhookAttempt.delivery_id)
            ).all()
            dead = conn.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.status == OutboxStatus.DEAD)
            )
        assert len(successes) == EVENTS * len(receivers)
        assert all(count == 1 for _, count in successes)
        assert dead == 0
        report.invariants |= {"W1 every event delivered, signed, once per webhook-id"}
    finally:
        for receiver in receivers.values():
            receiver.stop()
        for receiver in receivers.values():
            for message in receiver.received:
                json.loads(message.body)  # every copy is JSON
