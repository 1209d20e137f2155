"""A Hypothesis state machine of the marketplace, driven through the HTTP API.

Random sequences of registrations (and an admin's verification, suspension, reactivation),
supplier profiles, sites (added, deactivated, moved to another city after they sold),
capabilities and certifications (verified or rejected by an admin, edited back to review: only
verified ones count for matching), OEM plants, demands (drafted and published), quotes,
withdrawals, awards (confirmed by construction), off-platform purchases recorded by either
party (with Idempotency-Key retries, back-dated into the previous business year, refused two
years back), confirmations and disputes by the other party (and refusals for the party that
recorded it), cancellations, duplicate supplier invoices across OEMs and the auditor's review of
them, baselines declared late, an OEM that mirrors another's purchases in another order, and
explicit worker runs. Every request goes through the test client as the persona that would
send it, so validation and permissions are exercised; each answer's status is predicted from
the model (``tests.marketplace_model`` and the state below).

After every step:

- I8/I9 (RELIABILITY.md): every purchase is counted once iff it is confirmed, not cancelled and
  not held by an invoice review, never without the other party's confirmation; per (OEM, year)
  the entries sum to I* and S* recomputed from scratch by the independent oracle; the frozen
  facts of every purchase are those of the moment it was made (site edits change no verdict);
  each OEM's own ``GET /ledger/position`` equals the oracle over the model's purchases (jobs run
  inline, right after each commit). The subsidy rule is order-free, so the model keeps sets, not
  an order of entries;
- the hash chain verifies;
- for every open demand, the database backend's ranked matches equal ``search.spec.rank`` over
  facts read from the rows;
- with Elasticsearch (``test_elasticsearch_ranks_like_the_database_at_every_step``; skipped
  locally, failed in CI, when the node is unreachable): the app searches and syncs through it,
  and after a refresh its ranked matches for every open demand, and two supplier searches, equal
  the database backend's. The index is kept up to date by the outbox sync alone.

Each example runs in one database transaction that is rolled back at its end (the code's
commits are savepoints), and with Elasticsearch in an index of its own, deleted at its end:
examples never see each other's rows or documents.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from market.auth import CSRF_HEADER
from market.clock import business_today
from market.extensions import db
from market.models import Demand, Organization, OrgKind, Purchase, Role
from search import documents, spec
from search.backends import SearchBackend, SupplierQuery
from search.database import DatabaseSearchBackend
from search.elastic import ElasticsearchBackend
from tests import factories
from tests.conftest import RUN_ID
from tests.isolation import begin_outer, bind_session, end_outer
from tests.marketplace_model import (
    SHANGHAI,
    LedgerModel,
    PurchaseInfo,
    assert_ledger_matches_oracle,
    haversine_km,
)

API = "/api/v1"
PASSWORD = "stateful test password 1"


@dataclass(frozen=True)
class Place:
    city_code: str
    lat: float
    lon: float


# Distances from the Guangzhou plant: Foshan 19 km, Zhaoqing 82, Shenzhen 104 (near-shore);
# Shantou 350 (too far); Wuzhou, Guangxi 206 and 195 from Foshan (out of the province first).
PLACES = {
    "guangzhou": Place("440100", 23.1291, 113.2644),
    "foshan": Place("440600", 23.0215, 113.1214),
    "shenzhen": Place("440300", 22.5431, 114.0579),
    "zhaoqing": Place("441200", 23.0469, 112.4651),
    "shantou": Place("440500", 23.3541, 116.6820),
    "wuzhou": Place("450400", 23.4769, 111.2791),
    "changsha": Place("430100", 28.2282, 112.9388),
}
PLANT_PLACES = ("guangzhou", "foshan", "shenzhen")
NEAR_PLACES = ("guangzhou", "foshan", "shenzhen", "zhaoqing")  # within 300 km of every plant
# Capabilities; demands ask for a category or a parent of it (a capability below matches).
CATEGORIES = ("chassis.braking", "chassis.braking.foundation", "chassis", "powertrain.e-motor")
DEMAND_CATEGORIES = ("chassis", "chassis.braking", "chassis.braking.foundation", "powertrain")
STANDARDS = ("iatf-16949", "iso-14001")
AMOUNTS = tuple(Decimal(a) for a in ("0.01", "999.99", "125000.00", "90000000.00", "150000000.00"))
# The bootstrap OEM was verified long ago: the platform covered the previous year for it, so its
# baseline is the platform's own total (OEMs verified during the run have it missing: held).
LONG_AGO = datetime(2019, 6, 1, tzinfo=UTC)
# Writes after which the ledger invariant runs again.
LEDGER_PATHS = ("/purchases", "/award", "/baselines", "/sites/", "/verify")
MAX_OEMS, MAX_SUPPLIERS, MAX_PLANTS, MAX_SITES, MAX_DEMANDS = 2, 3, 2, 3, 4


def today() -> date:
    return datetime.now(UTC).date()


# --- the model of what the API should hold ------------------------------------------------------


@dataclass
class SiteM:
    id: int
    place: Place
    active: bool = True


@dataclass
class CertM:
    id: int
    standard: str
    valid_from: date
    valid_until: date
    active: bool = True
    verification: str = "pending"  # a new certificate waits for an admin's review


@dataclass
class OrgM:
    id: int
    kind: OrgKind
    email: str
    status: str = "pending"
    headers: dict[str, str] = field(default_factory=dict)  # empty: no working token
    tier: int | None = None
    listed: bool = True
    sites: dict[int, SiteM] = field(default_factory=dict)  # supplier sites or OEM plants
    categories: set[str] = field(default_factory=set)
    certs: dict[int, CertM] = field(default_factory=dict)
    invoices: set[tuple[int, str]] = field(default_factory=set)  # (OEM, invoice): a supplier's
    verified_at: datetime | None = None

    def fact(self) -> spec.SupplierFact:
        return spec.SupplierFact(
            id=self.id,
            active=self.status == "active",
            listed=self.listed,
            tier=self.tier,
            categories=tuple(sorted(self.categories)),
            sites=tuple(
                # Only active sites: the indexed document holds no other (search.documents).
                spec.SiteFact(s.id, s.place.lat, s.place.lon)
                for s in self.sites.values()
                if s.active
            ),
            certifications=tuple(
                spec.CertFact(
                    c.id,
                    c.standard,
                    c.active,
                    c.valid_from,
                    c.valid_until,
                    verified=c.verification == "verified",
                )
                for c in self.certs.values()
            ),
        )


@dataclass
class DemandM:
    id: int
    oem: int
    plant: int
    category: str
    standards: tuple[str, ...]
    need_by: date
    radius_km: int
    tier_weights: dict[str, float] | None
    state: str = "draft"

    def fact(self, plant: Place) -> spec.DemandFact:
        weights: dict[str | int, float] = {k: v for k, v in (self.tier_weights or {}).items()}
        return spec.DemandFact(
            lat=plant.lat,
            lon=plant.lon,
            category=self.category,
            required_standards=self.standards,
            need_by=self.need_by,
            radius_km=self.radius_km,
            tier_weights=spec.normalise_tier_weights(weights),
        )


@dataclass
class QuoteM:
    id: int
    demand: int
    supplier: int
    site: int
    unit_price: Decimal
    quantity: int
    status: str = "submitted"


@dataclass
class PurchaseM:
    info: PurchaseInfo
    creator: OrgKind  # the party that recorded it; the other one confirms or disputes
    invoice: str
    status: str = "pending_confirmation"  # | confirmed | disputed | cancelled
    review: str | None = None  # pending (DUPLICATE_INVOICE) | released | rejected
    confirmation: str | None = None  # counterparty | award, once confirmed

    @property
    def counted(self) -> bool:
        return self.status == "confirmed" and self.review in (None, "released")


# --- the machine ---------------------------------------------------------------------------------


class Marketplace(RuleBasedStateMachine):
    app: ClassVar[Flask]
    # Set: the app searches and syncs through Elasticsearch, and the invariants compare its
    # ranked results with the database backend's.
    elasticsearch_url: ClassVar[str | None] = None
    # What the run compared, so a test cannot pass by comparing empty lists.
    coverage: ClassVar[Counter[str]] = Counter()
    _numbers = itertools.count(1)

    def __init__(self) -> None:
        super().__init__()
        app = self.app
        self.elastic: ElasticsearchBackend | None = None
        self._original_search: SearchBackend = app.extensions["search"]
        if self.elasticsearch_url:
            # An index of its own per example: the example's rows are rolled back (and SQLite
            # reuses their ids), so documents of earlier examples must not be searched.
            self.elastic = ElasticsearchBackend(
                self.elasticsearch_url, f"{RUN_ID}-stateful-{uuid.uuid4().hex[:8]}", timeout=30
            )
            self.elastic.ensure_index()
            app.extensions["search"] = self.elastic
        self._original_session = db.session
        with app.app_context():
            self.connection = db.engine.connect()
        self.outer = begin_outer(self.connection)
        with app.app_context():
            bind_session(self.connection)
            admin = factories.make_user(role=Role.ADMIN)
            auditor = factories.make_user(role=Role.AUDITOR)
            self.admin = factories.auth(admin)
            self.auditor = factories.auth(auditor)
            db.session.commit()
        self.client: FlaskClient = app.test_client()
        self.orgs: dict[int, OrgM] = {}
        self.demands: dict[int, DemandM] = {}
        self.quotes: dict[int, QuoteM] = {}
        self.purchases: dict[int, PurchaseM] = {}
        self.ledger = LedgerModel()
        self.mirrored = False
        # Whether a request since the last ledger check could have changed the ledger or the
        # facts it reads (purchases, awards, baselines, sites, verifications): the ledger
        # invariant re-checks only then (an unchanged database gives the same answer).
        self.ledger_dirty = True

    def teardown(self) -> None:
        with self.app.app_context():
            db.session.remove()
        db.session = self._original_session
        end_outer(self.connection, self.outer)
        self.app.extensions["rate_limiter"].storage.reset()
        self.app.extensions["search"] = self._original_search
        if self.elastic is not None:
            for index in self.elastic.alias_targets():
                self.elastic.delete_index(index)

    # --- helpers -------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None,
        expect: int | set[int],
        body: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Send a request and check its status; returns the JSON body."""
        if method != "GET" and any(part in path for part in LEDGER_PATHS):
            self.ledger_dirty = True
        response = self.client.open(
            f"{API}{path}", method=method, headers=headers or {}, json=body, **kwargs
        )
        expected = {expect} if isinstance(expect, int) else expect
        assert response.status_code in expected, (
            f"{method} {path} {body!r}: {response.status_code} (expected {sorted(expected)}): "
            f"{response.get_data(as_text=True)[:800]}"
        )
        return response.get_json(silent=True)

    def number(self) -> int:
        return next(self._numbers)

    def of_kind(self, kind: OrgKind, *statuses: str) -> list[OrgM]:
        return [
            o
            for o in self.orgs.values()
            if o.kind is kind and (not statuses or o.status in statuses)
        ]

    def signed_in(self, kind: OrgKind) -> list[OrgM]:
        """Organizations of ``kind`` whose user holds a working token (not suspended)."""
        return [o for o in self.of_kind(kind) if o.headers]

    def sign_in(self, org: OrgM) -> None:
        """Sign in by password (session cookie + CSRF token) and create an API token."""
        self.app.extensions["rate_limiter"].storage.reset()  # the login limit is 5 a minute
        client = self.app.test_client()
        session = client.post(f"{API}/auth/login", json={"email": org.email, "password": PASSWORD})
        assert session.status_code == 200, session.get_data(as_text=True)
        created = client.post(
            f"{API}/auth/tokens",
            json={"name": "stateful", "password": PASSWORD},
            headers={CSRF_HEADER: session.get_json()["csrf_token"]},
        )
        assert created.status_code == 201, created.get_data(as_text=True)
        org.headers = {"Authorization": f"Bearer {created.get_json()['token']}"}

    def place_of(self, site_id: int) -> Place:
        return next(o.sites[site_id].place for o in self.orgs.values() if site_id in o.sites)

    # --- accounts ----------------------------------------------------------------------------

    @initialize(
        plant=st.sampled_from(PLANT_PLACES),
        site=st.sampled_from(NEAR_PLACES),
        category=st.sampled_from(CATEGORIES[:2]),
        amount=st.sampled_from(AMOUNTS[1:]),
        covered=st.booleans(),
    )
    def bootstrap(
        self, plant: str, site: str, category: str, amount: Decimal, covered: bool
    ) -> None:
        """Every run starts trading at once: a verified OEM with a plant and an open demand
        for ``chassis`` parts, a verified supplier of them with a site in range, two confirmed
        purchases between them (last year's 125,000.00, this year's recorded by the supplier)
        and one the supplier recorded that waits for the buyer's answer. ``covered``: the OEM
        has been on the platform for years (its baseline is last year's platform total); else
        it was verified today, and its subsidy is held until a baseline is declared."""
        self.register(OrgKind.OEM, plant, verify=True, ready=True, category=category)
        self.register(OrgKind.SUPPLIER, plant, verify=True, ready=False, category=category)
        oem, supplier = self.of_kind(OrgKind.OEM)[0], self.of_kind(OrgKind.SUPPLIER)[0]
        if covered:
            self.verified_at(oem, LONG_AGO)  # before it trades: a fact of the set-up
        self.new_site(supplier, site)
        self.new_capability(supplier, category)
        self.new_demand(oem, next(iter(oem.sites)), "chassis", [], 300, None, 300, publish=True)
        last_year = date(business_today().year - 1, 5, 20)
        site_id, plant_id = max(supplier.sites), max(oem.sites)
        self.buy_and_confirm(oem, supplier, site_id, plant_id, Decimal("125000.00"), last_year)
        self.buy_and_confirm(
            oem, supplier, site_id, plant_id, amount, business_today(), by=supplier
        )
        self.buy_and_confirm(
            oem,
            supplier,
            site_id,
            plant_id,
            Decimal("999.99"),
            last_year,
            by=supplier,
            answer=False,
        )

    def buy_and_confirm(
        self,
        oem: OrgM,
        supplier: OrgM,
        site_id: int,
        plant_id: int,
        amount: Decimal,
        purchased_on: date,
        *,
        by: OrgM | None = None,
        answer: bool = True,
    ) -> int:
        """One party (``by``, the buyer by default) records an off-platform purchase and the
        other confirms it (unless ``answer`` is False: it stays pending)."""
        maker = by or oem
        invoice = f"INV-{self.number()}"
        body = {
            "supplier_site_id": site_id,
            "plant_id": plant_id,
            "category": "chassis.braking.foundation",
            "amount": str(amount),
            "purchased_on": purchased_on.isoformat(),
            "invoice_number": invoice,
        }
        if maker is oem:
            body["supplier_org_id"] = supplier.id
        else:
            body["oem_org_id"] = oem.id
        made = self.call("POST", "/purchases", maker.headers, 201, body)
        self.recorded(
            made["id"],
            oem.id,
            supplier,
            site_id,
            plant_id,
            amount,
            purchased_on,
            creator=maker.kind,
            invoice=invoice,
        )
        if answer:
            confirmer = supplier if maker is oem else oem
            self.call("POST", f"/purchases/{made['id']}/confirm", confirmer.headers, 200)
            self.confirmed(self.purchases[made["id"]], "counterparty")
        return int(made["id"])

    @precondition(
        lambda self: (
            len(self.of_kind(OrgKind.OEM)) < MAX_OEMS
            or len(self.of_kind(OrgKind.SUPPLIER)) < MAX_SUPPLIERS
        )
    )
    @rule(
        kind=st.sampled_from(OrgKind),
        city=st.sampled_from(PLANT_PLACES),
        verify=st.booleans(),
        ready=st.booleans(),
        category=st.sampled_from(CATEGORIES),
    )
    def register(self, kind: OrgKind, city: str, verify: bool, ready: bool, category: str) -> None:
        """Register (and maybe verify); ``ready``: with a plant, or a site and a capability."""
        limit = MAX_OEMS if kind is OrgKind.OEM else MAX_SUPPLIERS
        if len(self.of_kind(kind)) >= limit:
            return
        n = self.number()
        code = PLACES[city].city_code
        email = f"stateful{n}-{kind.value}@example.test"
        accepted = self.call(
            "POST",
            "/organizations",
            None,
            202,
            {
                "kind": kind.value,
                "uscc": factories.fictional_uscc(code),
                "legal_name": f"状态机测试{n}",
                "city_code": code,
                "user": {"email": email, "password": PASSWORD},
            },
        )
        assert set(accepted) == {"message"}  # the answer names nothing (emails stay private)
        org = OrgM(id=0, kind=kind, email=email)
        self.sign_in(org)
        me = self.call("GET", "/auth/me", org.headers, 200)
        assert me["organization"]["status"] == "pending" and me["user"]["org_role"] == "admin"
        org.id = me["organization"]["id"]
        self.orgs[org.id] = org
        if verify:
            self.verify(org)
        if ready and kind is OrgKind.OEM:
            self.new_plant(org, city)
        elif ready:
            self.new_site(org, city)
            self.new_capability(org, category)

    def verify(self, org: OrgM) -> None:
        verified = self.call("POST", f"/organizations/{org.id}/verify", self.admin, 200)
        assert verified["status"] == "active"
        org.status = "active"
        org.verified_at = datetime.fromisoformat(verified["verified_at"])
        self.verified_at(org, org.verified_at)

    def verified_at(self, org: OrgM, when: datetime) -> None:
        """Note (and, if it differs, set) when ``org`` was verified: the platform covers a year
        for an OEM verified on or before its 1 January (Asia/Shanghai)."""
        if org.verified_at != when:
            with self.app.app_context():
                row = db.session.get(Organization, org.id)
                assert row is not None
                row.verified_at = when
                db.session.commit()
                db.session.remove()
        org.verified_at = when
        if org.kind is OrgKind.OEM:
            self.ledger.verified_on[org.id] = when.astimezone(SHANGHAI).date()

    @precondition(lambda self: any(o.status == "pending" for o in self.orgs.values()))
    @rule(data=st.data())
    def verify_pending(self, data: st.DataObject) -> None:
        pending = sorted(o.id for o in self.orgs.values() if o.status == "pending")
        org = self.orgs[data.draw(st.sampled_from(pending), label="org")]
        self.verify(org)

    @precondition(lambda self: bool(self.of_kind(OrgKind.SUPPLIER, "active")))
    @rule(data=st.data())
    def suspend_supplier(self, data: st.DataObject) -> None:
        ids = sorted(o.id for o in self.of_kind(OrgKind.SUPPLIER, "active"))
        org = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        self.call("POST", f"/organizations/{org.id}/suspend", self.admin, 200, {"reason": "test"})
        # Its API tokens are revoked with the suspension.
        self.call("GET", "/auth/me", org.headers, 401)
        org.status, org.headers = "suspended", {}

    @precondition(lambda self: bool(self.of_kind(OrgKind.SUPPLIER, "suspended")))
    @rule(data=st.data())
    def reactivate_supplier(self, data: st.DataObject) -> None:
        ids = sorted(o.id for o in self.of_kind(OrgKind.SUPPLIER, "suspended"))
        org = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        self.call("POST", f"/organizations/{org.id}/reactivate", self.admin, 200)
        org.status = "active"
        self.sign_in(org)

    # --- OEM plants and supplier profiles -----------------------------------------------------

    @precondition(lambda self: any(len(o.sites) < MAX_PLANTS for o in self.signed_in(OrgKind.OEM)))
    @rule(data=st.data(), where=st.sampled_from(PLANT_PLACES))
    def add_plant(self, data: st.DataObject, where: str) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.OEM) if len(o.sites) < MAX_PLANTS)
        self.new_plant(self.orgs[data.draw(st.sampled_from(ids), label="oem")], where)

    def new_plant(self, oem: OrgM, where: str) -> None:
        place = PLACES[where]
        # A pending organisation sees only itself: it cannot add plants until verified.
        expect = 201 if oem.status == "active" else 403
        plant = self.call(
            "POST",
            "/plants",
            oem.headers,
            expect,
            {
                "name": f"{where} plant",
                "city_code": place.city_code,
                "lat": place.lat,
                "lon": place.lon,
            },
        )
        if expect == 201:
            oem.sites[plant["id"]] = SiteM(plant["id"], place)

    @precondition(
        lambda self: any(len(o.sites) < MAX_SITES for o in self.signed_in(OrgKind.SUPPLIER))
    )
    @rule(data=st.data(), where=st.sampled_from(sorted(PLACES)))
    def add_site(self, data: st.DataObject, where: str) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER) if len(o.sites) < MAX_SITES)
        self.new_site(self.orgs[data.draw(st.sampled_from(ids), label="supplier")], where)

    def new_site(self, supplier: OrgM, where: str) -> None:
        place = PLACES[where]
        site = self.call(
            "POST",
            f"/suppliers/{supplier.id}/sites",
            supplier.headers,
            201,
            {
                "name": f"{where} works",
                "city_code": place.city_code,
                "lat": place.lat,
                "lon": place.lon,
            },
        )
        supplier.sites[site["id"]] = SiteM(site["id"], place)

    @precondition(lambda self: any(o.sites for o in self.signed_in(OrgKind.SUPPLIER)))
    @rule(data=st.data())
    def toggle_site(self, data: st.DataObject) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER) if o.sites)
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        site = supplier.sites[data.draw(st.sampled_from(sorted(supplier.sites)), label="site")]
        self.call(
            "PATCH",
            f"/suppliers/{supplier.id}/sites/{site.id}",
            supplier.headers,
            200,
            {"active": not site.active},
        )
        site.active = not site.active

    @precondition(lambda self: any(o.sites for o in self.signed_in(OrgKind.SUPPLIER)))
    @rule(data=st.data(), where=st.sampled_from(sorted(PLACES)))
    def move_site(self, data: st.DataObject, where: str) -> None:
        """A supplier moves a site (city and coordinates) after it sold from it: the verdicts
        of its purchases must not change (their facts were frozen)."""
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER) if o.sites)
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        site = supplier.sites[data.draw(st.sampled_from(sorted(supplier.sites)), label="site")]
        place = PLACES[where]
        moved = self.call(
            "PATCH",
            f"/suppliers/{supplier.id}/sites/{site.id}",
            supplier.headers,
            200,
            {"city_code": place.city_code, "lat": place.lat, "lon": place.lon},
        )
        assert (moved["lat"], moved["lon"]) == (place.lat, place.lon)
        site.place = place
        self.coverage["site moves"] += 1

    @precondition(lambda self: bool(self.signed_in(OrgKind.SUPPLIER)))
    @rule(data=st.data(), tier=st.sampled_from([1, 2, 3]), listed=st.booleans())
    def edit_profile(self, data: st.DataObject, tier: int, listed: bool) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER))
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        profile = self.call(
            "PUT",
            f"/suppliers/{supplier.id}/profile",
            supplier.headers,
            200,
            {"tier": tier, "listed": listed, "description": "Brake parts"},
        )
        assert (profile["tier"], profile["listed"]) == (tier, listed)
        supplier.tier, supplier.listed = tier, listed

    @precondition(lambda self: bool(self.signed_in(OrgKind.SUPPLIER)))
    @rule(data=st.data(), category=st.sampled_from(CATEGORIES))
    def add_capability(self, data: st.DataObject, category: str) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER))
        self.new_capability(self.orgs[data.draw(st.sampled_from(ids), label="supplier")], category)

    def new_capability(self, supplier: OrgM, category: str) -> None:
        taken = category in supplier.categories
        self.call(
            "POST",
            f"/suppliers/{supplier.id}/capabilities",
            supplier.headers,
            409 if taken else 201,
            {"category": category, "processes": ["machining"]},
        )
        supplier.categories.add(category)

    @precondition(lambda self: bool(self.signed_in(OrgKind.SUPPLIER)))
    @rule(
        data=st.data(),
        standard=st.sampled_from(STANDARDS),
        valid_days=st.sampled_from([20, 400, 1000]),
        review=st.sampled_from(["", "verify", "verify", "reject"]),
    )
    def add_certification(
        self, data: st.DataObject, standard: str, valid_days: int, review: str
    ) -> None:
        """A supplier declares a certificate (pending), which an admin may review at once."""
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER))
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        valid_from, valid_until = today() - timedelta(days=30), today() + timedelta(days=valid_days)
        cert = self.call(
            "POST",
            f"/suppliers/{supplier.id}/certifications",
            supplier.headers,
            201,
            {
                "standard": standard,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
                "number": f"C-{self.number()}",
            },
        )
        assert cert["verification"] == "pending"
        supplier.certs[cert["id"]] = CertM(cert["id"], standard, valid_from, valid_until)
        if review:
            self.review(supplier, supplier.certs[cert["id"]], review)

    def review(self, supplier: OrgM, cert: CertM, action: str) -> None:
        """An admin verifies a certificate (it counts for matching from now on) or rejects it
        with a reason; one that is not pending, or revoked, is not reviewed (409)."""
        reviewable = cert.active and cert.verification == "pending"
        answer = self.call(
            "POST",
            f"/suppliers/{supplier.id}/certifications/{cert.id}/{action}",
            self.admin,
            200 if reviewable else 409,
            {"reason": "Not in the register."} if action == "reject" else None,
        )
        if reviewable:
            cert.verification = "verified" if action == "verify" else "rejected"
            assert answer["verification"] == cert.verification
            self.coverage["certificate reviews"] += 1

    @precondition(lambda self: any(o.certs for o in self.signed_in(OrgKind.SUPPLIER)))
    @rule(
        data=st.data(),
        action=st.sampled_from(["revoke", "verify", "reject", "renumber", "extend"]),
    )
    def change_certification(self, data: st.DataObject, action: str) -> None:
        """The supplier revokes a certificate or changes what it states (its number or its
        validity: pending review again, whatever its review was; a revoked one cannot change),
        or an admin reviews it."""
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER) if o.certs)
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        cert = supplier.certs[data.draw(st.sampled_from(sorted(supplier.certs)), label="cert")]
        if action in {"verify", "reject"}:
            self.review(supplier, cert, action)
            return
        body: dict[str, Any] = {
            "revoke": {"status": "revoked"},
            "renumber": {"number": f"C-{self.number()}"},
            "extend": {"valid_until": (cert.valid_until + timedelta(days=400)).isoformat()},
        }[action]
        answer = self.call(
            "PATCH",
            f"/suppliers/{supplier.id}/certifications/{cert.id}",
            supplier.headers,
            200 if cert.active else 409,
            body,
        )
        if not cert.active:
            return
        if action == "revoke":
            cert.active = False  # revocation keeps the review (a revoked one never counts)
        else:
            if action == "extend":
                cert.valid_until += timedelta(days=400)
            self.coverage["reviewed certificates edited"] += cert.verification != "pending"
            cert.verification = "pending"
        assert answer["verification"] == cert.verification

    # --- demands and quotes -------------------------------------------------------------------

    @precondition(
        lambda self: (
            len(self.demands) < MAX_DEMANDS and any(o.sites for o in self.signed_in(OrgKind.OEM))
        )
    )
    @rule(
        data=st.data(),
        category=st.sampled_from(DEMAND_CATEGORIES),
        standards=st.sampled_from([[], [], ["iatf-16949"], ["iatf-16949", "iso-14001"]]),
        radius_km=st.sampled_from([200, 100, 300]),
        tier_weights=st.sampled_from([None, {"1": 0.7, "2": 1.0}]),
        need_in_days=st.sampled_from([30, 300]),
        publish=st.sampled_from([True, True, False]),
    )
    def create_demand(
        self,
        data: st.DataObject,
        category: str,
        standards: list[str],
        radius_km: int,
        tier_weights: dict[str, float] | None,
        need_in_days: int,
        publish: bool,
    ) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.OEM) if o.sites)
        oem = self.orgs[data.draw(st.sampled_from(ids), label="oem")]
        plant = data.draw(st.sampled_from(sorted(oem.sites)), label="plant")
        self.new_demand(
            oem, plant, category, standards, radius_km, tier_weights, need_in_days, publish
        )

    def new_demand(
        self,
        oem: OrgM,
        plant: int,
        category: str,
        standards: list[str],
        radius_km: int,
        tier_weights: dict[str, float] | None,
        need_in_days: int,
        publish: bool,
    ) -> None:
        need_by = today() + timedelta(days=need_in_days)
        body = {
            "plant_id": plant,
            "category": category,
            "title": "Parts for the stateful test",
            "quantity": 1000,
            "unit": "pcs",
            "required_standards": standards,
            "need_by": need_by.isoformat(),
            "radius_km": radius_km,
            "tier_weights": tier_weights,
        }
        if oem.status != "active":  # pending: not verified yet
            self.call("POST", "/demands", oem.headers, 403, body)
            return
        created = self.call("POST", "/demands", oem.headers, 201, body)
        assert created["state"] == "draft"
        demand = DemandM(
            created["id"],
            oem.id,
            plant,
            category,
            tuple(standards),
            need_by,
            radius_km,
            tier_weights,
        )
        self.demands[demand.id] = demand
        if publish:
            self.publish(demand)

    def publish(self, demand: DemandM) -> None:
        oem = self.orgs[demand.oem]
        published = self.call("POST", f"/demands/{demand.id}/publish", oem.headers, 200)
        assert published["state"] == "open"
        demand.state = "open"

    @precondition(lambda self: any(d.state == "draft" for d in self.demands.values()))
    @rule(data=st.data())
    def publish_draft(self, data: st.DataObject) -> None:
        drafts = sorted(d.id for d in self.demands.values() if d.state == "draft")
        self.publish(self.demands[data.draw(st.sampled_from(drafts), label="demand")])

    @precondition(lambda self: any(d.state in ("draft", "open") for d in self.demands.values()))
    @rule(data=st.data(), action=st.sampled_from(["close", "cancel"]))
    def end_demand(self, data: st.DataObject, action: str) -> None:
        live = sorted(d.id for d in self.demands.values() if d.state in ("draft", "open"))
        demand = self.demands[data.draw(st.sampled_from(live), label="demand")]
        allowed = action == "cancel" or demand.state == "open"
        self.call(
            "POST",
            f"/demands/{demand.id}/{action}",
            self.orgs[demand.oem].headers,
            200 if allowed else 409,
        )
        if allowed:
            demand.state = "closed" if action == "close" else "cancelled"

    @precondition(
        lambda self: bool(self.demands) and any(o.sites for o in self.signed_in(OrgKind.SUPPLIER))
    )
    @rule(
        data=st.data(),
        unit_price=st.sampled_from([Decimal("0.99"), Decimal("12.50"), Decimal("150.00")]),
        quantity=st.sampled_from([1, 1000, 1_000_000]),
    )
    def quote(self, data: st.DataObject, unit_price: Decimal, quantity: int) -> None:
        ids = sorted(o.id for o in self.signed_in(OrgKind.SUPPLIER) if o.sites)
        supplier = self.orgs[data.draw(st.sampled_from(ids), label="supplier")]
        demand = self.demands[data.draw(st.sampled_from(sorted(self.demands)), label="demand")]
        site = data.draw(st.sampled_from(sorted(supplier.sites)), label="site")
        quoted = any(
            q.demand == demand.id and q.supplier == supplier.id for q in self.quotes.values()
        )
        # One active quote per supplier: after a withdrawal it may quote again.
        active = any(
            q.demand == demand.id
            and q.supplier == supplier.id
            and q.status in ("submitted", "awarded")
            for q in self.quotes.values()
        )
        eligible = (
            spec.match(
                supplier.fact(),
                demand.fact(self.place_of(demand.plant)),
                today(),
            )
            is not None
        )
        if supplier.status != "active":
            expect = 403
        elif demand.state != "open":
            expect = 409 if quoted else 404
        elif not eligible:
            expect = 403
        elif active:
            expect = 409
        elif not supplier.sites[site].active or not self.in_radius(supplier.sites[site], demand):
            expect = 422  # the quote ships from this site: active and within the radius
        else:
            expect = 201
        created = self.call(
            "POST",
            f"/demands/{demand.id}/quotes",
            supplier.headers,
            expect,
            {
                "unit_price": str(unit_price),
                "quantity": quantity,
                "lead_time_days": 30,
                "site_id": site,
                "valid_until": (today() + timedelta(days=20)).isoformat(),
            },
        )
        if expect == 201:
            self.quotes[created["id"]] = QuoteM(
                created["id"], demand.id, supplier.id, site, unit_price, quantity
            )

    def in_radius(self, site: SiteM, demand: DemandM) -> bool:
        plant = self.place_of(demand.plant)
        return haversine_km((site.place.lat, site.place.lon), (plant.lat, plant.lon)) <= (
            demand.radius_km
        )

    def eligible_pairs(self) -> list[tuple[int, int]]:
        """(supplier, demand) pairs where a quote must be accepted."""
        return [
            (supplier.id, demand.id)
            for supplier in self.signed_in(OrgKind.SUPPLIER)
            if supplier.status == "active"
            for demand in self.demands.values()
            if demand.state == "open"
            and not any(
                q.demand == demand.id and q.supplier == supplier.id for q in self.quotes.values()
            )
            and spec.match(supplier.fact(), demand.fact(self.place_of(demand.plant)), today())
        ]

    @precondition(lambda self: bool(self.eligible_pairs()))
    @rule(
        data=st.data(),
        unit_price=st.sampled_from([Decimal("0.99"), Decimal("150.00"), Decimal("120000.00")]),
        award_now=st.booleans(),
        last_year=st.booleans(),
    )
    def quote_eligible(
        self, data: st.DataObject, unit_price: Decimal, award_now: bool, last_year: bool
    ) -> None:
        """An eligible supplier quotes (201), and the buyer may award the quote at once."""
        supplier_id, demand_id = data.draw(st.sampled_from(self.eligible_pairs()), label="pair")
        supplier = self.orgs[supplier_id]
        # Eligible: its nearest active site is within the radius, so one such site exists.
        site = data.draw(
            st.sampled_from(
                sorted(
                    i
                    for i, s in supplier.sites.items()
                    if s.active and self.in_radius(s, self.demands[demand_id])
                )
            ),
            label="site",
        )
        created = self.call(
            "POST",
            f"/demands/{demand_id}/quotes",
            supplier.headers,
            201,
            {
                "unit_price": str(unit_price),
                "quantity": 1000,
                "lead_time_days": 30,
                "site_id": site,
                "valid_until": (today() + timedelta(days=20)).isoformat(),
            },
        )
        quote = QuoteM(created["id"], demand_id, supplier_id, site, unit_price, 1000)
        self.quotes[quote.id] = quote
        if award_now:
            self.award_quote(quote, last_year)

    @precondition(
        lambda self: any(
            q.status == "submitted" and self.orgs[q.supplier].headers for q in self.quotes.values()
        )
    )
    @rule(data=st.data())
    def withdraw_quote(self, data: st.DataObject) -> None:
        ids = sorted(
            q.id
            for q in self.quotes.values()
            if q.status == "submitted" and self.orgs[q.supplier].headers
        )
        quote = self.quotes[data.draw(st.sampled_from(ids), label="quote")]
        withdrawn = self.call(
            "POST", f"/quotes/{quote.id}/withdraw", self.orgs[quote.supplier].headers, 200
        )
        assert withdrawn["status"] == "withdrawn"
        quote.status = "withdrawn"

    @precondition(lambda self: bool(self.quotes))
    @rule(data=st.data(), last_year=st.booleans())
    def award(self, data: st.DataObject, last_year: bool) -> None:
        self.award_quote(
            self.quotes[data.draw(st.sampled_from(sorted(self.quotes)), label="quote")], last_year
        )

    def award_quote(self, quote: QuoteM, last_year: bool) -> None:
        demand = self.demands[quote.demand]
        supplier = self.orgs[quote.supplier]
        purchased_on = date(business_today().year - 1, 6, 30) if last_year else business_today()
        invoice = f"AW-{self.number()}"
        site = supplier.sites[quote.site]
        awardable = demand.state == "open" and quote.status == "submitted"
        if not awardable or supplier.status != "active":
            expect = 409
        elif not site.active:
            expect = 422  # the purchase would freeze a deactivated site
        elif not self.in_radius(site, demand):
            expect = 422  # the quote's site moved (or was always) outside the radius
        else:
            expect = 201
        purchase = self.call(
            "POST",
            f"/quotes/{quote.id}/award",
            self.orgs[demand.oem].headers,
            expect,
            {"invoice_number": invoice, "purchased_on": purchased_on.isoformat()},
        )
        if expect != 201:
            return
        amount = quote.unit_price * quote.quantity
        assert Decimal(purchase["amount"]) == amount
        assert purchase["status"] == "confirmed", purchase  # confirmed by construction
        demand.state = "awarded"
        for other in self.quotes.values():
            if other.demand == demand.id and other.status == "submitted":
                other.status = "rejected"
        quote.status = "awarded"
        self.recorded(
            purchase["id"],
            demand.oem,
            supplier,
            quote.site,
            demand.plant,
            amount,
            purchased_on,
            creator=OrgKind.OEM,
            invoice=invoice,
        )
        self.confirmed(self.purchases[purchase["id"]], "award")

    def recorded(
        self,
        purchase_id: int,
        oem_id: int,
        supplier: OrgM,
        site_id: int,
        plant_id: int,
        amount: Decimal,
        purchased_on: date,
        *,
        creator: OrgKind,
        invoice: str,
    ) -> None:
        """A new purchase (pending its confirmation) with its facts as they are now."""
        site = supplier.sites[site_id].place
        plant = self.orgs[oem_id].sites[plant_id].place
        info = PurchaseInfo(
            id=purchase_id,
            oem_id=oem_id,
            supplier_id=supplier.id,
            site_city_code=site.city_code,
            site=(site.lat, site.lon),
            plant=(plant.lat, plant.lon),
            amount=amount,
            purchased_on=purchased_on,
        )
        self.purchases[purchase_id] = PurchaseM(info, creator, invoice)
        supplier.invoices.add((oem_id, invoice))
        self.ledger.add(info, counted=False)
        self.coverage["purchases"] += 1

    def confirmed(self, purchase: PurchaseM, how: str) -> None:
        """The model of a confirmation: the same supplier invoice confirmed by another OEM puts
        both in review (neither counts until an auditor releases it)."""
        purchase.status = "confirmed"
        purchase.confirmation = how
        twins = [
            other
            for other in self.purchases.values()
            if other is not purchase
            and other.info.supplier_id == purchase.info.supplier_id
            and other.invoice == purchase.invoice
            and other.info.oem_id != purchase.info.oem_id
            and other.status == "confirmed"
        ]
        if twins:
            purchase.review = "pending"
            self.coverage["invoice reviews"] += 1
            for twin in twins:
                twin.review = twin.review or "pending"
        self.refresh_counted()
        oem = self.orgs[purchase.info.oem_id]
        shown = self.call("GET", f"/purchases/{purchase.info.id}", oem.headers, 200)
        assert _ledger_status(shown) == ("recorded" if purchase.counted else "not_counted"), shown

    def refresh_counted(self) -> None:
        self.ledger.counted = {i for i, p in self.purchases.items() if p.counted}

    def party_headers(self, purchase: PurchaseM, party: OrgKind) -> dict[str, str]:
        org_id = purchase.info.oem_id if party is OrgKind.OEM else purchase.info.supplier_id
        return self.orgs[org_id].headers

    # --- purchases ----------------------------------------------------------------------------

    @precondition(
        lambda self: (
            (
                any(o.sites for o in self.signed_in(OrgKind.OEM))
                or any(o.sites for o in self.signed_in(OrgKind.SUPPLIER))
            )
            and any(o.sites for o in self.of_kind(OrgKind.OEM))
            and any(o.sites for o in self.of_kind(OrgKind.SUPPLIER))
        )
    )
    @rule(
        data=st.data(),
        by=st.sampled_from([OrgKind.OEM, OrgKind.OEM, OrgKind.SUPPLIER]),
        amount=st.sampled_from(AMOUNTS),
        years_ago=st.sampled_from([0, 0, 1, 1, 2]),
        invoice_from=st.sampled_from(["new", "new", "same pair", "other oem"]),
        idempotency=st.sampled_from(["none", "retry", "conflict"]),
    )
    def direct_purchase(
        self,
        data: st.DataObject,
        by: OrgKind,
        amount: Decimal,
        years_ago: int,
        invoice_from: str,
        idempotency: str,
    ) -> None:
        """Either party records an off-platform purchase; it waits for the other's
        confirmation. Only the current and the previous business year are accepted."""
        makers = [o for o in self.signed_in(by) if o.sites]
        if not makers:
            return
        maker = self.orgs[data.draw(st.sampled_from(sorted(o.id for o in makers)), label="by")]
        other_kind = OrgKind.SUPPLIER if by is OrgKind.OEM else OrgKind.OEM
        others = sorted(o.id for o in self.of_kind(other_kind) if o.sites)
        other = self.orgs[data.draw(st.sampled_from(others), label="other")]
        oem, supplier = (maker, other) if by is OrgKind.OEM else (other, maker)
        site = data.draw(st.sampled_from(sorted(supplier.sites)), label="site")
        plant = data.draw(st.sampled_from(sorted(oem.sites)), label="plant")
        year = business_today().year - years_ago
        purchased_on = business_today() if years_ago == 0 else date(year, 3, 15)
        pair = sorted(i for o, i in supplier.invoices if o == oem.id)
        elsewhere = sorted(i for o, i in supplier.invoices if o != oem.id)
        if invoice_from == "same pair" and pair:
            invoice = pair[0]
        elif invoice_from == "other oem" and elsewhere:
            invoice = elsewhere[0]
        else:
            invoice = f"INV-{self.number()}"
        body = {
            "supplier_site_id": site,
            "plant_id": plant,
            "category": "chassis.braking.foundation",
            "amount": str(amount),
            "purchased_on": purchased_on.isoformat(),
            "invoice_number": invoice,
            "po_number": f"PO-{self.number()}",
        }
        if by is OrgKind.OEM:
            body["supplier_org_id"] = supplier.id
        else:
            body["oem_org_id"] = oem.id
        if years_ago >= 2:
            expect = 422  # outside the current and the previous business year
        elif maker.status != "active":
            expect = 403
        elif other.status != "active" or not supplier.sites[site].active:
            expect = 422
        elif (oem.id, invoice) in supplier.invoices:
            expect = 409
        else:
            expect = 201
        headers = dict(maker.headers)
        if idempotency != "none":
            headers["Idempotency-Key"] = f"stateful-{self.number()}"
        purchase = self.call("POST", "/purchases", headers, expect, body)
        if expect != 201:
            return
        assert purchase["status"] == "pending_confirmation", purchase
        if idempotency == "retry":
            again = self.call("POST", "/purchases", headers, 201, body)
            assert again["id"] == purchase["id"], (again, purchase)
        elif idempotency == "conflict":
            self.call("POST", "/purchases", headers, 422, {**body, "amount": "1.00"})
        self.recorded(
            purchase["id"],
            oem.id,
            supplier,
            site,
            plant,
            amount,
            purchased_on,
            creator=by,
            invoice=invoice,
        )
        shown = self.call("GET", f"/purchases/{purchase['id']}", oem.headers, 200)
        assert _ledger_status(shown) == "not_counted", shown  # I9: not without confirmation

    def answerable(self, actor: str) -> list[int]:
        """Purchases whose acting party (``counterparty`` or ``creator``) can sign in."""
        found = []
        for purchase_id, purchase in sorted(self.purchases.items()):
            creator = purchase.creator
            party = creator if actor == "creator" else _other(creator)
            if self.party_headers(purchase, party):
                found.append(purchase_id)
        return found

    @precondition(lambda self: bool(self.purchases))
    @rule(
        data=st.data(),
        action=st.sampled_from(["confirm", "confirm", "confirm", "dispute"]),
        actor=st.sampled_from(["counterparty", "counterparty", "counterparty", "creator"]),
    )
    def answer_purchase(self, data: st.DataObject, action: str, actor: str) -> None:
        """The other party confirms (the ledger counts it) or disputes (never counted); the
        party that recorded it may do neither."""
        candidates = self.answerable(actor)
        if not candidates:
            return
        pending = [i for i in candidates if self.purchases[i].status == "pending_confirmation"]
        pool = pending if pending and data.draw(st.booleans(), label="pending") else candidates
        purchase = self.purchases[data.draw(st.sampled_from(pool), label="purchase")]
        party = purchase.creator if actor == "creator" else _other(purchase.creator)
        # Confirming again what the counterparty confirmed answers as the first time and
        # changes nothing (a retry after a lost answer).
        repeated = (
            action == "confirm"
            and purchase.status == "confirmed"
            and purchase.confirmation == "counterparty"
        )
        if actor == "creator":
            expect = 403
        elif repeated:
            expect = 200
        elif purchase.status != "pending_confirmation":
            expect = 409
        else:
            expect = 200
        body = {"reason": "Never delivered"} if action == "dispute" else None
        answered = self.call(
            "POST",
            f"/purchases/{purchase.info.id}/{action}",
            self.party_headers(purchase, party),
            expect,
            body,
        )
        if expect != 200:
            return
        if action == "dispute":
            assert answered["status"] == "disputed"
            purchase.status = "disputed"
            self.coverage["disputes"] += 1
            return
        assert answered["status"] == "confirmed"
        if repeated:
            self.coverage["repeated confirmations"] += 1
            return
        self.coverage["confirmations"] += 1
        self.confirmed(purchase, "counterparty")

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data())
    def cancel_purchase(self, data: st.DataObject) -> None:
        purchase = self.purchases[
            data.draw(st.sampled_from(sorted(self.purchases)), label="purchase")
        ]
        oem = self.orgs[purchase.info.oem_id]
        final = purchase.status in ("cancelled", "disputed")
        was_counted = purchase.counted
        cancelled = self.call(
            "POST",
            f"/purchases/{purchase.info.id}/cancel",
            oem.headers,
            409 if final else 200,
            {"reason": "Cancelled by the stateful test"},
        )
        if final:
            return
        assert cancelled["status"] == "cancelled"
        purchase.status = "cancelled"
        self.refresh_counted()
        self.coverage["cancellations"] += 1
        if was_counted:
            self.coverage["reversals"] += 1
            shown = self.call("GET", f"/purchases/{purchase.info.id}", oem.headers, 200)
            assert _ledger_status(shown) == "reversed", shown

    @precondition(lambda self: any(p.review == "pending" for p in self.purchases.values()))
    @rule(data=st.data(), decision=st.sampled_from(["release", "reject"]))
    def review_invoice(self, data: st.DataObject, decision: str) -> None:
        """An auditor releases or rejects a purchase held for a duplicate invoice."""
        ids = sorted(i for i, p in self.purchases.items() if p.review == "pending")
        purchase = self.purchases[data.draw(st.sampled_from(ids), label="purchase")]
        waiting = purchase.status == "confirmed"
        self.call(
            "POST",
            f"/purchases/{purchase.info.id}/review",
            self.auditor,
            200 if waiting else 409,
            {"decision": decision, "reason": "Checked with the tax bureau"},
        )
        if waiting:
            purchase.review = "released" if decision == "release" else "rejected"
            self.refresh_counted()
            self.coverage["reviews"] += 1

    @precondition(lambda self: bool(self.of_kind(OrgKind.OEM)))
    @rule(
        data=st.data(),
        years_ago=st.sampled_from([0, 1, 1, 2]),
        amount=st.sampled_from([Decimal("0.00"), Decimal("1000.00"), Decimal("50000000.00")]),
    )
    def declare_baseline(self, data: st.DataObject, years_ago: int, amount: Decimal) -> None:
        """An admin declares (or corrects) an OEM's baseline, late: after purchases of the year
        it serves; the ledger settles that year with an adjustment."""
        ids = sorted(o.id for o in self.of_kind(OrgKind.OEM))
        oem = self.orgs[data.draw(st.sampled_from(ids), label="oem")]
        year = business_today().year - years_ago
        expect = 422 if years_ago == 0 else 201  # only a year that has ended
        self.call(
            "POST",
            "/baselines",
            self.admin,
            expect,
            {"oem_org_id": oem.id, "year": year, "amount": str(amount)},
        )
        if expect == 201:
            self.ledger.declared[(oem.id, year)] = amount
            self.coverage["declarations"] += 1

    def position(self, oem: OrgM, year: int) -> tuple[Any, ...]:
        """(T, B, I*, S*, held) of the OEM's own ``GET /ledger/position`` (its buyer's view)."""
        got = self.call("GET", f"/ledger/position?year={year}", oem.headers, 200)
        baseline = None if got["baseline"] is None else Decimal(got["baseline"])
        return (
            Decimal(got["near_shore_total"]),
            baseline,
            Decimal(got["increment"]),
            Decimal(got["subsidy"]),
            got["held"],
        )

    @precondition(
        lambda self: (
            not self.mirrored
            and any(
                sum(1 for p in self.purchases.values() if p.counted and p.info.oem_id == o.id) >= 2
                for o in self.of_kind(OrgKind.OEM, "active")
            )
        )
    )
    @rule(data=st.data())
    def mirror_oem(self, data: st.DataObject) -> None:
        """A second OEM records the first one's counted purchases (and its declared
        baselines, declared somewhere in between) in another order: it must end with the same
        T, B, I*, S* and held for every year."""
        from tests import marketplace_model

        ids = sorted(
            o.id
            for o in self.of_kind(OrgKind.OEM, "active")
            if sum(1 for p in self.purchases.values() if p.counted and p.info.oem_id == o.id) >= 2
        )
        first = self.orgs[data.draw(st.sampled_from(ids), label="oem")]
        self.mirrored = True
        n = self.number()
        email = f"mirror{n}@example.test"
        some_plant = next(iter(first.sites.values())).place
        self.call(
            "POST",
            "/organizations",
            None,
            202,  # registration names nothing (issue 14): the id comes from /auth/me
            {
                "kind": "oem",
                "uscc": factories.fictional_uscc(some_plant.city_code),
                "legal_name": f"镜像测试{n}",
                "city_code": some_plant.city_code,
                "user": {"email": email, "password": PASSWORD},
            },
        )
        mirror = OrgM(id=0, kind=OrgKind.OEM, email=email)
        self.sign_in(mirror)
        mirror.id = self.call("GET", "/auth/me", mirror.headers, 200)["organization"]["id"]
        self.orgs[mirror.id] = mirror
        self.verify(mirror)
        assert first.verified_at is not None
        self.verified_at(mirror, first.verified_at)  # the same coverage as the first
        plants: dict[tuple[float, float], int] = {}
        for where, place in PLACES.items():
            if any(s.place == place for s in first.sites.values()):
                self.new_plant(mirror, where)
                plants[(place.lat, place.lon)] = max(mirror.sites)
        # What can be recorded again as it was: the supplier still active and its site
        # active and where it was when the first OEM bought from it.
        copies = []
        for purchase in self.purchases.values():
            if not purchase.counted or purchase.info.oem_id != first.id:
                continue
            supplier = self.orgs[purchase.info.supplier_id]
            site = next(
                (
                    s
                    for s in supplier.sites.values()
                    if s.active and (s.place.lat, s.place.lon) == purchase.info.site
                ),
                None,
            )
            if supplier.status == "active" and supplier.headers and site is not None:
                copies.append((purchase, site.id))
        order = data.draw(st.permutations(copies), label="order")
        declared = sorted((y, a) for (o, y), a in self.ledger.declared.items() if o == first.id)
        declare_at = [data.draw(st.integers(0, len(order)), label="late") for _ in declared]
        for step in range(len(order) + 1):
            for (year, amount), at in zip(declared, declare_at, strict=True):
                if at == step:
                    self.call(
                        "POST",
                        "/baselines",
                        self.admin,
                        201,
                        {"oem_org_id": mirror.id, "year": year, "amount": str(amount)},
                    )
                    self.ledger.declared[(mirror.id, year)] = amount
            if step == len(order):
                break
            original, site_id = order[step]
            self.buy_and_confirm(
                mirror,
                self.orgs[original.info.supplier_id],
                site_id,
                plants[original.info.plant],
                original.info.amount,
                original.info.purchased_on,
            )
        infos = [p.info for p, _ in copies]
        declared_first = {(o, y): a for (o, y), a in self.ledger.declared.items() if o == first.id}
        everything = len(copies) == len(
            [p for p in self.purchases.values() if p.counted and p.info.oem_id == first.id]
        )
        for year in self.years():
            want = marketplace_model.figures(
                infos, declared_first, self.ledger.verified_on, first.id, year
            ).core
            assert self.position(mirror, year) == want, (year, order)
            if everything:
                assert self.position(first, year) == want, (year, order)
        self.coverage["mirrored purchases"] += len(order)

    def years(self) -> tuple[int, int]:
        year = business_today().year
        return (year - 1, year)

    # --- workers ------------------------------------------------------------------------------

    @rule(sweep=st.booleans())
    def run_workers(self, sweep: bool) -> None:
        """The drain (and the sweeper) find nothing left: inline jobs ran after each commit;
        the summaries (auditors: any OEM; buyers: their own only) agree with the model."""
        from workers.outbox import drain, sweep_outbox

        with self.app.app_context():
            assert drain("ledger") == 0
            if sweep:
                sweep_outbox()
            db.session.remove()
        left = self.call("GET", "/admin/outbox?per_page=100", self.admin, 200)
        assert left["items"] == [], left["items"]
        for oem in self.of_kind(OrgKind.OEM):
            for year in self.years():
                summary = self.call(
                    "GET", f"/ledger/summary?year={year}&oem={oem.id}", self.auditor, 200
                )
                if not summary["items"]:
                    continue
                (item,) = summary["items"]
                want = self.ledger.figures(oem.id, year)
                got = (
                    Decimal(item["near_shore_total"]),
                    None if item["baseline"] is None else Decimal(item["baseline"]),
                    Decimal(item["increment"]),
                    Decimal(item["subsidy"]),
                    item["held"],
                )
                assert got == want.core, (oem.id, year, got, want)
                assert item["consistent"] is True, item
                if oem.status == "active":
                    own = self.call("GET", f"/ledger/summary?year={year}", oem.headers, 200)
                    assert [i["oem_org_id"] for i in own["items"]] == [oem.id], own

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def ledger_equals_the_model(self) -> None:
        """I8 and I9 after every step, three ways: the rows against the oracle (each purchase
        counted once iff countable, never without confirmation; per (OEM, year) the entries
        sum to I* and S* from scratch); the frozen facts as the model noted them when each
        purchase was made (site edits change nothing); each OEM's own position against the
        model's purchases, statuses and declarations."""
        if not self.ledger_dirty:
            return
        self.ledger_dirty = False
        with self.app.app_context():
            assert_ledger_matches_oracle(db.session)
            frozen = {
                p.id: (p.site_city_code, (p.site_lat, p.site_lon), (p.plant_lat, p.plant_lon))
                for p in db.session.scalars(
                    select(Purchase).where(Purchase.id.in_(list(self.purchases)))
                )
            }
            db.session.remove()
        for purchase_id, purchase in self.purchases.items():
            info = purchase.info
            assert frozen[purchase_id] == (info.site_city_code, info.site, info.plant), purchase
        trading = {p.info.oem_id for p in self.purchases.values()}
        trading |= {oem_id for oem_id, _ in self.ledger.declared}
        for oem in self.of_kind(OrgKind.OEM, "active"):
            if oem.id not in trading:
                continue  # no purchase, no declaration: nothing in the ledger to show
            for year in self.years():
                want = self.ledger.figures(oem.id, year)
                assert self.position(oem, year) == want.core, (oem.id, year, want)
                self.coverage["positions"] += 1
                self.coverage["held positions"] += want.held
                self.coverage["subsidised positions"] += want.subsidy > 0

    @invariant()
    def chain_verifies(self) -> None:
        self.coverage["checks"] += 1
        report = self.call("GET", "/ledger/verify", self.auditor, 200)
        assert report["ok"], report

    @invariant()
    def matches_equal_the_spec(self) -> None:
        open_demands = sorted(d.id for d in self.demands.values() if d.state == "open")
        if not open_demands:
            return
        with self.app.app_context():
            suppliers = [
                documents.supplier_fact(documents.supplier_document(org))
                for org in db.session.scalars(
                    select(Organization)
                    .where(Organization.kind == OrgKind.SUPPLIER)
                    .options(
                        selectinload(Organization.sites),
                        selectinload(Organization.capabilities),
                        selectinload(Organization.certifications),
                    )
                )
            ]
            facts = {
                demand.id: documents.demand_fact(demand)
                for demand in db.session.scalars(select(Demand).where(Demand.id.in_(open_demands)))
            }
            db.session.remove()
        mine = {s.id: s for s in suppliers if s.id in self.orgs}
        # The rows say what the model says (profile edits, sites, certifications landed).
        for supplier in self.of_kind(OrgKind.SUPPLIER):
            assert _comparable(mine[supplier.id]) == _comparable(supplier.fact())
        for demand_id, fact in facts.items():
            model = self.demands[demand_id]
            assert fact == model.fact(self.place_of(model.plant))
            want = spec.rank(suppliers, fact, today())
            page = self.call("GET", f"/demands/{demand_id}/matches?per_page=100", self.admin, 200)
            assert page["degraded"] is False, page
            got = [(i["supplier"]["id"], i["nearest_site"]["id"]) for i in page["items"]]
            assert got == [(m.supplier_id, m.nearest_site_id) for m in want], (
                f"demand {demand_id}: matches {got} != spec {want}"
            )
            for item, match in zip(page["items"], want, strict=True):
                assert item["distance_km"] == pytest.approx(match.distance_km, abs=1e-6)
                assert item["score"] == pytest.approx(match.score, abs=1e-9)
                assert item["tier_factor"] == pytest.approx(match.tier_factor)
            assert page["meta"]["total"] == len(want)
            self.coverage["matches"] += len(want)

    @invariant()
    def elasticsearch_equals_the_database(self) -> None:
        """The index, kept up to date by the outbox sync alone, answers as the database does:
        the ranked matches of every open demand and the supplier search box."""
        if self.elastic is None:
            return
        self.elastic.refresh()  # the sync ran inline after each commit; make it searchable
        database = DatabaseSearchBackend()
        open_demands = sorted(d.id for d in self.demands.values() if d.state == "open")
        with self.app.app_context():
            facts = [
                documents.demand_fact(demand)
                for demand in db.session.scalars(
                    select(Demand).where(Demand.id.in_(open_demands)).order_by(Demand.id)
                )
            ]
            for fact in facts:
                want_page = database.match(fact, today(), 1, 1000)
                got_page = self.elastic.match(fact, today(), 1, 1000)
                want = [hit.match for hit in want_page.hits]
                got = [hit.match for hit in got_page.hits]
                assert got == want, f"{fact}: Elasticsearch {got} != database {want}"
                assert got_page.total == want_page.total == len(want)
                self.coverage["elasticsearch matches"] += len(want)
            plants = [s.place for o in self.of_kind(OrgKind.OEM) for s in o.sites.values()]
            queries = [
                SupplierQuery(),
                # Declared certificates (pending or verified), and verified ones only.
                SupplierQuery(standards=("iatf-16949",)),
                SupplierQuery(standards=("iatf-16949",), verified_only=True),
            ] + [SupplierQuery(lat=p.lat, lon=p.lon, radius_km=150.0) for p in plants[:1]]
            for query in queries:
                want_search = database.search(query, today(), 1, 1000)
                got_search = self.elastic.search(query, today(), 1, 1000)
                want_ids = [hit.document["id"] for hit in want_search.hits]
                got_ids = [hit.document["id"] for hit in got_search.hits]
                if not query.near:  # relevance orders differ per engine; the set must not
                    want_ids, got_ids = sorted(want_ids), sorted(got_ids)
                assert got_ids == want_ids, f"{query}: Elasticsearch {got_ids} != {want_ids}"
                assert got_search.facets == want_search.facets, query
                self.coverage["elasticsearch search hits"] += len(want_ids)
            self.coverage["elasticsearch checks"] += 1
            db.session.remove()


