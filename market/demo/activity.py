"""The demo buyer's business, done the way users do it: through the services.

So every rule applies, as it would to a request: facts frozen when a purchase is recorded,
nothing counted until the other party confirms, the ledger following the outbox. For the OEM
of ``buyer@demo.test`` (GAC Honda, the Huangpu plant):

- purchases in the previous and the current business year from the two demo suppliers
  (``supplier@demo.test`` in Guangzhou, ``supplier2@demo.test`` in Shaoguan with a site outside
  the province): several near-shore, some not (``OUT_OF_PROVINCE``, or ``TOO_FAR``), some
  recorded by the buyer and confirmed by the supplier, some the other way round, and one
  confirmed then cancelled (the ledger reverses it);
- a declared baseline for the year before the previous one (the OEM joined the platform this
  year, so without it the previous year's subsidy would be held);
- a claim for the previous year, filed and submitted by the buyer (under a signed
  checkpoint), waiting for ``auditor@demo.test``.

Each use case commits on its own, like a request. Whatever the job mode, the ledger's outbox
rows are drained before this returns, so the ledger is complete when ``seed-demo`` ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from market import geo
from market.clock import business_today
from market.demo.names import BUYER_PLANT
from market.demo.world import DemoWorld
from market.extensions import db
from market.models import Capability, EntryKind, LedgerEntry, Organization, Site, User
from market.schemas.claims import ClaimCreateSchema
from market.schemas.ledger import BaselineCreateSchema
from market.schemas.marketplace import PurchaseCreateSchema
from market.services import claims, policies
from market.services import purchases as purchase_service
from workers.outbox import drain

NEAR_KM = 200.0  # the policy's max_distance_km; the ledger decides, this only picks sites
PROVINCE = "44"
CANCEL_REASON = "Invoiced to the wrong plant; re-issued by the supplier (demo)."
BASELINE_SHARE = Decimal("0.55")  # the declared baseline: about half the previous year's T


@dataclass(frozen=True)
class PlannedPurchase:
    site: Site
    supplier_user: User
    purchased_on: date
    amount: Decimal
    category: str
    by_supplier: bool  # recorded by the supplier, confirmed by the buyer
    near: bool
    cancel: bool = False


def business(world: DemoWorld, rng: random.Random) -> None:
    """Purchases, the baseline, the ledger settled, the claim; then the summary's tally."""
    buyer = world.users["buyer"]
    oem_id = buyer.organization_id
    assert oem_id is not None
    plant = db.session.get(Site, world.site_of_plant.get(BUYER_PLANT) or 0)
    if plant is None or plant.organization_id != oem_id:
        plant = db.session.scalars(select(Site).where(Site.organization_id == oem_id)).first()
    assert plant is not None
    plan = _plan(world, rng, plant)
    today = business_today()
    declare_baseline(world, oem_id, today.year - 2, plan)
    for n, planned in enumerate(plan, start=1):
        _record_and_confirm(world, planned, plant, n)
    settle_ledger()
    submit_claim(world, today.year - 1)
    _tally(world, oem_id, today.year - 1)


def _supplier_sites(world: DemoWorld, plant: Site) -> list[tuple[Site, User, bool]]:
    """Active sites of the demo suppliers that have a user, each with whether it looks
    near-shore for ``plant`` (inside the province's outline and within 200 km)."""
    found = []
    for name in ("supplier", "supplier2"):
        user = world.users.get(name)
        if user is None:
            continue
        sites = db.session.scalars(
            select(Site)
            .where(Site.organization_id == user.organization_id, Site.active.is_(True))
            .order_by(Site.id)
        )
        for site in sites:
            near = site.city_code.startswith(PROVINCE) and (
                geo.in_province(PROVINCE, site.lat, site.lon)
                and geo.haversine_km(site.lat, site.lon, plant.lat, plant.lon) <= NEAR_KM
            )
            found.append((site, user, near))
    return found


def _plan(world: DemoWorld, rng: random.Random, plant: Site) -> list[PlannedPurchase]:
    """Previous year: four near-shore, one not, one near-shore cancelled; this year: two
    near-shore, one not (fewer when a small world has no such site)."""
    sites = _supplier_sites(world, plant)
    near = [(s, u) for s, u, is_near in sites if is_near]
    far = [(s, u) for s, u, is_near in sites if not is_near]
    today = business_today()
    previous = (date(today.year - 1, 1, 1), date(today.year - 1, 12, 31))
    current = (date(today.year, 1, 1), today)
    shape = [(previous, True, False)] * 4 + [(previous, False, False), (previous, True, True)]
    shape += [(current, True, False)] * 2 + [(current, False, False)]
    plan, used = [], {True: 0, False: 0}  # each pool's sites in turn
    for n, ((first, last), is_near, cancel) in enumerate(shape):
        pool = near if is_near else far
        if not pool:
            continue
        site, user = pool[used[is_near] % len(pool)]
        used[is_near] += 1
        plan.append(
            PlannedPurchase(
                site=site,
                supplier_user=user,
                purchased_on=first + timedelta(days=rng.randint(0, (last - first).days)),
                amount=Decimal(rng.randint(8_000_000, 60_000_000)) / 100,
                category=_category_of(site.organization_id, rng),
                by_supplier=n % 3 == 2,
                near=is_near,
                cancel=cancel,
            )
        )
    return sorted(plan, key=lambda p: p.purchased_on)


