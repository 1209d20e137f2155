"""The v2 subsidy rule (DESIGN.md, "Near-shore ledger and subsidy spec (v2)"), table-driven:
the near-shore decision, the baseline, the position (I*, S*), the policy of a year, the hash
chain in formats 1 and 2; then the rule through the database (``market.ledger.append``): each
effect once, reversals, held years and late declarations, late purchases of Y−1, the totals
table, the preview and the database's refusal to change an entry.

After every database test the fixture ``world`` checks the invariant against the independent
oracle of ``tests.marketplace_model``: for each (OEM, year) the entries sum to I* and S*
recomputed from scratch from the counted purchases, and each purchase is counted once iff it
is countable.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from market import ledger
from market.extensions import db
from market.ledger.chain import HASHED_FIELDS, HASHED_FIELDS_V1, HASHED_FIELDS_V2
from market.ledger.rules import (
    Baseline,
    BaselineSource,
    Reason,
    baseline_of,
    decide_near_shore,
    money,
    position_of,
)
from market.models import (
    DeclaredBaseline,
    EntryKind,
    InvoiceReview,
    LedgerEntry,
    LedgerTotal,
    OrgKind,
    PurchaseStatus,
)
from tests import factories
from tests import marketplace_model as oracle
from tests.conftest import USE_ROLES
from tests.factories import CHANGSHA, GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
EARTH_RADIUS_KM = 6371.0088
POLICY = ledger.DEFAULT_POLICY
HONG_KONG = (22.30, 114.17)  # Kowloon: outside Guangdong, whatever code a site declares


def north_of(point: tuple[float, float], km: float) -> tuple[float, float]:
    """A point ``km`` due north: along a meridian the haversine distance is exactly R·Δφ."""
    return (point[0] + math.degrees(km / EARTH_RADIUS_KM), point[1])


# --- near-shore --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "city", "site", "near_shore", "reason"),
    [
        (POLICY, "440300", SHENZHEN, True, Reason.NEAR_SHORE),
        (POLICY, "440100", GUANGZHOU, True, Reason.NEAR_SHORE),
        # The province is checked first: a Hunan code is out even when the site is close...
        (POLICY, "430100", GUANGZHOU, False, Reason.OUT_OF_PROVINCE),
        (POLICY, "430100", CHANGSHA, False, Reason.OUT_OF_PROVINCE),
        # ...and a Guangdong code on a site that lies in Hunan is out too (not only the prefix).
        (POLICY, "440100", CHANGSHA, False, Reason.OUT_OF_PROVINCE),
        (POLICY, "440500", SHANTOU, False, Reason.TOO_FAR),  # ~ 350 km
        (POLICY, "440100", north_of(GUANGZHOU, 199.9), True, Reason.NEAR_SHORE),
        (POLICY, "440100", north_of(GUANGZHOU, 199.9999), True, Reason.NEAR_SHORE),
        (POLICY, "440100", north_of(GUANGZHOU, 200.1), False, Reason.TOO_FAR),
        # Compared unrounded: 200.0004 km is past the limit though it rounds to 200.000.
        (POLICY, "440100", north_of(GUANGZHOU, 200.0004), False, Reason.TOO_FAR),
        # The province prefix is a prefix of the code: 4401 is not 44 (Guangxi is 45).
        (replace(POLICY, province_prefix="45"), "440100", GUANGZHOU, False, Reason.OUT_OF_PROVINCE),
    ],
)
def test_near_shore_decision(terms, city, site, near_shore, reason):
    verdict = decide_near_shore(terms, city, site, GUANGZHOU)
    assert (verdict.near_shore, verdict.reason_code) == (near_shore, reason)


def test_a_hong_kong_site_declared_as_guangzhou_is_out_of_province():
    verdict = decide_near_shore(POLICY, "440100", HONG_KONG, GUANGZHOU)
    assert (verdict.near_shore, verdict.reason_code) == (False, Reason.OUT_OF_PROVINCE)


def test_a_year_without_policy_keeps_the_verdict_but_says_outside_the_policy_period():
    near = decide_near_shore(POLICY, "440300", SHENZHEN, GUANGZHOU, covered=False)
    assert (near.near_shore, near.reason_code) == (True, Reason.OUTSIDE_POLICY_PERIOD)
    # The geography still decides first.
    far = decide_near_shore(POLICY, "440500", SHANTOU, GUANGZHOU, covered=False)
    assert (far.near_shore, far.reason_code) == (False, Reason.TOO_FAR)


def test_the_distance_is_the_specs_haversine_rounded_half_up_to_the_metre():
    verdict = decide_near_shore(POLICY, "440100", north_of(GUANGZHOU, 123.4566), GUANGZHOU)
    assert (verdict.distance_km, str(verdict.distance_km)) == (D("123.457"), "123.457")
    shenzhen = decide_near_shore(POLICY, "440300", SHENZHEN, GUANGZHOU)
    assert abs(float(shenzhen.distance_km) - oracle.haversine_km(SHENZHEN, GUANGZHOU)) <= 0.0005


# --- the baseline --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "verified_on", "amount", "source"),
    [
        # Declared wins, even over a platform that covered the whole year before.
        (D("500.00"), date(2019, 6, 1), D("500.00"), BaselineSource.DECLARED),
        (D("0"), None, D("0.00"), BaselineSource.DECLARED),  # a declared zero is not missing
        # Platform coverage: verified on or before 1 January of Y−1 (Y = 2026).
        (None, date(2019, 6, 1), D("300.00"), BaselineSource.PLATFORM),
        (None, date(2025, 1, 1), D("300.00"), BaselineSource.PLATFORM),
        (None, date(2025, 1, 2), None, BaselineSource.MISSING),
        (None, date(2026, 3, 1), None, BaselineSource.MISSING),
        (None, None, None, BaselineSource.MISSING),  # never verified
    ],
)
def test_baseline_of(declared, verified_on, amount, source):
    baseline = baseline_of(
        2026, declared_prior=declared, platform_prior=D("300.00"), verified_on=verified_on
    )
    assert (baseline.amount, baseline.source) == (amount, source)


# --- the position ----------------------------------------------------------------------------


def position(total: str, baseline: str | None, *, terms=POLICY, covered=True, provisional="0"):
    source = BaselineSource.MISSING if baseline is None else BaselineSource.DECLARED
    return position_of(
        D(total),
        Baseline(None if baseline is None else D(baseline), source),
        terms,
        covered=covered,
        provisional_baseline=D(provisional),
    )


@pytest.mark.parametrize(
    ("total", "baseline", "increment", "subsidy"),
    [
        ("300.00", "0.00", "300.00", "3.00"),
        ("300.00", "300.00", "0.00", "0.00"),
        ("300.00", "1000.00", "0.00", "0.00"),  # below the baseline: nothing, not negative
        ("1000.50", "1000.00", "0.50", "0.01"),  # 0.005 rounds half up (not to even)
        ("1149.50", "1000.00", "149.50", "1.50"),  # 1.495 → 1.50
        ("1000.49", "1000.00", "0.49", "0.00"),  # 0.0049 → 0.00
        ("200000000.00", "0.00", "200000000.00", "2000000.00"),  # exactly the cap
        ("200000100.00", "0.00", "200000100.00", "2000000.00"),  # capped
        ("350000000.00", "100.00", "349999900.00", "2000000.00"),
    ],
)
def test_position_increment_and_subsidy(total, baseline, increment, subsidy):
    got = position(total, baseline)
    assert (got.increment, got.subsidy, got.held) == (D(increment), D(subsidy), False)
    assert (str(got.increment), str(got.subsidy)) == (increment, subsidy)


def test_no_negative_zero_anywhere():
    got = position("0.00", "300.00")
    assert not got.increment.is_signed() and not got.subsidy.is_signed()
    assert str(money(D("-0.001"))) == "0.00" and not money(D("-0.004")).is_signed()
    assert str(money(D("-0.00"))) == "0.00"


def test_with_the_baseline_missing_the_year_is_held_and_shows_what_would_be_due():
    got = position("1500.00", None, provisional="1000.00")
    assert (got.increment, got.subsidy, got.held) == (D("0.00"), D("0.00"), True)
    assert (got.increment_if_declared, got.subsidy_if_declared) == (D("500.00"), D("5.00"))
    assert got.baseline.amount is None


def test_a_year_no_policy_covers_earns_nothing_and_is_not_held():
    got = position("1500.00", None, covered=False)
    assert (got.increment, got.subsidy, got.held) == (D("0.00"), D("0.00"), False)
    assert position("1500.00", "0.00", covered=False).subsidy == D("0.00")


@settings(max_examples=200, derandomize=True, database=None)
@given(
    total=st.decimals(min_value=0, max_value=400_000_000, places=2),
    baseline=st.none() | st.decimals(min_value=0, max_value=400_000_000, places=2),
)
def test_position_equals_the_oracles_formula(total, baseline):
    got = position(str(total), None if baseline is None else str(baseline))
    if baseline is None:
        assert (got.increment, got.subsidy, got.held) == (D("0.00"), D("0.00"), True)
        return
    increment = oracle.cents(max(oracle.ZERO, total - baseline))
    assert (got.increment, got.subsidy) == (increment, oracle.subsidy_of(increment))


# --- the policy of a year ------------------------------------------------------------------------

V2 = replace(
    POLICY,
    version=2,
    effective_from=date(2027, 1, 1),
    effective_until=date(2027, 12, 31),
    rate=D("0.02"),
)
V3 = replace(POLICY, version=3, effective_from=date(2029, 1, 1), effective_until=None)
ENDED = replace(POLICY, effective_until=date(2026, 12, 31))


@pytest.mark.parametrize(
    ("policies", "year", "version", "covered"),
    [
        ([POLICY], 2026, 1, True),
        ([POLICY], 2020, 1, True),
        ([POLICY], 2019, 1, False),  # before the first version: its rules, no subsidy
        ([POLICY, V2], 2026, 1, True),
        ([POLICY, V2], 2027, 2, True),  # the highest version covering all of the year
        ([POLICY, V2], 2028, 1, True),  # v1 is open-ended
        ([ENDED, V2, V3], 2028, 2, False),  # a gap: the latest begun before, no subsidy
        ([ENDED, V2, V3], 2030, 3, True),
    ],
)
def test_policy_for_year(policies, year, version, covered):
    terms, is_covered = ledger.policy_for_year(policies, year)
    assert (terms.version, is_covered) == (version, covered)


def test_policy_for_year_without_any_policy_is_an_error():
    with pytest.raises(LookupError):
        ledger.policy_for_year([], 2026)


# --- the hash chain, formats 1 and 2 -------------------------------------------------------------


def _values(format_: int = 1, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "seq": 1,
        "kind": EntryKind.RECORD,
        "purchase_id": 7,
        "oem_org_id": 1,
        "supplier_org_id": 2,
        "supplier_city_code": "440300",
        "year": 2026,
        "purchased_on": date(2026, 3, 1),
        "amount": D("10000.00"),
        "near_shore": True,
        "reason_code": "NEAR_SHORE",
        "distance_km": D("104.5"),
        "policy_version": 1,
        "baseline": D("0"),
        "near_shore_total_before": D("0.00"),
        "increment": D("10000.00"),
        "subsidy": D("100.00"),
        "recorded_at": datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
    }
    if format_ == 2:
        values |= {
            "format": 2,
            "cause": "record:7:1",
            "plant_city_code": "440100",
            "baseline_source": "platform",
            "held": False,
            "near_shore_total": D("10000.00"),
            "increment_total": D("10000.00"),
            "subsidy_total": D("100.00"),
        }
    values.update(overrides)
    return values


FORMAT_1_JSON = (
    '{"amount":"10000.00","baseline":"0.00","distance_km":"104.500","increment":"10000.00",'
    '"kind":"record","near_shore":true,"near_shore_total_before":"0.00","oem_org_id":1,'
    '"policy_version":1,"purchase_id":7,"purchased_on":"2026-03-01","reason_code":"NEAR_SHORE",'
    '"recorded_at":"2026-03-01T08:00:00.000000+00:00","seq":1,"subsidy":"100.00",'
    '"supplier_city_code":"440300","supplier_org_id":2,"year":2026}'
)
FORMAT_2_JSON = (
    '{"amount":"10000.00","baseline":"0.00","baseline_source":"platform",'
    '"cause":"record:7:1","distance_km":"104.500","format":2,"held":false,'
    '"increment":"10000.00","increment_total":"10000.00","kind":"record",'
    '"near_shore":true,"near_shore_total":"10000.00","near_shore_total_before":"0.00",'
    '"oem_org_id":1,"plant_city_code":"440100","policy_version":1,"purchase_id":7,'
    '"purchased_on":"2026-03-01","reason_code":"NEAR_SHORE",'
    '"recorded_at":"2026-03-01T08:00:00.000000+00:00","seq":1,"subsidy":"100.00",'
    '"subsidy_total":"100.00","supplier_city_code":"440300","supplier_org_id":2,"year":2026}'
)


@pytest.mark.parametrize(("format_", "document"), [(1, FORMAT_1_JSON), (2, FORMAT_2_JSON)])
def test_canonical_json_is_sorted_compact_and_exact(format_, document):
    values = _values(format_)
    # A format-1 entry hashes its 18 fields only, whatever else its row has.
    if format_ == 1:
        values |= {"cause": "ignored", "held": None, "baseline_source": None}
    assert ledger.canonical_json(values) == document
    assert (
        ledger.chain_hash(ledger.GENESIS_HASH, values)
        == hashlib.sha256((ledger.GENESIS_HASH + document).encode()).hexdigest()
    )


def test_canonical_json_of_an_adjustment_has_nulls_and_no_negative_zero():
    adjustment = _values(
        2,
        kind=EntryKind.ADJUSTMENT,
        cause="adjust:1:2026:9",
        purchase_id=None,
        supplier_org_id=None,
        supplier_city_code=None,
        plant_city_code=None,
        purchased_on=None,
        distance_km=None,
        amount=D("-0.00"),
        baseline=None,
        baseline_source="missing",
        held=True,
        increment=D("-0.001"),
        subsidy=D("0"),
        reason_code="BASELINE_CHANGED",
    )
    document = ledger.canonical_json(adjustment)
    assert '"purchase_id":null' in document and '"baseline":null' in document
    assert '"amount":"0.00"' in document and '"increment":"0.00"' in document
    assert '"-0' not in document and '"held":true' in document


FORMAT_1_CHANGES: dict[str, Any] = {
    "seq": 2,
    "kind": EntryKind.REVERSAL,
    "purchase_id": 8,
    "oem_org_id": 3,
    "supplier_org_id": 4,
    "supplier_city_code": "440100",
    "year": 2027,
    "purchased_on": date(2026, 3, 2),
    "amount": D("10000.01"),
    "near_shore": False,
    "reason_code": "TOO_FAR",
    "distance_km": D("104.501"),
    "policy_version": 2,
    "baseline": D("0.01"),
    "near_shore_total_before": D("0.01"),
    "increment": D("9999.99"),
    "subsidy": D("99.99"),
    "recorded_at": datetime(2026, 3, 1, 8, 0, 0, 1, tzinfo=UTC),
}
FORMAT_2_CHANGES: dict[str, Any] = {
    **FORMAT_1_CHANGES,
    "format": 1,  # a format-2 entry claimed as format 1 hashes differently
    "cause": "record:7:2",
    "plant_city_code": "440300",
    "baseline_source": "declared",
    "held": True,
    "near_shore_total": D("10000.01"),
    "increment_total": D("9999.99"),
    "subsidy_total": D("99.99"),
}


@pytest.mark.parametrize(("format_", "changes"), [(1, FORMAT_1_CHANGES), (2, FORMAT_2_CHANGES)])
def test_every_hashed_field_changes_the_hash(format_, changes):
    assert set(changes) == set(HASHED_FIELDS[format_])
    base = ledger.chain_hash(ledger.GENESIS_HASH, _values(format_))
    for name, value in changes.items():
        assert ledger.chain_hash(ledger.GENESIS_HASH, _values(format_, **{name: value})) != base, (
            name
        )
    assert ledger.chain_hash("1" * 64, _values(format_)) != base
    # The same instant in another zone is the same entry.
    same = datetime(2026, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    assert ledger.chain_hash(ledger.GENESIS_HASH, _values(format_, recorded_at=same)) == base


def test_format_2_hashes_every_field_of_format_1_and_the_position():
    assert set(HASHED_FIELDS_V1) < set(HASHED_FIELDS_V2)
    assert {"near_shore_total", "increment_total", "subsidy_total", "held", "baseline_source"} <= (
        set(HASHED_FIELDS_V2)
    )


# --- through the database ----------------------------------------------------------------------

Y = 2026  # the year under test; Y − 1 = 2025 (fixed: the ledger accepts any year it is given)
LONG_AGO = datetime(2019, 6, 1, tzinfo=UTC)  # covers every year under test


@pytest.fixture
def world(db_session) -> Iterator[dict[str, Any]]:
    """An OEM the platform covered since 2019 with a plant in Guangzhou; a near (Shenzhen), a
    far (Shantou) and an out-of-province (Changsha) supplier. Afterwards: the invariant."""
    ledger.ensure_default_policy()  # a committed_db test before may have emptied the table
    oem = factories.make_org(OrgKind.OEM, verified_at=LONG_AGO)
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    hunan = factories.make_org(city_code="430100")
    hunan_site = factories.make_site(hunan, at=CHANGSHA)
    owners = {near_site: near, far_site: far, hunan_site: hunan}

    def buy(amount: str, on: str, *, site=near_site, oem_=oem, plant_=plant, **fields):
        return factories.make_purchase(
            oem_,
            plant_,
            owners[site],
            site,
            amount=amount,
            purchased_on=date.fromisoformat(on),
            **fields,
        )

    yield {
        "oem": oem,
        "plant": plant,
        "near_site": near_site,
        "far_site": far_site,
        "hunan_site": hunan_site,
        "buy": buy,
    }
    db.session.flush()
    assert ledger.verify_chain().ok
    oracle.assert_ledger_matches_oracle(db.session)


def sync(*purchases: Any) -> list[list[int]]:
    """What the worker does for these purchases' outbox rows: under the lock, in order."""
    db.session.flush()
    ledger.acquire_ledger_lock()
    return [o.appended for o in ledger.sync_purchases([p.id for p in purchases])]


