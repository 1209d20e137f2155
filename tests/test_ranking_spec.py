"""The plain-Python ranking spec (the reference the search backends are compared with)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, timedelta

import pytest

from search import spec

TODAY = date(2026, 11, 25)


def supplier(id_=1, **kw):
    defaults = dict(
        id=id_,
        active=True,
        listed=True,
        tier=1,
        categories=("chassis.brake",),
        sites=(spec.SiteFact(10 * id_, 23.0, 113.0),),
        certifications=(),
    )
    defaults.update(kw)
    return spec.SupplierFact(**defaults)


def demand(**kw):
    defaults = dict(lat=23.0, lon=113.0, category="chassis", need_by=TODAY + timedelta(days=60))
    defaults.update(kw)
    return spec.DemandFact(**defaults)


def test_haversine_matches_a_known_distance():
    # One degree of latitude on the mean-radius sphere.
    assert spec.haversine_km(23.0, 113.0, 24.0, 113.0) == pytest.approx(
        spec.EARTH_RADIUS_KM * math.pi / 180, rel=1e-12
    )


@pytest.mark.parametrize(
    ("distance", "expected"),
    [(0, 1.0), (10, 1.0), (60, 0.5), (110, 0.0625), (210, 0.5**16)],
)
def test_gauss_decay_halves_at_offset_plus_scale(distance, expected):
    # (d − offset) = k·scale gives decay^(k²).
    assert spec.distance_factor(distance) == pytest.approx(expected, rel=1e-12)


def test_category_matches_descendants_not_siblings_or_prefixes():
    assert spec.category_matches("chassis.brake", "chassis")
    assert spec.category_matches("chassis", "chassis")
    assert not spec.category_matches("chassis", "chassis.brake")
    assert not spec.category_matches("chassisx.brake", "chassis")


def test_tier_weights_default_and_override():
    assert spec.tier_factor(2) == 0.8
    weights = spec.normalise_tier_weights({"2": 1.0, "1": 0.7})
    assert weights == {1: 0.7, 2: 1.0, 3: 0.6}


def test_inactive_hidden_or_far_suppliers_are_not_eligible():
    d = demand(radius_km=50)
    assert spec.match(supplier(active=False), d, TODAY) is None
    assert spec.match(supplier(listed=False), d, TODAY) is None
    far = supplier(sites=(spec.SiteFact(1, 24.0, 113.0),))  # ~111 km
    assert spec.match(far, d, TODAY) is None
    inactive_site = supplier(sites=(spec.SiteFact(1, 23.0, 113.0, active=False),))
    assert spec.match(inactive_site, d, TODAY) is None


def test_certifications_must_cover_need_by():
    cert = spec.CertFact(
        5, "iatf-16949", True, TODAY - timedelta(days=10), TODAY + timedelta(days=30), True
    )
    s = supplier(certifications=(cert,))
    assert spec.match(s, demand(required_standards=("iatf-16949",)), TODAY) is None  # expires first
    ok = spec.match(
        s, demand(required_standards=("iatf-16949",), need_by=TODAY + timedelta(days=30)), TODAY
    )
    assert ok is not None and ok.matched_certifications == (5,)
    revoked = spec.CertFact(6, "iatf-16949", False, TODAY, None, True)
    assert (
        spec.match(
            supplier(certifications=(revoked,)), demand(required_standards=("iatf-16949",)), TODAY
        )
        is None
    )
    future = spec.CertFact(7, "iatf-16949", True, TODAY + timedelta(days=1), None, True)
    assert (
        spec.match(
            supplier(certifications=(future,)), demand(required_standards=("iatf-16949",)), TODAY
        )
        is None
    )


def test_only_verified_certifications_count():
    """A certificate pending an admin's review, or rejected, never makes a supplier eligible."""
    wanted = demand(required_standards=("iatf-16949",))
    unverified = spec.CertFact(8, "iatf-16949", True, TODAY - timedelta(days=1), None, False)
    assert spec.match(supplier(certifications=(unverified,)), wanted, TODAY) is None
    verified = replace(unverified, id=9, verified=True)
    found = spec.match(supplier(certifications=(unverified, verified)), wanted, TODAY)
    # Eligible through the verified one; the explanation lists only that one.
    assert found is not None and found.matched_certifications == (9,)


def test_nearest_site_decides_and_ranking_order():
    near_tier2 = supplier(
        1, tier=2, sites=(spec.SiteFact(1, 23.9, 113.0), spec.SiteFact(2, 23.05, 113.0))
    )
    far_tier1 = supplier(2, tier=1, sites=(spec.SiteFact(3, 23.6, 113.0),))
    ranked = spec.rank([far_tier1, near_tier2], demand(), TODAY)
    assert [m.supplier_id for m in ranked] == [1, 2]
    assert ranked[0].nearest_site_id == 2
    assert ranked[0].score == pytest.approx(ranked[0].distance_factor * 0.8)


def test_ties_break_on_distance_then_id():
    a = supplier(7, sites=(spec.SiteFact(1, 23.01, 113.0),))  # inside the offset: f_d = 1
    b = supplier(3, sites=(spec.SiteFact(2, 23.02, 113.0),))
    c = supplier(5, sites=(spec.SiteFact(3, 23.01, 113.0),))
    ranked = spec.rank([a, b, c], demand(), TODAY)
    assert [m.supplier_id for m in ranked] == [5, 7, 3]


def test_the_performance_factor_is_off_by_default():
    good = supplier(1, performance=1.0)
    bad = supplier(2, performance=0.5)
    ranked = spec.rank([bad, good], demand(), TODAY)
    assert [m.performance_factor for m in ranked] == [1.0, 1.0]
    # Off, the score is exactly f_d × f_t, bit for bit (the default ranking is unchanged).
    assert all(m.score == m.distance_factor * m.tier_factor for m in ranked)
    assert [m.supplier_id for m in ranked] == [1, 2]  # equal scores and distances: by id


def test_opting_in_multiplies_by_the_stored_score_and_neutral_without_one():
    d = demand(rank_by_performance=True)
    # Same place and tier: only f_p separates them.
    good = supplier(3, performance=0.9142)
    unknown = supplier(1, performance=None)
    bad = supplier(2, performance=0.5)
    ranked = spec.rank([bad, unknown, good], d, TODAY)
    assert [m.supplier_id for m in ranked] == [3, 1, 2]
    assert [m.performance_factor for m in ranked] == [0.9142, spec.NEUTRAL_PERFORMANCE, 0.5]
    assert ranked[0].score == ranked[0].distance_factor * ranked[0].tier_factor * 0.9142


def test_performance_can_overtake_distance_only_when_asked():
    near_poor = supplier(1, performance=0.5, sites=(spec.SiteFact(1, 23.2, 113.0),))  # ~22 km
    far_good = supplier(2, performance=1.0, sites=(spec.SiteFact(2, 23.4, 113.0),))  # ~44 km
    assert [m.supplier_id for m in spec.rank([near_poor, far_good], demand(), TODAY)] == [1, 2]
    opted = spec.rank([near_poor, far_good], demand(rank_by_performance=True), TODAY)
    assert [m.supplier_id for m in opted] == [2, 1]
