"""The bulk reader of supplier documents builds exactly what the builder on ORM objects builds.

``flask search reindex`` and the sync read suppliers with plain SELECTs
(:func:`search.documents.load_supplier_documents` and ``load_supplier_documents_after``), not
ORM objects. On a world with every kind of supplier the two must agree byte for byte (orjson,
which keeps key order and tells ``23.0`` from ``23``), and the comparison itself is shown to
notice any one changed field.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from market.clock import business_today
from market.extensions import db
from market.models import (
    CertStatus,
    CertVerification,
    Organization,
    OrgKind,
    OrgStatus,
)
from search.current import search_backend
from search.documents import (
    load_supplier_documents,
    load_supplier_documents_after,
    serialised_documents_after,
    supplier_document,
)
from search.elastic import ElasticsearchBackend
from search.reindex import reindex
from tests import factories
from tests.conftest import RUN_ID, make_test_app

TODAY = business_today()


def make_world() -> list[int]:
    """Suppliers of every kind, with an OEM's rows between theirs; the suppliers' ids."""
    suppliers = []
    full = factories.make_org(
        tier=1,
        specialized=True,
        performance_bp=8750,
        legal_name='广州"精密"制动\\系统有限公司',
        english_name="Guangzhou Precision Brakes",
        description="精密冲压与制动卡钳，线束\t总成；brake calipers\nand stamping",
    )
    factories.make_site(full, at=factories.GUANGZHOU, name="一号厂 Plant 1")
    factories.make_site(full, at=factories.SHENZHEN, active=False)  # inactive: not indexed
    # Whole-number coordinates: a float in the document all the same.
    factories.make_site(full, at=(23.0, 113.0), city_code="440100", validate=False)
    factories.make_capability(full, "chassis.braking.foundation")
    factories.make_capability(full, "body.stamping")
    factories.make_capability(full, "chassis.braking")  # shares its ancestors with the first
    factories.make_certification(full, "iatf-16949")  # verified, valid
    factories.make_certification(full, "iso-9001", verification=CertVerification.PENDING)
    factories.make_certification(full, "iso-26262", verification=CertVerification.REJECTED)
    factories.make_certification(
        full,
        "iso-9001",
        valid_from=TODAY - timedelta(days=800),
        valid_until=TODAY - timedelta(days=10),  # expired
    )
    factories.make_certification(full, "iatf-16949", status=CertStatus.REVOKED)
    factories.make_certification(full, "iso-14001", valid_from=TODAY + timedelta(days=30))
    no_expiry = factories.make_certification(full, "aec-q100")
    no_expiry.valid_until = None
    suppliers.append(full)

    oem = factories.make_org(OrgKind.OEM)  # its rows sit in the suppliers' id range
    factories.make_site(oem, at=factories.SHANTOU)
    factories.make_capability(oem, "body.seats")
    factories.make_certification(oem, "iatf-16949")

    hidden = factories.make_org(tier=2, listed=False, performance_bp=5000)
    factories.make_site(hidden, at=factories.SHENZHEN)
    # Every digit a double holds, and a name that needs escaping (quotes, a backslash, a tab, a
    # control character) beside CJK and a symbol: the database writes this JSON on PostgreSQL.
    factories.make_site(
        hidden,
        at=(23.123456789012345, 113.98765432101234),
        city_code="440100",
        validate=False,
        name='东区"二号"\\厂\t\x01(旧) ✓ </script>',
    )
    factories.make_capability(hidden, "ic.chips.mcu")
    suppliers.append(hidden)

    suspended = factories.make_org(tier=3, status=OrgStatus.SUSPENDED)
    factories.make_site(suspended, at=factories.SHANTOU)
    factories.make_site(suspended, at=factories.GUANGZHOU)
    factories.make_certification(suspended, "iso-9001", verification=CertVerification.PENDING)
    suppliers.append(suspended)

    pending = factories.make_org(status=OrgStatus.PENDING, performance_bp=10_000)
    factories.make_site(pending, at=factories.GUANGZHOU, active=False)  # no active site
    factories.make_capability(pending, "chassis")
    suppliers.append(pending)

    # Nothing but the required columns: no tier, names' tokens, sites or anything else.
    bare = factories.make_org(tier=None, english_name=None, description=None)
    bare.search_names = bare.search_text = None
    suppliers.append(bare)
    db.session.flush()
    return [org.id for org in suppliers]


def orm_documents(ids: list[int]) -> dict[int, dict[str, Any]]:
    """The builder on ORM objects re-read from the database, by id."""
    db.session.expire_all()
    orgs = db.session.scalars(
        select(Organization)
        .where(Organization.id.in_(ids))
        .order_by(Organization.id)
        .options(
            selectinload(Organization.sites),
            selectinload(Organization.capabilities),
            selectinload(Organization.certifications),
        )
    )
    return {org.id: supplier_document(org) for org in orgs}


def assert_same_documents(actual: dict[int, Any], expected: dict[int, Any]) -> None:
    """Same ids in the same order, and each document the same bytes."""
    assert list(actual) == list(expected)
    for org_id, document in expected.items():
        assert orjson.dumps(actual[org_id]) == orjson.dumps(document), differences(
            actual[org_id], document
        )


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where two documents differ (for the failure message)."""
    if isinstance(expected, dict) and isinstance(actual, dict) and list(actual) == list(expected):
        return [d for key in expected for d in differences(actual[key], expected[key], key)]
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        return [
            d
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for d in differences(a, e, f"{path}[{i}]")
        ]
    if type(actual) is type(expected) and actual == expected:
        return []
    return [f"{path}: {actual!r} != {expected!r}"]