def declare(oem: Any, year: int, amount: str) -> list[int]:
    """An admin declares (or corrects) the baseline of ``year``; the worker settles year + 1."""
    row = db.session.scalar(
        select(DeclaredBaseline).where(
            DeclaredBaseline.oem_org_id == oem.id, DeclaredBaseline.year == year
        )
    )
    if row is None:
        db.session.add(DeclaredBaseline(oem_org_id=oem.id, year=year, amount=D(amount)))
    else:
        row.amount = D(amount)
    db.session.flush()
    ledger.acquire_ledger_lock()
    return ledger.settle_year(oem.id, year + 1)


def _entries(oem: Any = None, year: int | None = None) -> list[LedgerEntry]:
    query = select(LedgerEntry).order_by(LedgerEntry.seq)
    if oem is not None:
        query = query.where(LedgerEntry.oem_org_id == oem.id)
    if year is not None:
        query = query.where(LedgerEntry.year == year)
    return list(db.session.scalars(query))


def _sums(oem: Any, year: int) -> tuple[Decimal, Decimal]:
    mine = _entries(oem, year)
    return sum((e.increment for e in mine), D(0)), sum((e.subsidy for e in mine), D(0))


def test_sync_builds_a_verifiable_chain_of_format_2_entries(world):
    buy = world["buy"]
    purchases = [
        buy("300.00", "2025-12-31"),
        buy("200.00", "2026-01-01"),
        buy("150.00", "2026-01-02", site=world["far_site"]),
        buy("150.00", "2026-01-03"),
        buy("999.00", "2026-01-04", site=world["hunan_site"]),
    ]
    assert sync(*purchases) == [[1], [2], [3], [4], [5]]
    entries = _entries()
    assert entries[0].prev_hash == ledger.GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert {(e.format, e.kind) for e in entries} == {(2, EntryKind.RECORD)}
    assert [(e.reason_code, e.increment, e.subsidy) for e in entries] == [
        ("NEAR_SHORE", D("300.00"), D("3.00")),  # B(2025) = T(2024) = 0
        ("NEAR_SHORE", D("0.00"), D("0.00")),  # 200 against B(2026) = 300
        ("TOO_FAR", D("0.00"), D("0.00")),
        ("NEAR_SHORE", D("50.00"), D("0.50")),  # 350 − 300
        ("OUT_OF_PROVINCE", D("0.00"), D("0.00")),
    ]
    last = entries[3]
    assert (last.baseline, last.baseline_source, last.held) == (D("300.00"), "platform", False)
    assert (last.near_shore_total_before, last.near_shore_total) == (D("200.00"), D("350.00"))
    assert [e.cause for e in entries] == [f"record:{p.id}:1" for p in purchases]
    report = ledger.verify_chain()
    assert (report.ok, report.entries, report.head_hash) == (True, 5, entries[-1].entry_hash)


