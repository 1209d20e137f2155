"""Webhook delivery: the ``webhooks`` event sink and the ``webhook.deliver`` outbox handler.

The sink writes a delivery per subscribed endpoint in the event's dispatch transaction (no
network I/O there). The handler sends one attempt: it checks the URL again and connects to the
very address it checked (DNS rebinding), signs per Standard Webhooks, POSTs with short connect
and read timeouts, follows no redirect (a 3xx is a failure), reads at most 4 KB of the answer
and drops the rest unread. The outcome goes to ``market.services.webhooks.record_attempt`` in
the job's transaction; a failing receiver never raises here, so the outbox row is done and the
retry is the delivery's own scheduled row (see that module). Database faults do raise, and the
outbox retries the attempt as any other job.
"""

from __future__ import annotations

import time

from flask import current_app
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from market.clock import utcnow
from market.extensions import db
from market.models import DeliveryStatus, OutboxEvent, OutboxTopic, WebhookDelivery
from market.services import webhook_urls, webhooks
from market.services.events import Event, sink
from workers.outbox import handles

USER_AGENT = "StrongChain-Webhooks/1"
MAX_ADDRESSES = 3  # of a host's addresses, tried in turn when a connection cannot be made


@sink("webhooks")
def webhook_sink(event: Event) -> None:
    webhooks.create_deliveries(event)


@handles(OutboxTopic.WEBHOOK_DELIVER)
def deliver_webhook(row: OutboxEvent) -> None:
    delivery = db.session.get(WebhookDelivery, row.aggregate_id, with_for_update=True)
    if delivery is None or delivery.status is not DeliveryStatus.PENDING:
        return  # deleted, delivered, or given up meanwhile
    if delivery.outbox_id != row.id:
        return  # superseded by a redelivery or a re-enabling
    if not delivery.endpoint.enabled:
        webhooks.give_up(delivery)
        return
    webhooks.record_attempt(delivery, send(delivery))


def _pool(target: webhook_urls.Target, address: str) -> HTTPConnectionPool:
    config = current_app.config
    timeout = Timeout(
        connect=config["WEBHOOK_CONNECT_TIMEOUT"], read=config["WEBHOOK_READ_TIMEOUT"]
    )
    if target.scheme == "https":
        return HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=config.get("WEBHOOK_CA_BUNDLE"),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)


def _headers(delivery: WebhookDelivery, target: webhook_urls.Target) -> dict[str, str]:
    now = utcnow()
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != default_port:
        host = f"{host}:{target.port}"
    message_id = webhooks.message_id(delivery)
    signing = webhooks.signing_secrets(delivery.endpoint, now)
    return {
        "Host": host,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": webhooks.signature_header(signing, message_id, now, delivery.body),
    }


def send(delivery: WebhookDelivery) -> webhooks.Outcome:
    """One attempt; every network or receiver failure becomes an unsuccessful outcome."""
    config = current_app.config
    started = time.monotonic()
    try:
        target = webhook_urls.target(
            delivery.endpoint.url,
            require_https=config["WEBHOOK_REQUIRE_HTTPS"],
            allow_private=config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"],
        )
    except webhook_urls.UnsafeUrl as exc:
        return _outcome(started, None, f"Refused: {exc}", None)
    error: Exception | None = None
    for address in target.addresses[:MAX_ADDRESSES]:
        try:
            status, excerpt = _post(delivery, target, address)
        except (NewConnectionError, ConnectTimeoutError) as exc:
            error = exc  # the host's next address, if it has one
            continue
        except Exception as exc:  # the receiver's fault, whatever it is: logged and retried
            return _outcome(started, None, f"{type(exc).__name__}: {exc}", None)
        if 200 <= status < 300:
            return _outcome(started, status, None, excerpt)
        if 300 <= status < 400:
            return _outcome(started, status, f"HTTP {status}: redirects are not followed", excerpt)
        return _outcome(started, status, f"HTTP {status}", excerpt)
    return _outcome(started, None, f"{type(error).__name__}: {error}", None)


def _post(
    delivery: WebhookDelivery, target: webhook_urls.Target, address: str
) -> tuple[int, str | None]:
    """POST to ``address``; the status and the answer's first bytes (the rest is not read)."""
    pool = _pool(target, address)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=delivery.body.encode(),
            headers=_headers(delivery, target),
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
            assert_same_host=False,
        )
        try:
            raw = response.read(webhooks.EXCERPT_BYTES, decode_content=False)
            return response.status, raw.decode("utf-8", errors="replace") if raw else None
        finally:
            response.close()  # the rest of a long answer is never read
    finally:
        pool.close()


def _outcome(
    started: float, status: int | None, error: str | None, excerpt: str | None
) -> webhooks.Outcome:
    return webhooks.Outcome(
        succeeded=error is None,
        status_code=status,
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
        excerpt=excerpt,
    )
