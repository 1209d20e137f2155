"""The ledger's rules, table-driven: near-shore, baseline, increment, subsidy, cap, reversal,
the hash chain; then the same rules through the database (append, exactly once, immutability)."""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from market.services.ledger import (
    DEFAULT_POLICY,
    GENESIS_HASH,
    Computed,
    LedgerBook,
    LedgerRequest,
    PolicyTerms,
    PurchaseFact,
    Reason,
    decide_near_shore,
    increment_of,
    subsidy_of,
)
from sqlalchemy import case, func, select, text

from market.extensions import db
from market.models import (
    DeclaredBaseline,
    EntryKind,
    LedgerEntry,
    LedgerTotal,
    OrgKind,
    PurchaseStatus,
    SubsidyPolicy,
)
from market.services import ledger, subsidy
from tests import factories
from tests.conftest import USE_ROLES
from tests.factories import CHANGSHA, GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
EARTH_RADIUS_KM = 6371.0088


def north_of(point: tuple[float, float], km: float) -> tuple[float, float]:
    """A point ``km`` due north: along a meridian the haversine distance is exactly R·Δφ."""
    return (point[0] + math.degrees(km / EARTH_RADIUS_KM), point[1])


# --- near-shore --------------------------------------------------------------------------------

SHENZHEN_ONLY = replace(DEFAULT_POLICY, province_prefix="4403")


@pytest.mark.parametrize(
    ("terms", "city", "site", "near_shore", "reason"),
    [
        (DEFAULT_POLICY, "440300", SHENZHEN, True, Reason.NEAR_SHORE),
        (DEFAULT_POLICY, "440100", GUANGZHOU, True, Reason.NEAR_SHORE),
        # The province is checked first: a Hunan site is out of province even when it is close.
        (DEFAULT_POLICY, "430100", GUANGZHOU, False, Reason.OUT_OF_PROVINCE),
        (DEFAULT_POLICY, "430100", CHANGSHA, False, Reason.OUT_OF_PROVINCE),
        (DEFAULT_POLICY, "440500", SHANTOU, False, Reason.TOO_FAR),  # ~ 350 km
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 199.9), True, Reason.NEAR_SHORE),
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 199.999), True, Reason.NEAR_SHORE),
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 200.0), True, Reason.NEAR_SHORE),
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 200.001), False, Reason.TOO_FAR),
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 200.1), False, Reason.TOO_FAR),
        # The stored distance (to the metre) decides, so the entry alone re-checks the decision.
        (DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 200.0004), True, Reason.NEAR_SHORE),
        # The prefix is a prefix of the city code, whatever its length.
        (SHENZHEN_ONLY, "440300", SHENZHEN, True, Reason.NEAR_SHORE),
        (SHENZHEN_ONLY, "440100", GUANGZHOU, False, Reason.OUT_OF_PROVINCE),
    ],
)
def test_near_shore_decision(terms, city, site, near_shore, reason):
    decision = decide_near_shore(terms, city, site, GUANGZHOU)
    assert (decision.near_shore, decision.reason_code) == (near_shore, reason)
    assert decision.distance_km == decision.distance_km.quantize(D("0.001"))


def test_distance_is_the_specs_haversine_rounded_to_the_metre():
    assert decide_near_shore(
        DEFAULT_POLICY, "440100", north_of(GUANGZHOU, 123.4567), GUANGZHOU
    ).distance_km == D("123.457")
    assert ledger.distance_km(*GUANGZHOU, *GUANGZHOU) == D("0.000")


# --- increment and subsidy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "before", "amount", "increment"),
    [
        ("100.00", "0.00", "50.00", "0.00"),  # still below the baseline
        ("100.00", "80.00", "50.00", "30.00"),  # crosses it: only the part above counts
        ("100.00", "100.00", "50.00", "50.00"),  # at it
        ("100.00", "150.00", "50.00", "50.00"),  # above it: all of it
        ("0.00", "0.00", "50.00", "50.00"),  # no baseline
        ("100.00", "0.00", "100.00", "0.00"),
        ("100.00", "0.00", "100.01", "0.01"),
        ("2000000.00", "1999999.99", "0.02", "0.01"),
    ],
)
def test_increment(baseline, before, amount, increment):
    assert increment_of(D(amount), D(baseline), D(before)) == D(increment)