def test_each_effect_once_whatever_the_repeats(world):
    purchase = world["buy"]("100.00", "2026-05-01")
    assert sync(*[purchase] * 10) == [[1]] + [[]] * 9
    for _ in range(10):
        assert sync(purchase) == [[]]
    assert len(_entries()) == 1
    assert ledger.ledger_status(purchase.id, confidential=False)["status"] == "recorded"


def test_a_cancelled_counted_purchase_is_reversed_once(world):
    kept = world["buy"]("100.00", "2026-05-01")
    cancelled = world["buy"]("400.00", "2026-05-02")
    sync(kept, cancelled)
    cancelled.status = PurchaseStatus.CANCELLED
    assert sync(*[cancelled] * 10) == [[3]] + [[]] * 9
    assert sync(cancelled, kept) == [[], []]
    record, reversal = _entries()[1:]
    assert (record.kind, reversal.kind) == (EntryKind.RECORD, EntryKind.REVERSAL)
    assert reversal.amount == -record.amount
    assert (reversal.increment, reversal.subsidy) == (-record.increment, -record.subsidy)
    assert reversal.cause == f"reversal:{cancelled.id}:1"
    assert reversal.near_shore_total == D("100.00")
    assert ledger.ledger_status(cancelled.id, confidential=False)["status"] == "reversed"


