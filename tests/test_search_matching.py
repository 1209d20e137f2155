"""Ranking rules, run against every backend (the database one and the real Elasticsearch)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from market.clock import business_today
from market.extensions import db
from market.models import CertStatus, CertVerification, Organization, OrgKind, OrgStatus
from search import spec
from search.backends import MatchPage, SearchBackend, SupplierQuery
from search.database import DatabaseSearchBackend
from tests import factories
from tests.conftest import RUN_ID

TODAY = business_today()
PLANT = factories.GUANGZHOU
NEED_BY = TODAY + timedelta(days=90)


def north_of(point: tuple[float, float], km: float) -> tuple[float, float]:
    """The point ``km`` due north (great circle along the meridian)."""
    return point[0] + math.degrees(km / spec.EARTH_RADIUS_KM), point[1]


def demand(**fields) -> spec.DemandFact:
    defaults = dict(
        lat=PLANT[0], lon=PLANT[1], category="chassis", need_by=NEED_BY, radius_km=200.0
    )
    defaults.update(fields)
    return spec.DemandFact(**defaults)


def supplier(
    km: float = 20.0,
    *,
    categories: tuple[str, ...] = ("chassis.braking.foundation",),
    tier: int | None = 1,
    **fields,
) -> Organization:
    org = factories.make_org(tier=tier, **fields)
    factories.make_site(org, at=north_of(PLANT, km), name=f"Plant {org.id}")
    for category in categories:
        factories.make_capability(org, category)
    return org


class Ranker:
    """Ask a backend, after bringing its index up to date with the session's rows."""

    def __init__(self, backend: SearchBackend, sync: Callable[[], None]) -> None:
        self.backend = backend
        self.sync = sync

    def match(self, fact: spec.DemandFact, page: int = 1, per_page: int = 100) -> MatchPage:
        self.sync()
        return self.backend.match(fact, TODAY, page, per_page)

    def ids(self, fact: spec.DemandFact) -> list[int]:
        return [hit.match.supplier_id for hit in self.match(fact).hits]

    def search(self, query: SupplierQuery) -> list[int]:
        self.sync()
        return [hit.document["id"] for hit in self.backend.search(query, TODAY, 1, 100).hits]