@pytest.mark.parametrize(
    ("increment", "rate", "cap", "granted", "expected"),
    [
        ("12345.65", "0.01", "2000000.00", "0.00", "123.46"),  # 123.4565 half-up
        ("0.50", "0.01", "2000000.00", "0.00", "0.01"),  # 0.005: half-up (half-even: 0.00)
        ("0.49", "0.01", "2000000.00", "0.00", "0.00"),
        ("2.50", "0.01", "2000000.00", "0.00", "0.03"),  # 0.025: half-up (half-even: 0.02)
        ("0.00", "0.01", "2000000.00", "0.00", "0.00"),
        ("5000.00", "0.01", "2000000.00", "1999990.00", "10.00"),  # the cap reached mid-purchase
        ("5000.00", "0.01", "2000000.00", "2000000.00", "0.00"),  # already at the cap
        ("5000.00", "0.01", "1000.00", "1500.00", "0.00"),  # past a (lowered) cap: clamp at 0
        ("333.33", "0.015", "2000000.00", "0.00", "5.00"),  # 4.99995 half-up
    ],
)
def test_subsidy(increment, rate, cap, granted, expected):
    assert subsidy_of(D(increment), D(rate), D(cap), D(granted)) == D(expected)


# --- sequences in ledger order -----------------------------------------------------------------

OEM, OTHER_OEM = 1, 2
_ids = iter(range(1, 10_000))


def fact(
    amount: str,
    on: str,
    *,
    oem: int = OEM,
    city: str = "440300",
    site: tuple[float, float] = SHENZHEN,
) -> PurchaseFact:
    return PurchaseFact(
        purchase_id=next(_ids),
        oem_org_id=oem,
        supplier_org_id=99,
        supplier_city_code=city,
        site=site,
        plant=GUANGZHOU,
        amount=D(amount),
        purchased_on=date.fromisoformat(on),
    )


def run(book: LedgerBook, steps: list[PurchaseFact]) -> list[Computed]:
    return [book.record(step) for step in steps]


def figures(entries: list[Computed]) -> list[tuple[str, str, str, str]]:
    return [
        (str(e.baseline), str(e.near_shore_total_before), str(e.increment), str(e.subsidy))
        for e in entries
    ]


def test_increments_across_a_year_boundary():
    book = LedgerBook(policies=[DEFAULT_POLICY])
    entries = run(
        book,
        [
            fact("300.00", "2025-12-31"),  # 2025: baseline 0 (nothing in 2024)
            fact("200.00", "2026-01-01"),  # 2026: baseline = 2025's 300; C = 0
            fact("150.00", "2026-01-02"),  # C = 200: 350 − 300 = 50 above the baseline
            fact("150.00", "2026-06-30"),  # C = 350 > B: all of it
        ],
    )
    assert figures(entries) == [
        ("0.00", "0.00", "300.00", "3.00"),
        ("300.00", "0.00", "0.00", "0.00"),
        ("300.00", "200.00", "50.00", "0.50"),
        ("300.00", "350.00", "150.00", "1.50"),
    ]


def test_a_late_entry_of_last_year_moves_the_baseline_of_later_entries_only():
    book = LedgerBook(policies=[DEFAULT_POLICY])
    entries = run(
        book,
        [
            fact("100.00", "2026-02-01"),  # baseline 0: all 100 new
            fact("500.00", "2025-11-30"),  # recorded late: 2025 grows to 500
            fact("100.00", "2026-03-01"),  # baseline now 500, C = 100: nothing new
        ],
    )
    assert [e.increment for e in entries] == [D("100.00"), D("500.00"), D("0.00")]
    assert entries[2].baseline == D("500.00")


@pytest.mark.parametrize(
    ("declared", "expected_baseline", "expected_increment"),
    [
        ({}, "300.00", "0.00"),  # no declaration: last year's ledger total
        ({(OEM, 2025): D("1000.00")}, "1000.00", "0.00"),  # the declared total wins
        ({(OEM, 2025): D("50.00")}, "50.00", "150.00"),  # even when smaller than the ledger's
        ({(OTHER_OEM, 2025): D("9999.00")}, "300.00", "0.00"),  # another OEM's: no effect
        ({(OEM, 2024): D("9999.00")}, "300.00", "0.00"),  # another year's: no effect
    ],
)
def test_baseline_from_last_years_ledger_or_declared(
    declared, expected_baseline, expected_increment
):
    book = LedgerBook(policies=[DEFAULT_POLICY], declared=declared)
    book.record(fact("300.00", "2025-05-01"))
    entry = book.record(fact("200.00", "2026-05-01"))
    assert (entry.baseline, entry.increment) == (D(expected_baseline), D(expected_increment))
    assert book.baseline(OEM, 2026) == (
        D(expected_baseline),
        "declared" if (OEM, 2025) in declared else "ledger",
    )