def test_a_purchase_cancelled_before_it_was_counted_appends_nothing(world):
    purchase = world["buy"]("100.00", "2026-05-01", status=PurchaseStatus.CANCELLED)
    assert sync(purchase, purchase) == [[], []]
    assert _entries() == []
    assert ledger.ledger_status(purchase.id, confidential=False)["status"] == "not_counted"


@pytest.mark.parametrize(
    "fields",
    [
        {"status": PurchaseStatus.PENDING_CONFIRMATION, "confirmation": None},
        {"status": PurchaseStatus.DISPUTED, "confirmation": None},
        {"review": InvoiceReview.PENDING},
        {"review": InvoiceReview.REJECTED},
    ],
    ids=["pending_confirmation", "disputed", "review_pending", "review_rejected"],
)
def test_nothing_unconfirmed_or_held_reaches_the_ledger(world, fields):
    purchase = world["buy"]("100.00", "2026-05-01", **fields)
    assert sync(purchase) == [[]]
    assert _entries() == []


def test_a_counted_purchase_put_in_review_is_uncounted_then_counted_once_released(world):
    purchase = world["buy"]("100.00", "2026-05-01")
    sync(purchase)
    purchase.review = InvoiceReview.PENDING  # another OEM confirmed the same supplier invoice
    assert sync(purchase, purchase) == [[2], []]
    purchase.review = InvoiceReview.RELEASED
    assert sync(purchase, purchase) == [[3], []]
    assert [e.cause for e in _entries()] == [
        f"record:{purchase.id}:1",
        f"reversal:{purchase.id}:1",
        f"record:{purchase.id}:2",
    ]
    assert _sums(world["oem"], Y) == (D("100.00"), D("1.00"))


