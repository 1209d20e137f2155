"""``seed_demo``: the demo world, built as a short sequence of named steps.

The directory — OEMs and plants from ``oem_plants.json`` (locations labelled approximate),
``size`` fictional suppliers spread over Guangdong's 21 cities with sites, tiers, capabilities
and certifications, the demo users, open demands — goes in with bulk INSERTs in batches and one
commit, so 100 000 suppliers take minutes, not hours; nothing of it is written to the outbox
(with Elasticsearch, run ``flask search reindex`` afterwards).

Then the demo buyer's organization does business through the services (``activity``): purchases
confirmed by the other party, one cancelled, a declared baseline, a submitted claim. The same
``seed`` builds the same world (dates are relative to today).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select

from market import refdata
from market.demo import activity
from market.demo.generator import WorldGenerator
from market.demo.names import (
    BATCH,
    BUYER_PLANT,
    DEMO_EMAIL_DOMAIN,
    DEMO_PASSWORD,
    SECOND_BUYER_PLANT,
)
from market.demo.reset import delete_demo_world, demo_world_exists
from market.demo.world import DemoSummary, DemoUser, DemoWorld
from market.errors import Conflict
from market.extensions import db
from market.models import (
    Authority,
    Capability,
    Certification,
    CertVerification,
    Demand,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    Role,
    Site,
    SiteKind,
    User,
)
from market.passwords import hash_password
from market.services.unit_of_work import commit

AUTHORITY_NAME = "广东省工业和信息化厅（演示）"  # the demo auditor's: the whole province


def seed_demo(
    *,
    size: int = 300,
    seed: int = 2026,
    reset: bool = False,
    password: str = DEMO_PASSWORD,
    purchases: bool = True,
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Build the demo world: the directory in one transaction, then (unless ``purchases`` is
    False) the demo buyer's purchases, baseline and claim through the services."""
    started = time.perf_counter()
    if size < 1:
        raise ValueError("size must be at least 1")
    replace_previous(reset)
    now = datetime.now(UTC)
    world = DemoWorld(
        gen=WorldGenerator(rng=random.Random(seed), today=now.date(), now=now),
        summary=DemoSummary(password=password, reset=reset),
        now=now,
    )
    oems_and_plants(world)
    suppliers(world, size, progress)
    people(world, password)
    demands(world, size)
    commit()
    if purchases:
        activity.business(world, random.Random(f"{seed}-business"))
    world.summary.seconds = time.perf_counter() - started
    return world.summary


def replace_previous(reset: bool) -> None:
    """Refuse to double up a demo world; with ``reset``, delete the previous one first."""
    if demo_world_exists():
        if not reset:
            raise Conflict("A demo world is already there; run with --reset to replace it.")
        delete_demo_world()