def test_the_cap_is_reached_mid_purchase_and_then_nothing_more():
    small_cap = replace(DEFAULT_POLICY, annual_cap=D("5.00"))
    book = LedgerBook(policies=[small_cap])
    entries = run(
        book,
        [
            fact("300.00", "2026-01-10"),  # 3.00
            fact("300.00", "2026-01-11"),  # 3.00 due, 2.00 left: capped mid-purchase
            fact("300.00", "2026-01-12"),  # 0.00
            fact("300.00", "2027-01-12", oem=OEM),  # a new year, a new cap (increment 0 here)
            fact("300.00", "2026-01-13", oem=OTHER_OEM),  # the cap is per OEM
        ],
    )
    assert [e.subsidy for e in entries] == [D("3.00"), D("2.00"), D("0.00"), D("0.00"), D("3.00")]
    assert [e.increment for e in entries][:3] == [D("300.00")] * 3  # increments still counted
    assert book.subsidy_granted(OEM, 2026) == D("5.00")


def test_the_real_cap_of_two_million():
    book = LedgerBook(policies=[DEFAULT_POLICY])
    first = book.record(fact("199999000.00", "2026-01-10"))  # 1,999,990.00
    second = book.record(fact("5000.00", "2026-01-11"))  # 50.00 due, 10.00 left
    assert (first.subsidy, second.subsidy) == (D("1999990.00"), D("10.00"))


def test_not_near_shore_purchases_count_for_nothing():
    book = LedgerBook(policies=[DEFAULT_POLICY])
    far = book.record(fact("1000.00", "2026-01-01", city="440500", site=SHANTOU))
    hunan = book.record(fact("1000.00", "2026-01-02", city="430100", site=CHANGSHA))
    near = book.record(fact("100.00", "2026-01-03"))
    assert (far.reason_code, hunan.reason_code) == (Reason.TOO_FAR, Reason.OUT_OF_PROVINCE)
    assert far.increment == hunan.increment == far.subsidy == D("0.00")
    assert near.near_shore_total_before == D("0.00")
    assert book.near_shore_total(OEM, 2026) == D("100.00")


def test_a_reversal_negates_the_record_and_later_purchases_see_the_lower_total():
    book = LedgerBook(policies=[DEFAULT_POLICY], declared={(OEM, 2025): D("100.00")})
    first = book.record(fact("150.00", "2026-01-10"))  # 50 above the baseline
    reversal = book.reverse(first)
    after = book.record(fact("120.00", "2026-02-10"))  # C back to 0: 20 above the baseline
    assert (reversal.kind, reversal.amount, reversal.increment, reversal.subsidy) == (
        EntryKind.REVERSAL,
        D("-150.00"),
        D("-50.00"),
        D("-0.50"),
    )
    assert reversal.near_shore_total_before == D("150.00")
    assert (reversal.policy_version, reversal.reason_code) == (1, Reason.NEAR_SHORE)
    assert (after.near_shore_total_before, after.increment) == (D("0.00"), D("20.00"))
    assert book.subsidy_granted(OEM, 2026) == D("0.20")


def test_reversal_of_a_zero_entry_has_no_negative_zero():
    book = LedgerBook(policies=[DEFAULT_POLICY])
    far = book.record(fact("10.00", "2026-01-01", city="440500", site=SHANTOU))
    reversal = book.reverse(far)
    assert str(reversal.increment) == "0.00" and str(reversal.subsidy) == "0.00"


def test_purchases_outside_every_policy_are_recorded_without_subsidy():
    book = LedgerBook(policies=[DEFAULT_POLICY])  # in force from 2020-01-01
    old = book.record(fact("400.00", "2019-06-01"))
    first = book.record(fact("500.00", "2020-03-01"))
    assert (old.near_shore, old.reason_code, old.increment, old.subsidy) == (
        True,
        Reason.OUTSIDE_POLICY_PERIOD,
        D("0.00"),
        D("0.00"),
    )
    assert (first.baseline, first.increment) == (D("400.00"), D("100.00"))