def test_a_held_year_then_a_late_declaration_appends_one_adjustment(world):
    # An OEM verified in 2026: the platform did not cover 2025, so B(2026) is missing.
    newcomer = factories.make_org(OrgKind.OEM, verified_at=datetime(2026, 2, 1, tzinfo=UTC))
    plant = factories.make_site(newcomer, at=GUANGZHOU)
    buy = world["buy"]
    first = buy("3000.00", "2026-03-01", oem_=newcomer, plant_=plant)
    second = buy("1500.00", "2026-04-01", oem_=newcomer, plant_=plant)
    sync(first, second)
    held = _entries(newcomer, Y)
    assert [(e.increment, e.subsidy, e.held, e.baseline) for e in held] == [
        (D("0.00"), D("0.00"), True, None)
    ] * 2
    assert {e.baseline_source for e in held} == {"missing"}
    position = ledger.oem_position(newcomer.id, Y)
    assert (position["held"], position["subsidy"]) == (True, D("0.00"))
    assert (position["increment_if_declared"], position["subsidy_if_declared"]) == (
        D("4500.00"),
        D("45.00"),
    )

    (seq,) = declare(newcomer, Y - 1, "1000.00")
    adjustment = _entries(newcomer, Y)[-1]
    assert adjustment.seq == seq and adjustment.kind is EntryKind.ADJUSTMENT
    assert (adjustment.amount, adjustment.reason_code, adjustment.purchase_id) == (
        D("0.00"),
        "BASELINE_CHANGED",
        None,
    )
    assert (adjustment.baseline, adjustment.baseline_source, adjustment.held) == (
        D("1000.00"),
        "declared",
        False,
    )
    assert (adjustment.increment, adjustment.subsidy) == (D("3500.00"), D("35.00"))
    assert _sums(newcomer, Y) == (D("3500.00"), D("35.00"))
    # Settling again (the rebase job delivered twice) appends nothing.
    ledger.acquire_ledger_lock()
    assert ledger.settle_year(newcomer.id, Y) == []
    # A correction moves the baseline again: one more adjustment, by the difference.
    declare(newcomer, Y - 1, "4000.00")
    assert (_entries(newcomer, Y)[-1].increment, _entries(newcomer, Y)[-1].subsidy) == (
        D("-3000.00"),
        D("-30.00"),
    )
    assert _sums(newcomer, Y) == (D("500.00"), D("5.00"))
    # Later purchases of the year count against the declared baseline.
    third = buy("600.00", "2026-05-01", oem_=newcomer, plant_=plant)
    sync(third)
    assert (_entries(newcomer, Y)[-1].increment, _sums(newcomer, Y)) == (
        D("600.00"),
        (D("1100.00"), D("11.00")),
    )