def _category_of(supplier_id: int, rng: random.Random) -> str:
    categories = sorted(
        db.session.scalars(
            select(Capability.category).where(Capability.organization_id == supplier_id)
        )
    )
    return rng.choice(categories) if categories else "body"


def declare_baseline(world: DemoWorld, oem_id: int, year: int, plan: list[PlannedPurchase]) -> None:
    """The admin declares the OEM's near-shore total of ``year`` (it joined the platform this
    year), so the next year's subsidy is not held."""
    planned = sum(
        (p.amount for p in plan if p.near and not p.cancel and p.purchased_on.year == year + 1),
        Decimal("0"),
    )
    amount = (planned * BASELINE_SHARE / 1000).quantize(Decimal("1")) * 1000
    data = BaselineCreateSchema().load(
        {
            "oem_org_id": oem_id,
            "year": year,
            "amount": f"{amount:.2f}",
            "note": "Declared from the OEM's audited purchasing report (demo).",
        }
    )
    policies.baseline_declare(data, by=world.users["admin"])
    world.summary.baseline_year = year


def _record_and_confirm(world: DemoWorld, planned: PlannedPurchase, plant: Site, n: int) -> None:
    """One party records the purchase, the other confirms it (and the buyer may cancel it)."""
    buyer = world.users["buyer"]
    recorder, confirmer = (
        (planned.supplier_user, buyer) if planned.by_supplier else (buyer, planned.supplier_user)
    )
    body = {
        "supplier_site_id": planned.site.id,
        "plant_id": plant.id,
        "category": planned.category,
        "amount": f"{planned.amount:.2f}",
        "purchased_on": planned.purchased_on.isoformat(),
        "invoice_number": f"DEMO-{planned.purchased_on:%Y%m%d}-{n:04d}",
        "po_number": f"PO-{planned.purchased_on:%Y}-{n:04d}",
    }
    if planned.by_supplier:
        body["oem_org_id"] = buyer.organization_id
    else:
        body["supplier_org_id"] = planned.site.organization_id
    data = PurchaseCreateSchema().load(body)
    purchase_id = purchase_service.record_purchase(recorder, data).body["id"]
    purchase_service.purchase_confirm(confirmer, purchase_id)
    if planned.cancel:
        purchase_service.purchase_cancel(buyer, purchase_id, CANCEL_REASON)


def settle_ledger() -> None:
    """Run the ledger's outbox rows now (inline mode already has; with RQ this does not wait
    for a worker), so the entries exist when the command ends."""
    drain("ledger")


def submit_claim(world: DemoWorld, year: int) -> None:
    """The buyer files the previous year's claim and submits it: its figures and lines are
    frozen under a signed checkpoint, and it waits in ``auditor@demo.test``'s queue."""
    buyer = world.users["buyer"]
    data = ClaimCreateSchema().load({"year": year, "note": "Near-shore subsidy claim (demo)."})
    claim = claims.claim_create(buyer, data)
    claim = claims.claim_submit(buyer, claim.id, "All purchases confirmed by the suppliers.")
    world.summary.claim_id = claim.id
    world.summary.claim_state = claim.state.value


def _tally(world: DemoWorld, oem_id: int, previous_year: int) -> None:
    entries = select(LedgerEntry).where(LedgerEntry.oem_org_id == oem_id).subquery()
    rows = db.session.execute(
        select(entries.c.kind, entries.c.near_shore, func.count()).group_by(
            entries.c.kind, entries.c.near_shore
        )
    ).all()
    summary = world.summary
    for kind, near_shore, counted in rows:
        summary.ledger_entries += counted
        if kind == EntryKind.RECORD:
            if near_shore:
                summary.near_shore += counted
            else:
                summary.not_near_shore += counted
        elif kind == EntryKind.REVERSAL:
            summary.cancelled += counted
    summary.previous_year = previous_year
    summary.previous_year_subsidy = db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.subsidy), 0)).where(
            LedgerEntry.oem_org_id == oem_id, LedgerEntry.year == previous_year
        )
    )
    summary.buyer_organization = db.session.scalar(
        select(Organization.legal_name).where(Organization.id == oem_id)
    )