def test_each_entry_uses_the_policy_in_force_on_its_purchase_date():
    v2 = PolicyTerms(
        version=2,
        effective_from=date(2027, 1, 1),
        effective_until=None,
        province_prefix="44",
        max_distance_km=D("100.000"),
        rate=D("0.02"),
        annual_cap=D("2000000.00"),
    )
    book = LedgerBook(policies=[DEFAULT_POLICY, v2])
    site_150km = north_of(GUANGZHOU, 150)
    in_2026 = book.record(fact("100.00", "2026-12-31", site=site_150km, city="440100"))
    in_2027 = book.record(fact("100.00", "2027-01-01", site=site_150km, city="440100"))
    near_2027 = book.record(
        fact("1000.00", "2027-01-02", site=north_of(GUANGZHOU, 50), city="440100")
    )
    assert (in_2026.policy_version, in_2026.near_shore) == (1, True)
    assert (in_2027.policy_version, in_2027.reason_code) == (2, Reason.TOO_FAR)
    assert (near_2027.policy_version, near_2027.increment, near_2027.subsidy) == (
        2,
        D("900.00"),
        D("18.00"),
    )


@pytest.mark.parametrize(
    ("day", "version", "covered"),
    [
        ("2019-12-31", 1, False),
        ("2020-01-01", 1, True),
        ("2026-12-31", 1, True),
        ("2027-01-01", 2, True),
        ("2027-06-30", 2, True),
        ("2027-07-01", 2, False),  # a gap after v2 ends: the nearest earlier version's rules
    ],
)
def test_select_policy(day, version, covered):
    v1 = replace(DEFAULT_POLICY, effective_until=date(2026, 12, 31))
    v2 = replace(DEFAULT_POLICY, version=2, effective_from=date(2027, 1, 1))
    v2 = replace(v2, effective_until=date(2027, 6, 30))
    terms, is_covered = ledger.select_policy([v1, v2], date.fromisoformat(day))
    assert (terms.version, is_covered) == (version, covered)


# --- the hash chain ----------------------------------------------------------------------------