def test_platform_coverage_is_decided_on_the_asia_shanghai_date(world):
    buy = world["buy"]
    # 16:30 UTC on 31 Dec 2024 is 00:30 on 1 Jan 2025 in Shanghai: covers 2025 → B(2026).
    covered = factories.make_org(
        OrgKind.OEM, verified_at=datetime(2024, 12, 31, 16, 30, tzinfo=UTC)
    )
    # 16:30 UTC on 1 Jan 2025 is 2 Jan in Shanghai: 2025 not covered from its first day.
    late = factories.make_org(OrgKind.OEM, verified_at=datetime(2025, 1, 1, 16, 30, tzinfo=UTC))
    for oem in (covered, late):
        plant = factories.make_site(oem, at=GUANGZHOU)
        sync(buy("200.00", "2026-03-01", oem_=oem, plant_=plant))
    assert (_entries(covered)[0].baseline_source, _entries(covered)[0].increment) == (
        "platform",
        D("200.00"),
    )
    assert (_entries(late)[0].baseline_source, _entries(late)[0].held) == ("missing", True)


def test_a_late_purchase_in_the_year_before_appends_an_adjustment(world):
    buy = world["buy"]
    sync(buy("1000.00", "2026-03-01"))
    assert _sums(world["oem"], Y) == (D("1000.00"), D("10.00"))
    late = buy("400.00", "2025-11-30")
    appended = sync(late)[0]
    assert len(appended) == 2  # the record in 2025, then the adjustment of 2026
    adjustment = _entries(world["oem"], Y)[-1]
    assert adjustment.seq == appended[1] and adjustment.kind is EntryKind.ADJUSTMENT
    assert (adjustment.baseline, adjustment.increment, adjustment.subsidy) == (
        D("400.00"),
        D("-400.00"),
        D("-4.00"),
    )
    assert _sums(world["oem"], Y) == (D("600.00"), D("6.00"))
    # A far purchase of 2025 does not move T(2025): no adjustment.
    assert len(sync(buy("999.00", "2025-12-01", site=world["far_site"]))[0]) == 1
    # Cancelling the late one moves the baseline back: reversal, then adjustment.
    late.status = PurchaseStatus.CANCELLED
    assert len(sync(late)[0]) == 2
    assert _sums(world["oem"], Y) == (D("1000.00"), D("10.00"))