def test_the_bulk_reader_builds_the_orm_builders_documents(db_session):
    ids = make_world()
    expected = orm_documents(ids)
    assert list(expected) == ids

    everything = load_supplier_documents_after(0, 100)
    assert_same_documents(everything, expected)
    oem = db.session.scalar(select(Organization.id).where(Organization.kind == OrgKind.OEM))
    assert_same_documents(load_supplier_documents([*reversed(ids), oem]), expected)
    # Keyset batches of two: each batch's related rows are read by its range of ids.
    batched: dict[int, dict[str, Any]] = {}
    while batch := load_supplier_documents_after(max(batched, default=0), 2):
        assert len(batch) <= 2
        batched |= batch
    assert_same_documents(batched, expected)

    # What a rebuild sends: the same bytes (on PostgreSQL the database writes the lists' JSON).
    for limit in (100, 2):
        serialised: list[tuple[int, int, bytes]] = []
        while batch := serialised_documents_after(serialised[-1][0] if serialised else 0, limit):
            assert len(batch) <= limit
            serialised += batch
        assert [(i, v) for i, v, _ in serialised] == [
            (i, d["version"]) for i, d in expected.items()
        ]
        for org_id, _, body in serialised:
            assert body == orjson.dumps(expected[org_id]), differences(
                orjson.loads(body), expected[org_id]
            )

    # The world has what it is meant to have.
    full, hidden, suspended, pending, bare = (expected[org_id] for org_id in ids)
    assert len(full["site_info"]) == 2 and full["sites"][1] == {"lat": 23.0, "lon": 113.0}
    assert len(full["certifications"]) == 7 and full["performance"] == 0.875
    assert full["certifications"][-1]["valid_until"] == "9999-12-31"
    assert full["categories"] == [
        "body",
        "body.stamping",
        "chassis",
        "chassis.braking",
        "chassis.braking.foundation",
    ]
    assert [d["visible"] for d in (full, hidden, suspended, pending, bare)] == [
        True,
        False,
        False,
        False,
        True,
    ]
    assert pending["sites"] == [] and bare["certifications"] == []
    assert bare["name_tokens"] == bare["text_tokens"] == " " and bare["tier"] is None
    assert "制动" in full["text_tokens"].split()


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path


def _changed(value: Any) -> Any:
    """Another value of a leaf: the same number of another type, or something else."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value + 1e-9
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        return value + " "
    return 0  # None or []


def test_the_comparison_notices_any_one_changed_field(db_session):
    ids = make_world()
    expected = orm_documents(ids)
    checked = 0
    for org_id, document in expected.items():
        for path in _leaves(document):
            altered = copy.deepcopy(expected)
            *parents, last = path
            target = altered[org_id]
            for step in parents:
                target = target[step]
            target[last] = _changed(target[last])
            with pytest.raises(AssertionError):
                assert_same_documents(altered, expected)
            checked += 1
    assert checked > 100
    # And a reordering: the same keys in another order are other bytes.
    reordered = {**expected, ids[0]: dict(reversed(expected[ids[0]].items()))}
    with pytest.raises(AssertionError):
        assert_same_documents(reordered, expected)


@pytest.fixture
def es_app(database_url, elasticsearch_url, committed_db) -> Iterator[Flask]:
    application = make_test_app(
        database_url,
        ELASTICSEARCH_URL=elasticsearch_url,
        ELASTICSEARCH_INDEX_PREFIX=f"{RUN_ID}-{uuid.uuid4().hex[:8]}",
    )
    context = application.app_context()
    context.push()
    try:
        yield application
    finally:
        backend = search_backend()
        if isinstance(backend, ElasticsearchBackend):
            for index in backend.alias_targets():
                backend.delete_index(index)
        db.session.remove()
        db.engine.dispose()
        context.pop()


@pytest.mark.elasticsearch
def test_a_reindex_indexes_the_orm_builders_documents(es_app):
    backend = search_backend()
    assert isinstance(backend, ElasticsearchBackend)
    ids = make_world()
    db.session.commit()

    result = reindex(backend, batch_size=2)

    assert result.indexed == len(ids)
    expected = orm_documents(ids)
    found = backend.client.mget(index=backend.alias, ids=[str(i) for i in ids])["docs"]
    indexed = {int(doc["_id"]): doc["_source"] for doc in found}
    assert_same_documents(indexed, expected)
    assert {doc["_version"] for doc in found} == {1}  # the rows' versions, external
