"""Domain events: emitted with the business rows, dispatched once to every sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from market.extensions import db
from market.models import OrgKind, OutboxEvent, OutboxStatus, OutboxTopic
from market.services import events
from market.services.events import Event, EventKind, emit_event
from market.services.unit_of_work import commit, rollback
from tests import factories
from workers.outbox import process_outbox_event


@pytest.fixture
def received() -> Iterator[list[Event]]:
    got: list[Event] = []
    events.sink("test")(got.append)
    yield got
    events._SINKS.pop("test")


def test_an_event_reaches_each_sink_once_even_if_its_job_runs_twice(db_session, received):
    supplier = factories.make_org(kind=OrgKind.SUPPLIER)
    emit_event(
        EventKind.QUOTE_AWARDED,
        organization_id=supplier.id,
        subject_type="quote",
        subject_id=7,
        data={"amount": "12.50"},
        user_ids=[3, 1, 3],
    )
    commit()  # inline jobs: dispatched right after the commit
    row = db_session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == OutboxTopic.EVENT_DISPATCH)
    ).one()
    assert row.status is OutboxStatus.DONE
    process_outbox_event(row.id)  # a duplicate delivery of the job
    assert len(received) == 1
    event = received[0]
    assert (event.id, event.kind, event.organization_id) == (row.id, "quote.awarded", supplier.id)
    assert (event.subject_type, event.subject_id) == ("quote", 7)
    assert event.data == {"amount": "12.50"}
    assert event.user_ids == (1, 3)


def test_an_event_rolled_back_with_its_write_is_never_dispatched(db_session, received):
    supplier = factories.make_org(kind=OrgKind.SUPPLIER)
    emit_event(
        EventKind.DEMAND_PUBLISHED, organization_id=supplier.id, subject_type="demand", subject_id=1
    )
    rollback()
    assert db.session.scalar(select(OutboxEvent.id)) is None
    assert received == []


def test_a_failing_sink_leaves_the_event_pending_for_a_retry(db_session, received):
    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    events.sink("broken")(broken)
    try:
        supplier = factories.make_org(kind=OrgKind.SUPPLIER)
        emit_event(
            EventKind.QUOTE_RECEIVED,
            organization_id=supplier.id,
            subject_type="quote",
            subject_id=1,
        )
        commit()
    except RuntimeError:
        pass
    finally:
        events._SINKS.pop("broken")
    row = db_session.scalars(select(OutboxEvent)).one()
    assert row.status is OutboxStatus.PENDING and row.attempts == 1
    process_outbox_event(row.id)
    assert db_session.get(OutboxEvent, row.id).status is OutboxStatus.DONE
    # The first attempt's sinks ran in the transaction that was rolled back; a real sink writes
    # rows, so only the retry's work remains. This list is not transactional and sees both.
    assert [e.id for e in received] == [row.id, row.id]