def test_a_declared_baseline_outranks_the_platform_and_late_purchases_then_move_nothing(world):
    buy = world["buy"]
    assert declare(world["oem"], Y - 1, "5000.00") == []  # nothing of 2026 yet to settle
    sync(buy("6000.00", "2026-03-01"))
    assert _sums(world["oem"], Y) == (D("1000.00"), D("10.00"))
    assert len(sync(buy("400.00", "2025-11-30"))[0]) == 1  # no adjustment: B is declared
    assert _entries(world["oem"], Y)[-1].baseline_source == "declared"


def test_the_cap_is_reached_and_an_adjustment_can_bring_it_back(world):
    buy = world["buy"]
    sync(buy("150000000.00", "2026-01-10"), buy("90000000.00", "2026-02-10"))
    assert _sums(world["oem"], Y) == (D("240000000.00"), D("2000000.00"))
    assert [e.subsidy for e in _entries()] == [D("1500000.00"), D("500000.00")]
    sync(buy("50000000.00", "2025-06-01"))
    assert _sums(world["oem"], Y) == (D("190000000.00"), D("1900000.00"))


def test_the_totals_table_follows_the_entries(world):
    buy = world["buy"]
    first = [buy("300.00", "2025-12-31"), buy("200.00", "2026-01-01")]
    sync(*first)
    later = buy("150.00", "2026-01-03")
    far = buy("999.00", "2026-01-04", site=world["far_site"])
    first[1].status = PurchaseStatus.CANCELLED
    sync(later, far, first[1])
    sync(buy("50.00", "2025-02-01"))  # moves B(2026): an adjustment
    sums: dict[tuple[int, int], tuple[Decimal, Decimal, Decimal]] = {}
    for entry in _entries():
        near, increment, subsidy = sums.get((entry.oem_org_id, entry.year), (D(0),) * 3)
        sums[(entry.oem_org_id, entry.year)] = (
            near + (entry.amount if entry.near_shore else 0),
            increment + entry.increment,
            subsidy + entry.subsidy,
        )
    totals = {
        (t.oem_org_id, t.year): (t.near_shore_total, t.increment_total, t.subsidy_total)
        for t in db.session.scalars(select(LedgerTotal))
    }
    oem = world["oem"].id
    assert (
        totals
        == sums
        == {
            (oem, 2025): (D("350.00"), D("350.00"), D("3.50")),
            (oem, 2026): (D("150.00"), D("0.00"), D("0.00")),
        }
    )