def _other(party: OrgKind) -> OrgKind:
    return OrgKind.SUPPLIER if party is OrgKind.OEM else OrgKind.OEM


def _ledger_status(purchase: dict[str, Any]) -> Any:
    """``GET /purchases/{id}``: its ``ledger.status`` (a flat ``ledger_status`` in older shapes)."""
    if "ledger" in purchase:
        return purchase["ledger"]["status"]
    return purchase["ledger_status"]


def _comparable(fact: spec.SupplierFact) -> Any:
    """A supplier fact with its collections in a stable order."""
    return (
        fact.id,
        fact.active,
        fact.listed,
        fact.tier,
        tuple(sorted(fact.categories)),
        tuple(sorted((s.id, s.lat, s.lon, s.active) for s in fact.sites)),
        tuple(sorted(fact.certifications, key=lambda c: c.id)),
    )


@pytest.fixture
def marketplace(app: Flask) -> Iterator[type[Marketplace]]:
    Marketplace.app = app
    Marketplace.elasticsearch_url = None
    Marketplace.coverage = Counter()
    yield Marketplace
    Marketplace.elasticsearch_url = None
    app.extensions["rate_limiter"].storage.reset()


# Bounded and reproducible: derandomized (the examples are the same every run), no example
# database. Sized for a shared 2-core CI machine: about 30 s alone, far from the timeout.
# No shrinking: shrinking a sequence of HTTP calls takes minutes (last measured: past the
# 300 s timeout, which then shows up as a "flaky" failure); the failing example is printed
# step by step as generated (at most 25 steps) and, derandomized, fails the same way again.
STATEFUL_SETTINGS = settings(
    max_examples=int(os.environ.get("SM_EX", "30")),  # SM_EX: fewer, for a quick local run
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# The same machine with Elasticsearch behind the app: fewer examples (every step also
# refreshes the index and asks both backends).
ELASTICSEARCH_SETTINGS = settings(STATEFUL_SETTINGS, max_examples=12)


@pytest.mark.timeout(900)  # 360-590 s measured with 6 agents' runs on 2 cores (load 10-13)
def test_the_marketplace_keeps_ledger_and_search_consistent(
    marketplace: type[Marketplace],
) -> None:
    run_state_machine_as_test(marketplace, settings=STATEFUL_SETTINGS)
    print(dict(marketplace.coverage))
    # Derandomized: the same examples each run (about 750 checked steps, 280 ranked matches,
    # 15 purchases and 10 cancellations); the floors only catch a machine that stopped trading.
    coverage = marketplace.coverage
    assert coverage["checks"] > 500 and coverage["matches"] > 100, coverage
    assert coverage["purchases"] >= 8 and coverage["cancellations"] >= 4, coverage
    # v2, last measured (PostgreSQL / SQLite: the examples differ with the ids): 225 / 137
    # purchases, 16 / 4 mirrored, 21 / 19 reversals, 24 / 109 declarations, 9 / 9 site moves,
    # 2 / 2 confirmations and 7 / 1 disputes by the rule; 1138 / 984 positions checked, 662 /
    # 399 of them held and 344 / 495 subsidised.
    # With certificate reviews in the certificate rules and re-quoting after a withdrawal (each
    # changed the derandomized draws after them): declarations last measured 10 on PostgreSQL,
    # so their floor went from 20 to 8. Mirrored purchases are no floor: they depend on the
    # draws reaching the mirror step with counted purchases (16, 4, 8 measured; 0 once a
    # supplier could quote again); the mirror's check runs when they do.
    assert coverage["declarations"] >= 8, coverage
    assert coverage["certificate reviews"] >= 5, coverage
    assert coverage["reversals"] >= 5 and coverage["site moves"] >= 5, coverage
    assert coverage["held positions"] >= 100 and coverage["subsidised positions"] >= 100, coverage
    # Disputes and confirmations depend on the draws reaching a pending purchase (disputes
    # measured 7, 1, 0, 6; confirmations 2, 2, then 0 once notifications and re-quoting changed
    # the derandomized draws): they are not floors here, so a rule added elsewhere cannot fail
    # this test by moving the draws; both rules are checked deterministically by
    # test_subsidy_integrity and test_ledger_rules, and here whenever the draws reach them.


@pytest.mark.elasticsearch
# The default 300 s was passed at load 10 on 2 cores once every step also compared the cert=
# searches with and without verified_only (a timeout, not a difference).
@pytest.mark.timeout(900)
def test_elasticsearch_ranks_like_the_database_at_every_step(
    marketplace: type[Marketplace], elasticsearch_url: str
) -> None:
    marketplace.elasticsearch_url = elasticsearch_url
    run_state_machine_as_test(marketplace, settings=ELASTICSEARCH_SETTINGS)
    # About 300 compared steps, 150 ranked matches and 500 search hits.
    coverage = marketplace.coverage
    assert coverage["elasticsearch checks"] > 200, coverage
    assert coverage["elasticsearch matches"] > 60, coverage
    assert coverage["elasticsearch search hits"] > 200, coverage
