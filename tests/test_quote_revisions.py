"""Quote revisions, quoting again after a withdrawal, and the quote events.

Every version of a quote is kept (``quote_revisions``, insert-only for the application's
PostgreSQL role); the buyer sees the latest and the history. Bad revisions change nothing.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from market.extensions import db
from market.models import (
    DemandState,
    OutboxEvent,
    OutboxTopic,
    Quote,
    QuoteRevision,
    QuoteStatus,
    Role,
)
from tests import factories
from tests import test_demands as shared
from tests.conftest import USE_POSTGRES, USE_ROLES
from tests.test_demands import TODAY, Market, build_market, counts, error_fields
from tests.test_quotes import award, eligible_supplier, open_demand, quote_body

market = shared.market
nothing_committed = shared.nothing_committed  # autouse: checks that nothing leaked


def revision_count() -> int:
    return db.session.scalar(select(func.count()).select_from(QuoteRevision)) or 0


def quote(client: Any, market: Market, demand_id: int, **changes: Any) -> Any:
    return client.post(
        f"/api/v1/demands/{demand_id}/quotes",
        json=quote_body(market, **changes),
        headers=market.headers(market.supplier_user),
    )


def revise(client: Any, market: Market, quote_id: int, body: Any, user: Any = None) -> Any:
    return client.patch(
        f"/api/v1/quotes/{quote_id}",
        json=body,
        headers=market.headers(user or market.supplier_user),
    )


def history(client: Any, market: Market, quote_id: int, user: Any, query: str = "") -> Any:
    return client.get(f"/api/v1/quotes/{quote_id}/revisions{query}", headers=market.headers(user))


def events(kind: str) -> list[OutboxEvent]:
    return [
        e
        for e in db.session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
            .order_by(OutboxEvent.id)
        )
        if e.payload["kind"] == kind
    ]


# --- revising ------------------------------------------------------------------------------------


def test_a_supplier_revises_and_the_buyer_sees_the_latest_and_the_history(client, market):
    demand = open_demand(market)
    created = quote(client, market, demand.id)
    assert created.status_code == 201
    quote_id = created.get_json()["id"]
    assert created.get_json()["revision"] == 1 and created.get_json()["revised_at"] is None
    [received] = events("quote.received")
    assert received.aggregate_id == market.oem.id
    assert received.payload["data"]["unit_price"] == "12.35"
    assert received.payload["data"]["total"] == "37.05"

    first = revise(client, market, quote_id, {"unit_price": "11.90", "lead_time_days": 14})
    assert first.status_code == 200, first.get_json()
    second = revise(client, market, quote_id, {"note": None, "valid_until": TODAY.isoformat()})
    assert second.status_code == 200, second.get_json()
    latest = second.get_json()
    assert (latest["revision"], latest["unit_price"], latest["lead_time_days"]) == (3, "11.90", 14)
    assert latest["note"] is None and latest["revised_at"] is not None
    assert latest["total"] == "35.70" and latest["status"] == "submitted"

    listed = client.get(
        f"/api/v1/demands/{demand.id}/quotes", headers=market.headers(market.buyer)
    ).get_json()
    assert [(q["id"], q["revision"], q["unit_price"]) for q in listed["items"]] == [
        (quote_id, 3, "11.90")
    ]
    for user in (market.buyer, market.supplier_user):
        response = history(client, market, quote_id, user)
        assert response.status_code == 200
        versions = response.get_json()["items"]
        assert [(v["revision"], v["unit_price"], v["lead_time_days"]) for v in versions] == [
            (1, "12.35", 21),
            (2, "11.90", 14),
            (3, "11.90", 14),
        ]
        assert versions[0]["note"] == "Incoterms: DAP plant.\nPPAP included."
        assert versions[2]["note"] is None
        assert versions[2]["valid_until"] == TODAY.isoformat()
    newest_first = history(client, market, quote_id, market.buyer, "?sort=-revision&per_page=1")
    assert newest_first.get_json()["items"][0]["revision"] == 3
    assert newest_first.get_json()["meta"]["total"] == 3

    revised = events("quote.revised")
    assert [(e.aggregate_id, e.payload["data"]["revision"]) for e in revised] == [
        (market.oem.id, 2),
        (market.oem.id, 3),
    ]
    assert revised[0].payload["data"]["unit_price"] == "11.90"


def test_only_the_buyer_and_the_quoting_supplier_read_the_history(client, market):
    demand = open_demand(market)
    quote_id = quote(client, market, demand.id).get_json()["id"]
    for user, status in [
        (market.other_buyer, 404),
        (market.other_supplier_user, 404),
        (market.auditor, 403),
        (market.admin, 403),
    ]:
        assert history(client, market, quote_id, user).status_code == status
    assert history(client, market, 99999999, market.buyer).status_code == 404


def _withdrawn(client: Any, market: Market) -> int:
    quote_id = quote(client, market, open_demand(market).id).get_json()["id"]
    response = client.post(
        f"/api/v1/quotes/{quote_id}/withdraw", headers=market.headers(market.supplier_user)
    )
    assert response.status_code == 200
    return int(quote_id)


def _awarded(client: Any, market: Market) -> int:
    quote_id = quote(client, market, open_demand(market).id).get_json()["id"]
    assert award(client, market, db.session.get(Quote, quote_id)).status_code == 201
    return int(quote_id)


def _rejected(client: Any, market: Market) -> int:
    demand = open_demand(market)
    quote_id = quote(client, market, demand.id).get_json()["id"]
    org, site, _user = eligible_supplier()
    from tests.test_quotes import make_quote

    winner = make_quote(demand, org, site)
    assert award(client, market, winner).status_code == 201
    return int(quote_id)


def _demand_closed(client: Any, market: Market) -> int:
    demand = open_demand(market)
    quote_id = quote(client, market, demand.id).get_json()["id"]
    demand.state = DemandState.CLOSED
    db.session.flush()
    return int(quote_id)


def _demand_past_need_by(client: Any, market: Market) -> int:
    demand = open_demand(market)
    quote_id = quote(client, market, demand.id).get_json()["id"]
    demand.need_by = TODAY - timedelta(days=1)  # open, but closed for everyone now
    db.session.flush()
    return int(quote_id)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_withdrawn, "withdrawn"),
        (_awarded, "awarded"),
        (_rejected, "rejected"),
        (_demand_closed, "closed"),
        (_demand_past_need_by, "closed"),
    ],
)
def test_a_quote_that_is_not_open_to_revision_is_409(client, market, make, says):
    quote_id = make(client, market)
    before = (counts(), revision_count())
    response = revise(client, market, quote_id, {"unit_price": "1.00"})
    assert response.status_code == 409
    assert says in response.get_json()["error"]["message"]
    assert (counts(), revision_count()) == before


def test_someone_elses_quote_is_404_and_buyers_may_not_revise(client, market):
    quote_id = quote(client, market, open_demand(market).id).get_json()["id"]
    before = (counts(), revision_count())
    response = revise(client, market, quote_id, {"unit_price": "1.00"}, market.other_supplier_user)
    assert response.status_code == 404
    for user in (market.buyer, market.admin):
        assert revise(client, market, quote_id, {"unit_price": "1.00"}, user).status_code == 403
    for bad_id in (0, 99999999999999999999):
        assert revise(client, market, bad_id, {"unit_price": "1.00"}).status_code == 404
    assert (counts(), revision_count()) == before
    assert db.session.get(Quote, quote_id).unit_price == factories.Decimal("12.35")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_body"),
        ({"unit_price": "12.35"}, "_body"),  # nothing changes
        ({"unit_price": "0"}, "unit_price"),
        ({"unit_price": "1.001"}, "unit_price"),
        ({"unit_price": 12.5}, "unit_price"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "3"}, "quantity"),
        ({"lead_time_days": -1}, "lead_time_days"),
        ({"lead_time_days": 10_000}, "lead_time_days"),
        ({"valid_until": (TODAY - timedelta(days=1)).isoformat()}, "valid_until"),
        ({"valid_until": (TODAY + timedelta(days=800)).isoformat()}, "valid_until"),
        ({"note": "<script>x</script>"}, "note"),
        ({"note": "x" * 2001}, "note"),
        ({"status": "awarded"}, "status"),
        ({"site_id": 1}, "site_id"),
        ({"quantity": 10_000_000, "unit_price": "99999999.99"}, "quantity"),
        ({"unit_price": "99999999.99"}, None),  # × the quoted quantity 3 is fine
    ],
)
def test_bad_revisions_are_422_with_field_messages_and_change_nothing(client, market, body, field):
    quote_id = quote(client, market, open_demand(market).id).get_json()["id"]
    if field is None:
        assert revise(client, market, quote_id, body).status_code == 200
        return
    before = (counts(), revision_count())
    response = revise(client, market, quote_id, body)
    assert response.status_code == 422, response.get_json()
    assert field in error_fields(response)
    assert (counts(), revision_count()) == before
    db.session.expire_all()
    assert db.session.get(Quote, quote_id).revision == 1


def test_the_total_of_a_revision_is_checked_against_the_quoted_terms(client, market):
    quote_id = quote(client, market, open_demand(market).id, quantity=10_000_000).get_json()["id"]
    before = (counts(), revision_count())
    response = revise(client, market, quote_id, {"unit_price": "99999999.99"})
    assert response.status_code == 422
    assert "unit_price" in error_fields(response)
    assert (counts(), revision_count()) == before


# --- quoting again ---------------------------------------------------------------------------


def test_a_supplier_quotes_again_after_withdrawing(client, market):
    demand = open_demand(market)
    first = quote(client, market, demand.id).get_json()["id"]
    again = quote(client, market, demand.id, unit_price="10.00")
    assert again.status_code == 409
    assert "revise it, or withdraw it first" in again.get_json()["error"]["message"]
    client.post(f"/api/v1/quotes/{first}/withdraw", headers=market.headers(market.supplier_user))
    second = quote(client, market, demand.id, unit_price="10.00")
    assert second.status_code == 201, second.get_json()
    assert second.get_json()["id"] != first and second.get_json()["revision"] == 1
    assert quote(client, market, demand.id).status_code == 409
    statuses = db.session.execute(
        select(Quote.id, Quote.status).where(Quote.demand_id == demand.id).order_by(Quote.id)
    ).all()
    assert [s for _, s in statuses] == [QuoteStatus.WITHDRAWN, QuoteStatus.SUBMITTED]
    # The buyer sees both; the award is of the new one, the withdrawn one is not told.
    assert award(client, market, db.session.get(Quote, second.get_json()["id"])).status_code == 201
    assert [e.payload["subject_id"] for e in events("quote.awarded")] == [second.get_json()["id"]]
    assert events("quote.not_awarded") == []


def test_the_database_allows_one_active_quote_per_supplier_and_demand(client, market):
    from tests.test_quotes import make_quote

    demand = open_demand(market)
    make_quote(demand, market.supplier, market.site, status=QuoteStatus.WITHDRAWN)
    make_quote(demand, market.supplier, market.site, status=QuoteStatus.WITHDRAWN)
    make_quote(demand, market.supplier, market.site)
    with pytest.raises(Exception, match=r"(?i)unique"), db.session.begin_nested():
        make_quote(demand, market.supplier, market.site)


# --- under concurrency (real PostgreSQL) -----------------------------------------------------------


def _race(app: Any, n: int, request: Any) -> list[int]:
    barrier = threading.Barrier(n)

    def one(i: int) -> int:
        client = app.test_client()
        barrier.wait()
        return int(request(client, i).status_code)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return sorted(pool.map(one, range(n)))


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="row locks under real concurrency need PostgreSQL")
def test_concurrent_quotes_after_a_withdrawal_make_one_active_quote(app, committed_db):
    market = build_market()
    demand = open_demand(market)
    from tests.test_quotes import make_quote

    make_quote(demand, market.supplier, market.site, status=QuoteStatus.WITHDRAWN)
    headers = factories.auth(market.supplier_user)
    body = quote_body(market)
    demand_id = demand.id
    committed_db.commit()
    statuses = _race(
        app,
        10,
        lambda client, i: client.post(
            f"/api/v1/demands/{demand_id}/quotes", json=body, headers=headers
        ),
    )
    assert statuses == [201] + [409] * 9
    committed_db.expire_all()
    active = committed_db.scalar(
        select(func.count())
        .select_from(Quote)
        .where(Quote.demand_id == demand_id, Quote.status == QuoteStatus.SUBMITTED)
    )
    assert active == 1


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="row locks under real concurrency need PostgreSQL")
def test_concurrent_revisions_are_each_kept_in_order(app, committed_db):
    market = build_market()
    demand = open_demand(market)
    from tests.test_quotes import make_quote

    target = make_quote(demand, market.supplier, market.site)
    committed_db.add(
        QuoteRevision(
            quote_id=target.id,
            revision=1,
            site_id=market.site.id,
            unit_price=target.unit_price,
            quantity=target.quantity,
            lead_time_days=target.lead_time_days,
            valid_until=target.valid_until,
        )
    )
    headers = factories.auth(market.supplier_user)
    quote_id = target.id
    committed_db.commit()
    statuses = _race(
        app,
        8,
        lambda client, i: client.patch(
            f"/api/v1/quotes/{quote_id}", json={"unit_price": f"{20 + i}.00"}, headers=headers
        ),
    )
    assert statuses == [200] * 8
    committed_db.expire_all()
    versions = committed_db.execute(
        select(QuoteRevision.revision, QuoteRevision.unit_price)
        .where(QuoteRevision.quote_id == quote_id)
        .order_by(QuoteRevision.revision)
    ).all()
    assert [r for r, _ in versions] == list(range(1, 10))
    assert len({price for _, price in versions[1:]}) == 8  # no revision lost
    final = committed_db.get(Quote, quote_id)
    assert (final.revision, final.unit_price) == (9, versions[-1][1])


@pytest.mark.postgres
@pytest.mark.skipif(not USE_POSTGRES, reason="row locks under real concurrency need PostgreSQL")
def test_a_revision_racing_the_award_is_either_before_it_or_refused(app, committed_db):
    market = build_market()
    demand = open_demand(market)
    from tests.test_quotes import make_quote

    target = make_quote(demand, market.supplier, market.site)
    supplier, buyer = factories.auth(market.supplier_user), factories.auth(market.buyer)
    quote_id = target.id
    committed_db.commit()

    def request(client: Any, i: int) -> Any:
        if i == 0:
            return client.post(
                f"/api/v1/quotes/{quote_id}/award",
                json={"invoice_number": "INV-REV-1"},
                headers=buyer,
            )
        return client.patch(
            f"/api/v1/quotes/{quote_id}", json={"lead_time_days": i}, headers=supplier
        )

    statuses = _race(app, 6, request)
    assert 201 in statuses and set(statuses) <= {200, 201, 409}
    committed_db.expire_all()
    final = committed_db.get(Quote, quote_id)
    assert final.status is QuoteStatus.AWARDED
    assert final.revision == 1 + statuses.count(200)


# --- the database guards the history ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(not (USE_POSTGRES and USE_ROLES), reason="PostgreSQL roles")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE quote_revisions SET unit_price = unit_price",
        "DELETE FROM quote_revisions",
        "TRUNCATE quote_revisions",
    ],
)
def test_the_app_role_cannot_rewrite_a_quotes_history(app, database_url, statement):
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM quote_revisions")).scalar() >= 0
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text(statement))
        assert "permission denied for table quote_revisions" in str(caught.value.orig)
    finally:
        engine.dispose()


def test_auditors_and_admins_cannot_quote_or_revise(client, market):
    quote_id = quote(client, market, open_demand(market).id).get_json()["id"]
    auditor = factories.make_user(role=Role.AUDITOR)
    assert revise(client, market, quote_id, {"lead_time_days": 1}, auditor).status_code == 403


# --- the migration ------------------------------------------------------------------------------


def test_the_migration_makes_each_existing_quote_its_own_first_revision(tmp_path):
    """0017 on a database with quotes: each becomes revision 1 of its history, demands keep
    their target price visible, and a supplier may then quote again after withdrawing."""
    from flask_migrate import downgrade, upgrade

    from tests.conftest import make_test_app

    app = make_test_app(f"sqlite:///{tmp_path / 'before-revisions.db'}")
    with app.app_context():
        upgrade(revision="0013_events")
        now = "2026-01-01 00:00:00"
        run = db.session.execute
        for org_id, kind in ((1, "oem"), (2, "supplier")):
            run(
                text(
                    "INSERT INTO organizations (id, kind, uscc, legal_name, city_code, status, "
                    "specialized, listed, version, created_at, updated_at) VALUES "
                    "(:id, :kind, :uscc, '旧公司', '440100', 'active', 0, 1, 1, :now, :now)"
                ),
                {"id": org_id, "kind": kind, "uscc": factories.fictional_uscc(), "now": now},
            )
            run(
                text(
                    "INSERT INTO sites (id, organization_id, kind, name, city_code, lat, lon, "
                    "active, created_at) VALUES (:id, :id, 'plant', 'x', '440100', 23.1, 113.3, "
                    "1, :now)"
                ),
                {"id": org_id, "now": now},
            )
        run(
            text(
                "INSERT INTO demands (id, organization_id, plant_id, category, title, quantity, "
                "unit, target_unit_price, required_standards, need_by, radius_km, state, "
                "created_at, updated_at) VALUES (1, 1, 1, 'chassis', 't', 5, 'pcs', 1250, '[]', "
                "'2099-01-01', 200, 'open', :now, :now)"
            ),
            {"now": now},
        )
        run(
            text(
                "INSERT INTO quotes (id, demand_id, organization_id, site_id, unit_price, "
                "quantity, lead_time_days, valid_until, note, status, created_by_id, created_at) "
                "VALUES (7, 1, 2, 2, 1234, 5, 9, '2099-01-01', 'old note', 'withdrawn', NULL, :now)"
            ),
            {"now": now},
        )
        db.session.commit()
        upgrade(revision="0017_quote_revisions")
        history = run(
            text(
                "SELECT quote_id, revision, site_id, unit_price, quantity, lead_time_days, "
                "valid_until, note, created_at FROM quote_revisions"
            )
        ).all()
        assert [tuple(row) for row in history] == [
            (7, 1, 2, 1234, 5, 9, "2099-01-01", "old note", now)
        ]
        assert run(text("SELECT revision, revised_at FROM quotes")).one() == (1, None)
        assert run(text("SELECT hide_target_price FROM demands")).scalar() in (0, False)
        # Quoting again after the withdrawal, as the partial unique index allows.
        run(
            text(
                "INSERT INTO quotes (id, demand_id, organization_id, site_id, unit_price, "
                "quantity, lead_time_days, valid_until, status, created_at, revision) "
                "VALUES (8, 1, 2, 2, 1000, 5, 9, '2099-01-01', 'submitted', :now, 1)"
            ),
            {"now": now},
        )
        db.session.commit()
        run(text("DELETE FROM quotes WHERE id = 8"))
        db.session.commit()
        downgrade(revision="0013_events")
        assert run(text("SELECT count(*) FROM quotes")).scalar() == 1
        db.session.remove()
        db.engine.dispose()