def test_preview_equals_the_entry_that_follows_and_writes_nothing(world):
    buy = world["buy"]
    sync(buy("300.00", "2025-04-01"), buy("200.00", "2026-04-01"))

    def counts() -> tuple[int, int]:
        return (
            db.session.scalar(select(func.count()).select_from(LedgerEntry)),
            db.session.scalar(select(func.count()).select_from(LedgerTotal)),
        )

    before = counts()
    purchase = buy("150.00", "2026-05-01")
    fact = ledger.append.load_facts([purchase.id])[purchase.id]
    preview = ledger.preview(fact)
    assert counts() == before
    assert (preview.near_shore, preview.baseline, preview.increment, preview.subsidy) == (
        True,
        D("300.00"),
        D("50.00"),
        D("0.50"),
    )
    assert preview.message.startswith("adds ¥50.00 of new near-shore purchasing")
    sync(purchase)
    entry = _entries()[-1]
    assert (entry.increment, entry.subsidy, entry.baseline, entry.near_shore) == (
        preview.increment,
        preview.subsidy,
        preview.baseline,
        preview.near_shore,
    )
    assert (entry.near_shore_total_before, entry.near_shore_total) == (
        preview.near_shore_total_before,
        preview.near_shore_total_after,
    )
    far = buy("150.00", "2026-05-01", site=world["far_site"])
    far_preview = ledger.preview(ledger.append.load_facts([far.id])[far.id])
    assert (far_preview.near_shore, far_preview.reason_code, far_preview.subsidy) == (
        False,
        "TOO_FAR",
        D("0.00"),
    )
    assert far_preview.message.startswith("not near-shore (TOO_FAR")
    sync(far)
    assert _entries()[-1].subsidy == far_preview.subsidy


def test_a_held_preview_says_so(world):
    newcomer = factories.make_org(OrgKind.OEM, verified_at=datetime(2026, 2, 1, tzinfo=UTC))
    plant = factories.make_site(newcomer, at=GUANGZHOU)
    purchase = world["buy"]("150.00", "2026-05-01", oem_=newcomer, plant_=plant)
    preview = ledger.preview(ledger.append.load_facts([purchase.id])[purchase.id])
    assert (preview.held, preview.increment, preview.baseline_source) == (
        True,
        D("0.00"),
        "missing",
    )
    assert "held until the 2025 baseline is declared" in preview.message
    sync(purchase)


def test_the_first_policy_is_seeded_when_none_exists(world):
    db.session.execute(text("DELETE FROM subsidy_policies"))
    sync(world["buy"]("100.00", "2026-05-01"))
    assert [t.version for t in ledger.load_policy_terms()] == [1]
    assert ledger.load_policy_terms()[0] == ledger.DEFAULT_POLICY
    assert _entries()[0].policy_version == 1


def _refused(statement: str) -> str:
    """Run ``statement`` in a savepoint; return the database's refusal."""
    savepoint = db.session.begin_nested()
    with pytest.raises(Exception) as caught:
        db.session.execute(text(statement))
        db.session.flush()
    savepoint.rollback()
    return str(caught.value)


def test_the_database_refuses_to_change_or_delete_an_entry(world):
    """Two locks: the app's role has no UPDATE/DELETE right (PostgreSQL), and the trigger
    refuses both even to the owner (both databases; SQLite's DELETE since 0012)."""
    sync(world["buy"]("100.00", "2026-05-01"))
    statements = (
        "UPDATE ledger_entries SET amount = 1",
        "UPDATE ledger_entries SET held = true",
        "DELETE FROM ledger_entries",
    )
    if db.session.get_bind().dialect.name == "postgresql" and USE_ROLES:
        for statement in statements:
            assert "permission denied for table ledger_entries" in _refused(statement)
        db.session.connection().exec_driver_sql("RESET ROLE")  # the owner now
    for statement in statements:
        assert "append-only" in _refused(statement)
    assert ledger.verify_chain().ok and len(_entries()) == 1