def _insert_returning_ids(model: Any, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    statement = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(db.session.scalars(statement, rows))


def _insert(model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        db.session.execute(insert(model), rows)


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def oems_and_plants(world: DemoWorld) -> None:
    """OEM organizations and their plants (approximate locations from the reference data)."""
    now = world.now
    for legal_name, english, members in world.gen.oem_groups():
        city_code = members[0]["city_code"]
        organization = {
            "kind": OrgKind.OEM,
            "uscc": world.gen.next_uscc(city_code),
            "legal_name": legal_name,
            "english_name": english,
            "city_code": city_code,
            "status": OrgStatus.ACTIVE,
            "listed": True,
            "version": 1,
            "verified_at": now,
            "created_at": now,
            "updated_at": now,
        }
        [oem_id] = _insert_returning_ids(Organization, [organization])
        ids = _insert_returning_ids(Site, [_plant_row(oem_id, plant, now) for plant in members])
        for plant, site_id in zip(members, ids, strict=True):
            world.oem_of_plant[plant["id"]] = oem_id
            world.site_of_plant[plant["id"]] = site_id
        world.plants.extend((site_id, oem_id) for site_id in ids)
        world.summary.oems += 1
    world.summary.plants = len(world.plants)


def _plant_row(oem_id: int, plant: dict[str, Any], now: datetime) -> dict[str, Any]:
    town = plant.get("town") or refdata.cities()[plant["city_code"]].name_zh
    return {
        "organization_id": oem_id,
        "kind": SiteKind.PLANT,
        "name": plant["name"][:200],
        "city_code": plant["city_code"],
        "address": f"{town} — approximate location: {plant['coord_precision']}"[:300],
        "lat": plant["lat"],
        "lon": plant["lon"],
        "active": True,
        "created_at": now,
    }


def suppliers(world: DemoWorld, size: int, progress: Callable[[int], None] | None) -> None:
    """``size`` suppliers in batches: organizations, then their sites, capabilities and
    certifications."""
    city_codes = list(refdata.cities())
    gen = world.gen
    for batch in _batches(size, BATCH):
        orgs = [
            # The first 21 cover every city once; the rest follow the industry's weights.
            gen.supplier(i, city_codes[i] if i < len(city_codes) else gen.city(gen.rng))
            for i in batch
        ]
        domains = [org.pop("_domain") for org in orgs]
        # Plain multi-row INSERTs, then one lookup, beat INSERT ... RETURNING in order.
        _insert(Organization, orgs)
        by_uscc = dict(
            db.session.execute(
                select(Organization.uscc, Organization.id).where(
                    Organization.uscc.in_([org["uscc"] for org in orgs])
                )
            ).all()
        )
        ids = [by_uscc[org["uscc"]] for org in orgs]
        first = len(world.supplier_ids)
        world.supplier_ids.extend(ids)
        sites = [
            row
            for n, (org_id, org) in enumerate(zip(ids, orgs, strict=True), start=first)
            # The second demo supplier also works outside the province (a far purchase).
            for row in gen.sites(org_id, org["city_code"], far_site=n == 1)
        ]
        _insert(Site, sites)
        _capabilities_and_certifications(world, ids, domains)
        world.summary.sites += len(sites)
        if progress:
            progress(len(batch))
    world.summary.suppliers = len(world.supplier_ids)


def _capabilities_and_certifications(world: DemoWorld, ids: list[int], domains: list[str]) -> None:
    # IATF 16949 certifies a manufacturing site: each supplier's first active plant.
    first_plant = dict(
        db.session.execute(
            select(Site.organization_id, func.min(Site.id))
            .where(
                Site.organization_id.in_(ids),
                Site.kind == SiteKind.PLANT,
                Site.active.is_(True),
            )
            .group_by(Site.organization_id)
        ).all()
    )
    capabilities: list[dict[str, Any]] = []
    certifications: list[dict[str, Any]] = []
    for org_id, domain in zip(ids, domains, strict=True):
        capabilities.extend(world.gen.capabilities(org_id, domain))
        certifications.extend(world.gen.certifications(org_id, domain, first_plant.get(org_id)))
    if ids[0] == world.supplier_ids[0]:  # the first batch
        _one_pending(world, certifications)
    _insert(Capability, capabilities)
    _insert(Certification, certifications)
    world.summary.capabilities += len(capabilities)
    world.summary.certifications += len(certifications)


def _one_pending(world: DemoWorld, certifications: list[dict[str, Any]]) -> None:
    """One certificate waits for the admin's review (``admin@demo.test``'s queue): the first
    of the second demo supplier's, else of any supplier but the first (whose certificates the
    demo's matching relies on)."""
    ids = world.supplier_ids
    rows = [row for row in certifications if row["organization_id"] != ids[0]]
    preferred = [row for row in rows if len(ids) > 1 and row["organization_id"] == ids[1]]
    for row in (preferred or rows)[:1]:
        row["verification"] = CertVerification.PENDING


def people(world: DemoWorld, password: str) -> None:
    """The demo users, each its organization's admin; one hash for the one printed password
    (argon2 is deliberately slow)."""
    password_hash = hash_password(password)
    ids = world.supplier_ids
    members: list[tuple[str, Role, int | None]] = [
        ("buyer", Role.BUYER, world.oem_of_plant.get(BUYER_PLANT) or world.plants[0][1]),
        ("buyer2", Role.BUYER, world.oem_of_plant.get(SECOND_BUYER_PLANT) or world.plants[-1][1]),
        ("supplier", Role.SUPPLIER, ids[0]),
        ("supplier2", Role.SUPPLIER, ids[1] if len(ids) > 1 else None),
        ("auditor", Role.AUDITOR, None),
        ("admin", Role.ADMIN, None),
    ]
    authority = _demo_authority()
    for name, role, member_of in members:
        if role is Role.SUPPLIER and member_of is None:
            continue
        user = User(
            email=f"{name}@{DEMO_EMAIL_DOMAIN}",
            password_hash=password_hash,
            display_name=f"Demo {name}",
            role=role,
            organization_id=member_of,
            org_role=OrgRole.ADMIN if member_of is not None else None,
            authority_id=authority.id if role is Role.AUDITOR else None,
        )
        db.session.add(user)
        db.session.flush()
        world.users[name] = user
        if role is Role.BUYER and member_of is not None:
            world.created_by.setdefault(member_of, user.id)
        org_name = (
            db.session.scalar(select(Organization.legal_name).where(Organization.id == member_of))
            if member_of
            else None
        )
        world.summary.users.append(DemoUser(user.email, role, org_name))


def _demo_authority() -> Authority:
    """The demo auditor's authority: the whole province (jurisdiction "44"). A reset keeps it:
    staff rows outlive the demo's organizations."""
    authority = db.session.scalar(select(Authority).where(Authority.name == AUTHORITY_NAME))
    if authority is None:
        authority = Authority(name=AUTHORITY_NAME, city_codes=["44"])
        db.session.add(authority)
        db.session.flush()
    return authority


def demands(world: DemoWorld, size: int) -> None:
    """Open (and a few draft) demands at the OEM plants."""
    count = min(max(10, size // 10), 5000)
    gen = world.gen
    for batch in _batches(count, BATCH):
        _insert(Demand, [gen.demand(gen.rng.choice(world.plants), world.created_by) for _ in batch])
    world.summary.demands = count