def _values(**overrides):
    values = {
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
    values.update(overrides)
    return values


def test_canonical_json_is_sorted_compact_and_exact():
    document = ledger.canonical_json(_values())
    assert document == (
        '{"amount":"10000.00","baseline":"0.00","distance_km":"104.500","increment":"10000.00",'
        '"kind":"record","near_shore":true,"near_shore_total_before":"0.00","oem_org_id":1,'
        '"policy_version":1,"purchase_id":7,"purchased_on":"2026-03-01","reason_code":"NEAR_SHORE",'
        '"recorded_at":"2026-03-01T08:00:00.000000+00:00","seq":1,"subsidy":"100.00",'
        '"supplier_city_code":"440300","supplier_org_id":2,"year":2026}'
    )
    assert (
        ledger.chain_hash(GENESIS_HASH, _values())
        == hashlib.sha256((GENESIS_HASH + document).encode()).hexdigest()
    )


def test_every_hashed_field_changes_the_hash():
    base = ledger.chain_hash(GENESIS_HASH, _values())
    changed = {
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
    assert set(changed) == set(ledger.HASHED_FIELDS)
    for name, value in changed.items():
        assert ledger.chain_hash(GENESIS_HASH, _values(**{name: value})) != base, name
    assert ledger.chain_hash("1" * 64, _values()) != base
    # The same instant in another zone is the same entry.
    same = datetime(2026, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    assert ledger.chain_hash(GENESIS_HASH, _values(recorded_at=same)) == base


# --- through the database ----------------------------------------------------------------------


@pytest.fixture
def world(db_session):
    """An OEM with a plant in Guangzhou, a near (Shenzhen) and a far (Shantou) supplier."""
    ledger.ensure_default_policy()  # a committed_db test before may have emptied the table
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    near = factories.make_org(city_code="440300")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)

    def buy(amount: str, on: str, *, site=near_site, **fields):
        supplier = near if site is near_site else far
        return factories.make_purchase(
            oem, plant, supplier, site, amount=amount, purchased_on=date.fromisoformat(on), **fields
        )

    return {"oem": oem, "plant": plant, "near_site": near_site, "far_site": far_site, "buy": buy}


def _entries():
    return list(db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))


def test_append_builds_a_verifiable_chain(world):
    buy = world["buy"]
    purchases = [
        buy("300.00", "2025-12-31"),
        buy("200.00", "2026-01-01"),
        buy("150.00", "2026-01-02", site=world["far_site"]),
        buy("150.00", "2026-01-03"),
    ]
    ledger.acquire_ledger_lock()
    outcomes = ledger.append_entries([LedgerRequest(p.id, EntryKind.RECORD) for p in purchases])
    assert [o.appended for o in outcomes] == [[1], [2], [3], [4]]
    entries = _entries()
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert [(e.reason_code, e.increment, e.subsidy) for e in entries] == [
        ("NEAR_SHORE", D("300.00"), D("3.00")),
        ("NEAR_SHORE", D("0.00"), D("0.00")),
        ("TOO_FAR", D("0.00"), D("0.00")),
        ("NEAR_SHORE", D("50.00"), D("0.50")),
    ]
    assert {e.policy_version for e in entries} == {1}
    report = ledger.verify_chain()
    assert (report.ok, report.entries, report.head_hash) == (True, 4, entries[-1].entry_hash)


def test_the_totals_table_follows_the_entries_in_every_batch(world):
    buy = world["buy"]
    first = [buy("300.00", "2025-12-31"), buy("200.00", "2026-01-01")]
    ledger.acquire_ledger_lock()
    ledger.append_entries([LedgerRequest(p.id, EntryKind.RECORD) for p in first])
    later = buy("150.00", "2026-01-03")
    far = buy("999.00", "2026-01-04", site=world["far_site"])
    cancelled = first[1]
    cancelled.status = PurchaseStatus.CANCELLED
    db.session.flush()
    ledger.append_entries(
        [
            LedgerRequest(later.id, EntryKind.RECORD),
            LedgerRequest(far.id, EntryKind.RECORD),
            LedgerRequest(cancelled.id, EntryKind.REVERSAL),
        ]
    )
    near = func.sum(case((LedgerEntry.near_shore.is_(True), LedgerEntry.amount), else_=D("0")))
    sums = {
        (row.oem_org_id, row.year): (row.near, row.subsidy)
        for row in db.session.execute(
            select(
                LedgerEntry.oem_org_id,
                LedgerEntry.year,
                near.label("near"),
                func.sum(LedgerEntry.subsidy).label("subsidy"),
            ).group_by(LedgerEntry.oem_org_id, LedgerEntry.year)
        )
    }
    totals = {
        (t.oem_org_id, t.year): (t.near_shore_total, t.subsidy_total)
        for t in db.session.scalars(select(LedgerTotal))
    }
    oem = world["oem"].id
    assert totals == sums
    assert totals == {
        (oem, 2025): (D("300.00"), D("3.00")),
        # 200 then 150 against a baseline of 300: 50 new (0.50); the 200 reversed, 0 back.
        (oem, 2026): (D("150.00"), D("0.50")),
    }
    # The preview reads these rows: the next near purchase of 2026 starts from 150.00.
    preview = subsidy.preview_for_purchase(buy("10.00", "2026-02-01"))
    assert preview.near_shore_total_before == D("150.00")


def test_a_purchase_is_recorded_once_whatever_the_number_of_requests(world):
    purchase = world["buy"]("100.00", "2026-05-01")
    ledger.acquire_ledger_lock()
    outcomes = ledger.append_entries([LedgerRequest(purchase.id, EntryKind.RECORD)] * 3)
    assert [o.appended for o in outcomes] == [[1], [], []]
    assert ledger.record_purchase(purchase.id).appended == []
    assert len(_entries()) == 1


def test_a_reversal_before_its_record_appends_both_once(world):
    purchase = world["buy"]("100.00", "2026-05-01")
    purchase.status = PurchaseStatus.CANCELLED
    db.session.flush()
    assert ledger.reverse_purchase(purchase.id).appended == [1, 2]
    assert ledger.record_purchase(purchase.id).appended == []
    assert ledger.reverse_purchase(purchase.id).appended == []
    record, reversal = _entries()
    assert (record.kind, reversal.kind) == (EntryKind.RECORD, EntryKind.REVERSAL)
    assert reversal.amount == -record.amount and reversal.subsidy == -record.subsidy
    assert ledger.ledger_status(purchase.id)["status"] == "reversed"


def test_requests_that_cannot_be_honoured_append_nothing(world):
    purchase = world["buy"]("100.00", "2026-05-01")  # not cancelled
    ledger.acquire_ledger_lock()
    missing, not_cancelled, fine = ledger.append_entries(
        [
            LedgerRequest(purchase.id + 1000, EntryKind.RECORD),
            LedgerRequest(purchase.id, EntryKind.REVERSAL),
            LedgerRequest(purchase.id, EntryKind.RECORD),
        ]
    )
    assert "does not exist" in (missing.error or "")
    assert "not cancelled" in (not_cancelled.error or "")
    assert fine.ok and fine.appended == [1]


def test_declared_baseline_is_read_from_the_database(world):
    db.session.add(DeclaredBaseline(oem_org_id=world["oem"].id, year=2025, amount=D("1000.00")))
    ledger.record_purchase(world["buy"]("300.00", "2025-03-01").id)
    entry = ledger.record_purchase(world["buy"]("1200.00", "2026-03-01").id)
    assert entry.ok
    last = _entries()[-1]
    assert (last.baseline, last.increment) == (D("1000.00"), D("200.00"))


def test_the_first_policy_is_seeded_when_none_exists(world):
    db.session.execute(SubsidyPolicy.__table__.delete())
    ledger.record_purchase(world["buy"]("100.00", "2026-05-01").id)
    policy = db.session.scalar(select(SubsidyPolicy))
    assert (policy.version, policy.province_prefix, policy.annual_cap) == (
        1,
        "44",
        D("2000000.00"),
    )
    assert policy.max_distance_km == D("200") and policy.rate == D("0.01")
    assert _entries()[0].policy_version == 1


def test_ledger_status(world):
    purchase = world["buy"]("100.00", "2026-05-01")
    assert ledger.ledger_status(purchase.id) == {
        "status": "pending",
        "entry": None,
        "reversal": None,
    }
    ledger.record_purchase(purchase.id)
    status = ledger.ledger_status(purchase.id)
    entry = _entries()[0]
    assert status["status"] == "recorded"
    assert status["entry"]["seq"] == entry.seq and status["entry"]["entry_hash"] == entry.entry_hash
    assert (status["entry"]["increment"], status["entry"]["subsidy"]) == (D("100.00"), D("1.00"))
    assert status["entry"]["reason_code"] == "NEAR_SHORE" and status["reversal"] is None


def test_preview_matches_the_entry_and_writes_nothing(world):
    buy = world["buy"]
    ledger.record_purchase(buy("300.00", "2025-04-01").id)
    ledger.record_purchase(buy("200.00", "2026-04-01").id)
    count = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    preview = subsidy.preview_purchase(
        oem_org_id=world["oem"].id,
        plant=world["plant"],
        supplier_site=world["near_site"],
        amount=D("150.00"),
        purchased_on=date(2026, 5, 1),
    )
    assert (preview.near_shore, preview.baseline, preview.increment, preview.subsidy) == (
        True,
        D("300.00"),
        D("50.00"),
        D("0.50"),
    )
    assert preview.message.startswith("adds ¥50.00 of new near-shore purchasing")
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == count
    purchase = buy("150.00", "2026-05-01")
    assert subsidy.preview_for_purchase(purchase) == preview
    ledger.record_purchase(purchase.id)
    assert _entries()[-1].increment == preview.increment

    far = subsidy.preview_purchase(
        oem_org_id=world["oem"].id,
        plant=world["plant"],
        supplier_site=world["far_site"],
        amount=D("150.00"),
        purchased_on=date(2026, 5, 1),
    )
    assert (far.near_shore, far.reason_code, far.subsidy) == (False, "TOO_FAR", D("0.00"))
    assert far.message.startswith("not near-shore (TOO_FAR")
    assert subsidy.policy_for(date(2026, 5, 1)).version == 1


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
    ledger.record_purchase(world["buy"]("100.00", "2026-05-01").id)
    db.session.flush()
    statements = ("UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries")
    if db.session.get_bind().dialect.name == "postgresql" and USE_ROLES:
        for statement in statements:
            assert "permission denied for table ledger_entries" in _refused(statement)
        db.session.connection().exec_driver_sql("RESET ROLE")  # the owner now
    for statement in statements:
        assert "append-only" in _refused(statement)
    assert ledger.verify_chain().ok