@pytest.fixture(params=["database", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def ranker(request: pytest.FixtureRequest, db_session) -> Iterator[Ranker]:
    if request.param == "database":
        yield Ranker(DatabaseSearchBackend(), lambda: None)
        return
    from search.elastic import ElasticsearchBackend

    url = request.getfixturevalue("elasticsearch_url")
    backend = ElasticsearchBackend(url, f"{RUN_ID}-rules-{id(request)}", timeout=10)

    def sync() -> None:
        ids = db.session.scalars(
            db.select(Organization.id).where(Organization.kind == OrgKind.SUPPLIER)
        ).all()
        assert not any(backend.upsert_suppliers(ids).values())
        backend.refresh()

    yield Ranker(backend, sync)
    for index in backend.alias_targets():
        backend.delete_index(index)


def test_expired_revoked_and_future_certifications_drop_a_supplier(ranker):
    valid = supplier()
    factories.make_certification(valid, "iatf-16949", valid_until=NEED_BY)  # through need_by
    no_expiry = supplier()
    cert = factories.make_certification(no_expiry, "iatf-16949")
    cert.valid_until = None
    expires_first = supplier()
    factories.make_certification(expires_first, "iatf-16949", valid_until=NEED_BY - timedelta(1))
    revoked = supplier()
    factories.make_certification(revoked, "iatf-16949", status=CertStatus.REVOKED)
    not_yet = supplier()
    factories.make_certification(not_yet, "iatf-16949", valid_from=TODAY + timedelta(days=1))
    other_standard = supplier()
    factories.make_certification(other_standard, "iso-9001")
    db.session.flush()

    assert set(ranker.ids(demand(required_standards=("iatf-16949",)))) == {
        valid.id,
        no_expiry.id,
    }
    everyone = {valid, no_expiry, expires_first, revoked, not_yet, other_standard}
    assert set(ranker.ids(demand())) == {org.id for org in everyone}


def test_only_verified_certifications_match(ranker):
    """Pending review or rejected: declared, but not counted; the explanation lists the
    verified certificate only."""
    verified = supplier()
    cert = factories.make_certification(verified, "iatf-16949")
    factories.make_certification(verified, "iatf-16949", verification=CertVerification.PENDING)
    pending = supplier()
    factories.make_certification(pending, "iatf-16949", verification=CertVerification.PENDING)
    rejected = supplier()
    factories.make_certification(rejected, "iatf-16949", verification=CertVerification.REJECTED)
    db.session.flush()

    result = ranker.match(demand(required_standards=("iatf-16949",)))
    assert [hit.match.supplier_id for hit in result.hits] == [verified.id]
    assert result.hits[0].match.matched_certifications == (cert.id,)
    assert set(ranker.ids(demand())) == {verified.id, pending.id, rejected.id}


def test_verified_only_changes_what_counts_in_the_search_box(ranker):
    verified = supplier(10)
    factories.make_certification(verified, "iatf-16949")
    pending = supplier(20)
    factories.make_certification(pending, "iatf-16949", verification=CertVerification.PENDING)
    rejected = supplier(30)
    factories.make_certification(rejected, "iatf-16949", verification=CertVerification.REJECTED)
    db.session.flush()
    iatf = ("iatf-16949",)
    assert ranker.search(SupplierQuery(standards=iatf)) == [verified.id, pending.id]
    assert ranker.search(SupplierQuery(standards=iatf, verified_only=True)) == [verified.id]
    everyone = [verified.id, pending.id, rejected.id]
    assert ranker.search(SupplierQuery(verified_only=True)) == everyone
    ranker.sync()
    declared = ranker.backend.search(SupplierQuery(), TODAY, 1, 10).facets["certification"]
    strict = ranker.backend.search(SupplierQuery(verified_only=True), TODAY, 1, 10).facets
    assert declared == [("iatf-16949", 2)]
    assert strict["certification"] == [("iatf-16949", 1)]


def test_every_required_standard_needs_its_own_valid_certification(ranker):
    both = supplier()
    factories.make_certification(both, "iatf-16949")
    factories.make_certification(both, "iso-26262")
    one = supplier()
    factories.make_certification(one, "iatf-16949")
    factories.make_certification(one, "iso-26262", status=CertStatus.REVOKED)

    page = ranker.match(demand(required_standards=("iatf-16949", "iso-26262")))
    assert [hit.match.supplier_id for hit in page.hits] == [both.id]
    assert len(page.hits[0].match.matched_certifications) == 2


def test_a_category_matches_its_descendants_not_its_siblings_or_parent(ranker):
    exact = supplier(categories=("chassis.braking",))
    child = supplier(categories=("chassis.braking.foundation",))
    sibling = supplier(categories=("chassis.steering",))
    parent = supplier(categories=("chassis",))
    lookalike = supplier(categories=("chassis.braking-x",))  # same prefix, not a descendant
    other = supplier(categories=("body.seats",))

    assert set(ranker.ids(demand(category="chassis.braking"))) == {exact.id, child.id}
    assert set(ranker.ids(demand(category="chassis"))) == {
        exact.id,
        child.id,
        sibling.id,
        parent.id,
        lookalike.id,
    }
    assert ranker.ids(demand(category="body")) == [other.id]


def test_radius_boundary_just_inside_and_just_outside(ranker):
    inside = supplier(99.95)
    outside = supplier(100.05)
    assert ranker.ids(demand(radius_km=100.0)) == [inside.id]
    assert ranker.ids(demand(radius_km=100.1)) == [inside.id, outside.id]


def test_the_nearest_active_site_decides_distance_and_explanation(ranker):
    org = supplier(150)
    near = factories.make_site(org, at=north_of(PLANT, 30), name="近厂")
    factories.make_site(org, at=north_of(PLANT, 5), name="closed", active=False)
    hit = ranker.match(demand()).hits[0]
    assert hit.match.nearest_site_id == near.id
    assert hit.match.distance_km == pytest.approx(30, abs=1e-6)
    assert hit.match.distance_factor == pytest.approx(spec.distance_factor(30))
    assert hit.document["site_info"][0]["name"] in {"近厂", f"Plant {org.id}"}
    only_inactive = factories.make_org(tier=1)
    factories.make_site(only_inactive, at=PLANT, active=False)
    factories.make_capability(only_inactive, "chassis.steering")
    assert only_inactive.id not in ranker.ids(demand())


def test_order_is_score_then_distance_then_id_with_explanations(ranker):
    tier1_far = supplier(60, tier=1)  # f_d = 0.5
    tier2_near = supplier(12, tier=2)  # ≈ 0.8
    plateau_a = supplier(8, tier=3)  # f_d = 1 inside the offset: 0.6
    plateau_b = supplier(4, tier=3)  # same score, nearer: first of the two
    page = ranker.match(demand())
    assert [h.match.supplier_id for h in page.hits] == [
        tier2_near.id,
        plateau_b.id,
        plateau_a.id,
        tier1_far.id,
    ]
    first = page.hits[0].match
    assert first.tier_factor == 0.8
    assert first.score == pytest.approx(first.distance_factor * 0.8)
    assert page.hits[3].match.distance_factor == pytest.approx(0.5, rel=1e-9)
    for hit in page.hits:
        if hit.engine_score is not None:  # Elasticsearch's own score agrees (float32)
            assert hit.engine_score == pytest.approx(hit.match.score, rel=1e-6)


def test_tier_weight_overrides_and_zero_weight_ranks_last_by_distance(ranker):
    t1 = supplier(30, tier=1)
    t2 = supplier(40, tier=2)
    t3_far = supplier(50, tier=3)
    t3_near = supplier(20, tier=3)
    untiered = supplier(10, tier=None)
    weights = spec.normalise_tier_weights({"1": 0.5, "2": 1.0, "3": 0})
    page = ranker.match(demand(tier_weights=weights))
    assert [h.match.supplier_id for h in page.hits] == [
        t2.id,
        t1.id,
        untiered.id,  # no tier: weight 0, then by distance
        t3_near.id,
        t3_far.id,
    ]
    assert [h.match.score for h in page.hits[2:]] == [0.0, 0.0, 0.0]


def test_suspended_pending_hidden_and_oem_organizations_are_never_matched(ranker):
    shown = supplier()
    supplier(status=OrgStatus.SUSPENDED)
    supplier(status=OrgStatus.PENDING)
    supplier(listed=False)
    oem = factories.make_org(OrgKind.OEM)
    factories.make_site(oem, at=PLANT)
    factories.make_capability(oem, "chassis.steering")
    assert ranker.ids(demand()) == [shown.id]
    assert ranker.search(SupplierQuery()) == [shown.id]


def test_pages_are_slices_of_one_ranking(ranker):
    orgs = [supplier(10 + 7 * i, tier=1 + i % 3) for i in range(9)]
    full = ranker.ids(demand())
    assert sorted(full) == sorted(o.id for o in orgs)
    pages = [ranker.match(demand(), page=p, per_page=4) for p in (1, 2, 3)]
    assert [h.match.supplier_id for p in pages for h in p.hits] == full
    assert {p.total for p in pages} == {9}


BAD_SEARCH_STRINGS = ["*", "a AND (", '"', "\\", "/.*/", "[* TO *]", "OR 1=1 --", "制动 AND"]


def test_search_box_strings_do_not_break_or_reveal_hidden_suppliers(ranker):
    text = " ".join(BAD_SEARCH_STRINGS)
    shown = supplier(description=f"制动 caliper {text}")
    hidden = [
        supplier(description=f"制动 caliper {text}", listed=False),
        supplier(description=f"制动 caliper {text}", status=OrgStatus.SUSPENDED),
    ]
    for query in BAD_SEARCH_STRINGS:
        found = ranker.search(SupplierQuery(text=query))
        assert not {org.id for org in hidden} & set(found), query
    assert ranker.search(SupplierQuery(text="制动 caliper")) == [shown.id]
    assert ranker.search(SupplierQuery(text="CALIPER")) == [shown.id]
    assert ranker.search(SupplierQuery(text="动制")) == []  # characters out of order


def test_search_filters_near_category_certification_tier_city(ranker):
    a = supplier(10, tier=1, city_code="440100")
    factories.make_certification(a, "iatf-16949")
    b = supplier(50, tier=2, city_code="440300", categories=("body.seats",))
    factories.make_certification(b, "iatf-16949", valid_until=TODAY - timedelta(days=1))
    c = supplier(120, tier=2, city_code="440300")
    near = dict(lat=PLANT[0], lon=PLANT[1])
    assert ranker.search(SupplierQuery(**near, radius_km=60)) == [a.id, b.id]
    assert ranker.search(SupplierQuery(**near, radius_km=500)) == [a.id, b.id, c.id]
    assert ranker.search(SupplierQuery(category="chassis")) == [a.id, c.id]
    assert ranker.search(SupplierQuery(standards=("iatf-16949",))) == [a.id]
    assert ranker.search(SupplierQuery(tier=2, city_code="440300")) == [b.id, c.id]
    ranker.sync()
    result = ranker.backend.search(SupplierQuery(), TODAY, 1, 2)
    assert result.total == 3 and len(result.hits) == 2
    assert result.facets == {
        "city": [("440300", 2), ("440100", 1)],
        "tier": [(2, 2), (1, 1)],
        "certification": [("iatf-16949", 1)],
        "specialized": [(False, 3)],
    }
