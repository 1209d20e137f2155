"""``Idempotency-Key`` on POST /purchases: replays, mismatches, and racing duplicates."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from market.extensions import db
from market.models import IdempotencyRecord, OutboxEvent, OutboxTopic, Purchase
from market.services.idempotency import fingerprint
from market.services.purchases import with_subsidy_preview
from tests import factories
from tests import test_demands as shared
from tests.conftest import USE_POSTGRES
from tests.test_demands import Market, build_market, counts, error_fields
from tests.test_purchases import purchase_body

# conftest's ``db_session`` and ``client``: each test's transaction is rolled back.
market = shared.market
nothing_committed = shared.nothing_committed  # autouse: checks that nothing leaked


def post(client: Any, market: Market, key: str | None, user: Any = None, **changes: Any) -> Any:
    headers = dict(market.headers(user or market.buyer))
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/purchases", json=purchase_body(market, **changes), headers=headers)


def test_the_same_key_and_body_replay_the_first_answer(client, market):
    first = post(client, market, "8e4f7a1c-0d4b-4b8e-9a55-3f0c2b6f1e11")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    before = counts()
    for _ in range(3):
        again = post(client, market, "8e4f7a1c-0d4b-4b8e-9a55-3f0c2b6f1e11")
        assert again.status_code == 201
        assert again.get_json() == first.get_json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert counts() == before


def test_a_replay_returns_the_subsidy_preview_as_first_computed(client, market):
    first = post(client, market, "k-preview")
    assert first.status_code == 201, first.get_json()
    preview = first.get_json()["subsidy_preview"]
    assert (preview["near_shore_total_before"], preview["increment"]) == ("0.00", "12345.67")
    # The supplier confirmed and the worker recorded the purchase since: a preview computed
    # now would count it.
    confirmed = client.post(
        f"/api/v1/purchases/{first.get_json()['id']}/confirm",
        headers=market.headers(market.supplier_user),
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    purchase = db.session.get(Purchase, first.get_json()["id"])
    assert purchase is not None
    now = with_subsidy_preview(purchase, market.buyer).subsidy_preview
    assert now is not None and now.near_shore_total_before == Decimal("12345.67")
    again = post(client, market, "k-preview")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.get_json()["subsidy_preview"] == preview


def test_an_equivalent_body_is_the_same_request(client, market):
    first = post(client, market, "k-equivalent", amount="100.5", invoice_number="inv-1")
    assert first.status_code == 201
    before = counts()
    # Same values, other spelling: the validated request is what is compared.
    again = post(client, market, "k-equivalent", amount="100.50", invoice_number="INV-1")
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert counts() == before


def test_the_same_key_with_another_body_is_422(client, market):
    assert post(client, market, "k-1").status_code == 201
    before = counts()
    response = post(client, market, "k-1", amount="99.99", invoice_number="INV-OTHER")
    assert response.status_code == 422
    assert "Idempotency-Key" in error_fields(response)
    assert "different request" in response.get_json()["error"]["message"]
    assert counts() == before


def test_without_a_key_a_retry_is_a_duplicate_invoice(client, market):
    assert post(client, market, None).status_code == 201
    before = counts()
    assert post(client, market, None).status_code == 409
    assert post(client, market, "a-fresh-key").status_code == 409  # a new key is a new request
    assert counts() == before


def test_keys_belong_to_their_user(client, market):
    colleague = factories.make_user(market.oem)
    assert post(client, market, "shared-key").status_code == 201
    # Another user's identical key is not a replay of this one: it is a new request (here the
    # same invoice, so a duplicate).
    response = post(client, market, "shared-key", user=colleague)
    assert response.status_code == 409
    other = post(client, market, "shared-key", user=colleague, invoice_number="INV-COLLEAGUE")
    assert other.status_code == 201


def test_failures_are_not_remembered(client, market):
    before = counts()
    refused = post(client, market, "k-retry", amount="-5.00")
    assert refused.status_code == 422
    conflict = post(client, market, "k-retry", plant_id=market.other_plant.id)
    assert conflict.status_code == 422
    assert counts() == before
    fixed = post(client, market, "k-retry")
    assert fixed.status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\tkey"])
def test_malformed_keys_are_422(client, market, key):
    before = counts()
    response = post(client, market, key)
    assert response.status_code == 422
    assert "Idempotency-Key" in error_fields(response)
    assert counts() == before


def test_the_fingerprint_ignores_key_order_but_not_values():
    a = fingerprint("POST /x", {"a": 1, "b": "2"})
    assert a == fingerprint("POST /x", {"b": "2", "a": 1})
    assert a != fingerprint("POST /x", {"a": 1, "b": "3"})
    assert a != fingerprint("POST /y", {"a": 1, "b": "2"})


def test_the_record_stores_the_response(client, market):
    response = post(client, market, "k-stored")
    record = db.session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == market.buyer.id, IdempotencyRecord.key == "k-stored"
        )
    )
    assert record is not None
    assert record.response_status == 201
    assert record.response_body == response.get_json()
    assert record.endpoint == "POST /api/v1/purchases"


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="racing transactions need PostgreSQL")
def test_ten_concurrent_duplicates_and_one_impostor_make_one_purchase(app, committed_db):
    market = build_market()
    headers = dict(factories.auth(market.buyer)) | {"Idempotency-Key": "race-key-1"}
    same = purchase_body(market)
    different = purchase_body(market, amount="1.00", invoice_number="INV-IMPOSTOR")
    committed_db.commit()
    bodies = [same] * 10 + [different]
    barrier = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> tuple[dict[str, Any], int, Any]:
        client = app.test_client()  # its own app context, session and connection
        barrier.wait()
        response = client.post("/api/v1/purchases", json=body, headers=headers)
        return body, response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        results = list(pool.map(send, bodies))

    committed_db.expire_all()
    purchases = committed_db.scalars(
        select(Purchase).where(Purchase.oem_org_id == market.oem.id)
    ).all()
    assert len(purchases) == 1, results
    winner = purchases[0]
    won_with = same if winner.invoice_number == same["invoice_number"] else different
    for body, status, answer in results:
        if body is won_with:
            assert status == 201, answer
            assert answer["id"] == winner.id
        else:
            assert status == 422, answer
    winning_answers = [answer for body, status, answer in results if status == 201]
    assert all(answer == winning_answers[0] for answer in winning_answers)
    records = committed_db.scalar(
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == market.buyer.id)
    )
    assert records == 1
    ledger_rows = committed_db.scalar(
        select(func.count())
        .select_from(OutboxEvent)
        .where(
            OutboxEvent.topic == OutboxTopic.LEDGER_RECORD, OutboxEvent.aggregate_id == winner.id
        )
    )
    assert ledger_rows == 0  # nothing for the ledger until the supplier confirms it
