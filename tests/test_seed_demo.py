"""``flask seed-demo``: a realistic, deterministic demo world with fictional suppliers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from market import geo, ledger, refdata, uscc
from market.clock import business_today
from market.demo import (
    DEMO_PASSWORD,
    demo_uscc,
    is_demo_uscc,
    seed_demo,
)
from market.errors import Conflict
from market.models import (
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    Claim,
    ClaimLine,
    ClaimState,
    DeclaredBaseline,
    Demand,
    DemandState,
    EntryKind,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseParty,
    PurchaseStatus,
    Role,
    Site,
    User,
)
from market.passwords import verify_password
from market.schemas.suppliers import city_code_errors
from market.services import claims
from market.services.suppliers import certification_levels, check_site_location
from tests import factories

SIZE = 30
LEDGER_TOPICS = {OutboxTopic.LEDGER_RECORD, OutboxTopic.LEDGER_REVERSE, OutboxTopic.LEDGER_REBASE}


def count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def gb11714_check(body8: str) -> str:
    """The GB 11714 organization-code check character of a real code's characters 9–16."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    value = lambda ch: int(ch) if ch.isdigit() else ord(ch) - 55  # noqa: E731
    check = 11 - sum(value(c) * w for c, w in zip(body8, weights, strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def test_demo_codes_are_checksum_valid_but_can_be_no_real_company():
    real = json.loads((Path(__file__).parent / "data" / "uscc_vectors.json").read_text())
    real_codes = {case["code"] for case in real["valid"]}
    for case in real["valid"]:  # the property the demo codes break on purpose
        assert case["code"][16] == gb11714_check(case["code"][8:16])
    for serial in (0, 1, 30, 31**3, 31**6 - 1):
        code = demo_uscc("440300", serial)
        assert uscc.validate(code) == code and is_demo_uscc(code)
        assert code[16] == "Y" and gb11714_check(code[8:16]) != "Y"
        assert code not in real_codes
    with pytest.raises(ValueError, match="out of range"):
        demo_uscc("440300", 31**6)


def test_seed_demo_builds_a_plausible_world(app, db_session):
    outbox = count(db_session, OutboxEvent)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed-demo", "--size", str(SIZE), "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "buyer@demo.test" in result.stdout and DEMO_PASSWORD in result.stdout
    # The database search backend reads the tables: no reindex to advise, no bare bar label,
    # nothing but the summary on stdout.
    assert "reindex" not in result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Seeded a demo world in ")
    assert not [line for line in lines if line.strip() in {"Suppliers", "Seeding suppliers"}]
    assert not [line for line in lines if line.lstrip().startswith("{")]

    db_session.expire_all()
    suppliers = db_session.scalars(
        select(Organization).where(Organization.kind == OrgKind.SUPPLIER)
    ).all()
    demo = [org for org in suppliers if is_demo_uscc(org.uscc)]
    assert len(demo) == SIZE
    oems = [
        o
        for o in db_session.scalars(select(Organization).where(Organization.kind == OrgKind.OEM))
        if is_demo_uscc(o.uscc)
    ]
    plants = db_session.scalars(
        select(Site).where(Site.organization_id.in_([o.id for o in oems]))
    ).all()
    assert len(plants) == len(refdata.oem_plants())
    assert all("approximate" in (plant.address or "") for plant in plants)
    assert {o.legal_name for o in oems} >= {"广汽本田汽车有限公司", "比亚迪股份有限公司"}

    # Every code valid and fictional; every supplier in Guangdong, all 21 cities used.
    for org in demo + list(oems):
        assert uscc.validate(org.uscc) == org.uscc and is_demo_uscc(org.uscc)
    assert {org.city_code for org in demo} == set(refdata.cities())
    assert {org.tier for org in demo} == {1, 2, 3}
    assert {org.status for org in demo} <= set(OrgStatus)

    ids = [org.id for org in demo]
    sites = db_session.scalars(select(Site).where(Site.organization_id.in_(ids))).all()
    per_org = [sum(1 for s in sites if s.organization_id == i) for i in ids]
    assert min(per_org) >= 1 and max(per_org) <= 4
    assert 1.8 <= len(sites) / SIZE <= 3.0
    # Every site and plant passes the API's real-boundary check; Guangdong's are inside the
    # province outline too (so their purchases can be near-shore), the others are not.
    for site in [*sites, *plants]:
        assert not city_code_errors(site.city_code), site.city_code
        check_site_location(site.city_code, site.lat, site.lon)  # raises if outside its city
        in_province = site.city_code.startswith("44")
        assert geo.in_province("44", site.lat, site.lon) is in_province, site.city_code
    in_guangdong = [s for s in sites if s.city_code.startswith("44")]
    assert len(in_guangdong) >= 0.8 * len(sites)

    capabilities = db_session.scalars(
        select(Capability).where(Capability.organization_id.in_(ids))
    ).all()
    assert all(c.category in refdata.categories() for c in capabilities)
    assert len({refdata.categories()[c.category].depth for c in capabilities}) >= 2
    assert {c.organization_id for c in capabilities} == set(ids)

    certs = db_session.scalars(
        select(Certification).where(Certification.organization_id.in_(ids))
    ).all()
    today = business_today()
    standards = refdata.standards()
    for cert in certs:
        assert cert.standard in standards
        assert cert.level is None or cert.level in certification_levels(cert.standard)
        if standards[cert.standard].validity_years is None:
            assert cert.valid_until is None
        else:
            assert cert.valid_until is not None and cert.valid_from < cert.valid_until
        if cert.site_id is not None:
            assert db_session.get(Site, cert.site_id).organization_id == cert.organization_id
    assert any(c.valid_until and c.valid_until < today for c in certs), "some expired"
    # Reviewed, all but one waiting in the admin's queue (not the first demo supplier's).
    [pending] = [c for c in certs if c.verification is CertVerification.PENDING]
    assert {c.verification for c in certs} == {CertVerification.VERIFIED, CertVerification.PENDING}
    assert any(c.valid_until is None for c in certs) or len(certs) < 20

    demands = db_session.scalars(select(Demand)).all()
    assert any(d.state is DemandState.OPEN for d in demands)
    plant_ids = {p.id for p in plants}
    assert all(d.plant_id in plant_ids and d.need_by > today for d in demands)
    assert all(d.category in refdata.categories() for d in demands)

    users = {u.email: u for u in db_session.scalars(select(User)).all()}
    for email, role in [
        ("buyer@demo.test", Role.BUYER),
        ("supplier@demo.test", Role.SUPPLIER),
        ("auditor@demo.test", Role.AUDITOR),
        ("admin@demo.test", Role.ADMIN),
    ]:
        assert users[email].role is role
    assert verify_password(users["buyer@demo.test"].password_hash, DEMO_PASSWORD)
    buyer_org = db_session.get(Organization, users["buyer@demo.test"].organization_id)
    supplier_org = db_session.get(Organization, users["supplier@demo.test"].organization_id)
    assert buyer_org.kind is OrgKind.OEM
    assert supplier_org.kind is OrgKind.SUPPLIER and supplier_org.status is OrgStatus.ACTIVE
    assert pending.organization_id != supplier_org.id

    # Bulk seeding skips the outbox (a reindex indexes everything); the demo buyer's business
    # went through the services, so its ledger rows are there, all done by the time it ended.
    added = db_session.scalars(select(OutboxEvent).order_by(OutboxEvent.id).offset(outbox)).all()
    ledger_rows = [row for row in added if row.topic in LEDGER_TOPICS]
    assert ledger_rows and {row.status for row in ledger_rows} == {OutboxStatus.DONE}
    assert OutboxTopic.SEARCH_SYNC not in {row.topic for row in added}
    assert "near-shore" in result.stdout and "cancelled" in result.stdout


def test_same_seed_same_world_and_reset_replaces_it(app, db_session):
    """A world without purchases (nothing in the ledger) can be replaced."""
    real = factories.make_org(OrgKind.SUPPLIER)  # someone else's data survives --reset
    first = seed_demo(size=12, seed=3, purchases=False)
    snapshot = lambda: sorted(  # noqa: E731
        (o.uscc, o.legal_name, o.tier, o.city_code)
        for o in db_session.scalars(select(Organization)).all()
        if is_demo_uscc(o.uscc)
    )
    world = snapshot()
    sites = sorted(
        (s.name, round(s.lat, 6), round(s.lon, 6))
        for s in db_session.scalars(select(Site)).all()
        if s.organization_id != real.id
    )
    result = app.test_cli_runner().invoke(args=["seed-demo", "--size", "12", "--seed", "3"])
    assert result.exit_code != 0 and "--reset" in result.output  # refuses to double up

    again = seed_demo(size=12, seed=3, reset=True, purchases=False)
    db_session.expire_all()
    assert snapshot() == world
    assert sites == sorted(
        (s.name, round(s.lat, 6), round(s.lon, 6))
        for s in db_session.scalars(select(Site)).all()
        if s.organization_id != real.id
    )
    assert (again.sites, again.certifications) == (first.sites, first.certifications)
    assert db_session.get(Organization, real.id) is not None
    assert count(db_session, User, User.email == "admin@demo.test") == 1

    seed_demo(size=12, seed=4, reset=True, purchases=False)
    db_session.expire_all()
    assert snapshot() != world


def test_the_demo_buyer_has_confirmed_purchases_a_baseline_and_a_verified_ledger(
    client, db_session
):
    ledger.ensure_default_policy()  # a committed_db test before may have emptied the table
    summary = seed_demo(size=12, seed=5)
    buyer = db_session.scalar(select(User).where(User.email == "buyer@demo.test"))
    oem = buyer.organization_id
    previous = business_today().year - 1
    purchases = db_session.scalars(select(Purchase).where(Purchase.oem_org_id == oem)).all()
    assert {p.purchased_on.year for p in purchases} == {previous, previous + 1}
    # Each confirmed by the other party than the one that recorded it.
    for purchase in purchases:
        confirmer = db_session.get(User, purchase.confirmed_by_id)
        assert confirmer.role is (
            Role.SUPPLIER if purchase.created_by_party is PurchaseParty.OEM else Role.BUYER
        )
    [cancelled] = [p for p in purchases if p.status is PurchaseStatus.CANCELLED]
    assert {p.status for p in purchases} == {PurchaseStatus.CONFIRMED, PurchaseStatus.CANCELLED}

    entries = db_session.scalars(
        select(LedgerEntry).where(LedgerEntry.oem_org_id == oem).order_by(LedgerEntry.seq)
    ).all()
    records = [e for e in entries if e.kind is EntryKind.RECORD]
    assert {e.purchase_id for e in records} == {p.id for p in purchases}
    near = [e for e in records if e.near_shore]
    far = [e for e in records if not e.near_shore]
    assert len(near) >= 3 and far
    assert {e.reason_code for e in far} <= {"TOO_FAR", "OUT_OF_PROVINCE"}
    assert all(e.supplier_city_code.startswith("44") for e in near)
    assert all(e.distance_km <= 200 for e in near)
    [reversal] = [e for e in entries if e.kind is EntryKind.REVERSAL]
    assert reversal.purchase_id == cancelled.id
    assert (summary.near_shore, summary.not_near_shore, summary.cancelled) == (
        len(near),
        len(far),
        1,
    )

    # The declared baseline: the previous year's subsidy is due, not held.
    baseline = db_session.scalar(select(DeclaredBaseline).where(DeclaredBaseline.oem_org_id == oem))
    assert baseline.year == previous - 1 and baseline.amount > 0
    last_of_previous = [e for e in entries if e.year == previous][-1]
    assert last_of_previous.held is False and last_of_previous.baseline == baseline.amount
    assert last_of_previous.subsidy_total > 0
    assert summary.previous_year_subsidy == last_of_previous.subsidy_total
    assert ledger.verify_chain().ok

    # The buyer filed and submitted the previous year's claim; the demo auditor sees it.
    [claim] = db_session.scalars(select(Claim).where(Claim.oem_org_id == oem)).all()
    assert (claim.year, claim.state) == (previous, ClaimState.SUBMITTED)
    assert claim.claimed_amount == last_of_previous.subsidy_total
    lines = db_session.scalars(select(ClaimLine.purchase_id).where(ClaimLine.claim_id == claim.id))
    assert set(lines) == {
        e.purchase_id for e in near if e.year == previous and e.purchase_id != cancelled.id
    }
    assert summary.claim_id == claim.id
    auditor = db_session.scalar(select(User).where(User.email == "auditor@demo.test"))
    assert claims.find_claim(auditor, claim.id).id == claim.id
    headers = factories.auth(auditor)
    listed = client.get("/api/v1/claims", headers=headers).get_json()["items"]
    assert [(c["id"], c["state"]) for c in listed] == [(claim.id, "submitted")]
    assert client.get("/api/v1/ledger/verify", headers=headers).get_json()["ok"] is True

    # The ledger is never deleted from: --reset refuses and names --fresh; nothing changed.
    size = count(db_session, LedgerEntry)
    with pytest.raises(Conflict, match="--fresh"):
        seed_demo(size=12, seed=5, reset=True)
    db_session.rollback()
    assert count(db_session, LedgerEntry) == size
    assert count(db_session, User, User.email == "buyer@demo.test") == 1


def test_the_same_seed_makes_the_same_purchases(app, tmp_path):
    """Two databases, one seed: the same purchases, the same ledger figures."""
    from flask_migrate import upgrade

    from market.extensions import db
    from tests.conftest import make_test_app

    worlds = []
    for name in ("one", "two"):
        other = make_test_app(f"sqlite:///{tmp_path / name}.db")
        with other.app_context():
            upgrade(directory=other.extensions["migrate"].directory)
            seed_demo(size=4, seed=8)
            worlds.append(
                db.session.execute(
                    select(
                        LedgerEntry.kind,
                        LedgerEntry.purchased_on,
                        LedgerEntry.amount,
                        LedgerEntry.reason_code,
                        LedgerEntry.subsidy,
                    ).order_by(LedgerEntry.seq)
                ).all()
            )
            db.session.remove()
            db.engine.dispose()
    assert worlds[0] and worlds[0] == worlds[1]


def test_revoked_certifications_appear_in_a_bigger_world(db_session):
    seed_demo(size=200, seed=11)
    statuses = set(db_session.scalars(select(Certification.status)).all())
    assert statuses == {CertStatus.ACTIVE, CertStatus.REVOKED}


@pytest.mark.elasticsearch
def test_the_summary_advises_a_reindex_only_with_elasticsearch(
    app, database_url, elasticsearch_url, capsys
):
    from market.commands.demo import _report
    from market.demo import DemoSummary
    from tests.conftest import make_test_app

    es_app = make_test_app(database_url, ELASTICSEARCH_URL=elasticsearch_url)
    with es_app.app_context():
        _report(DemoSummary(suppliers=3))
    assert "run `flask search reindex` next" in capsys.readouterr().out
    with app.app_context():  # the database backend
        _report(DemoSummary(suppliers=3))
    assert "reindex" not in capsys.readouterr().out


def test_fresh_builds_a_new_sqlite_database_and_keeps_the_old_one(tmp_path):
    from flask_migrate import upgrade

    from market.extensions import db
    from tests.conftest import make_test_app

    path = tmp_path / "market.db"
    fresh_app = make_test_app(f"sqlite:///{path}")
    with fresh_app.app_context():
        upgrade(directory=fresh_app.extensions["migrate"].directory)
        mine = factories.make_org(OrgKind.SUPPLIER)
        db.session.commit()
        mine_id, mine_uscc = mine.id, mine.uscc
        db.session.remove()
        result = fresh_app.test_cli_runner().invoke(
            args=["seed-demo", "--fresh", "--size", "3", "--seed", "5"]
        )
        assert result.exit_code == 0, result.output
        kept = [p for p in tmp_path.iterdir() if p.name.startswith("market-")]
        assert len(kept) == 1
        assert f"New demo database: {path.resolve()}" in result.stdout
        assert str(kept[0]) in result.stdout
        # The app now serves the new database: the demo is there, the old data is not.
        assert count(db.session, User, User.email == "admin@demo.test") == 1
        assert count(db.session, Organization, Organization.uscc == mine_uscc) == 0
        db.session.remove()
        db.engine.dispose()
    import sqlite3

    with sqlite3.connect(kept[0]) as old:
        assert (
            old.execute("SELECT id FROM organizations WHERE uscc = ?", (mine_uscc,)).fetchone()[0]
            == mine_id
        )
        assert not old.execute("SELECT 1 FROM users WHERE email = 'admin@demo.test'").fetchall()


@pytest.mark.postgres
def test_fresh_on_postgresql_makes_a_new_database_and_names_it(app, owner_database_url):
    """(``app``: the run's database is migrated, whichever tests ran before.) Making a
    database is the operator's act: ``--fresh`` runs as the owner role (the application's
    role may not create databases)."""
    database_url = owner_database_url
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from market.extensions import db
    from tests.conftest import make_test_app

    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL path of --fresh")
    pg_app = make_test_app(database_url)
    with pg_app.app_context():
        result = pg_app.test_cli_runner().invoke(
            args=["seed-demo", "--fresh", "--size", "2", "--seed", "9"]
        )
        db.engine.dispose()
    url = make_url(database_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            made = conn.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": f"{url.database}_demo_%"},
            ).all()
        assert result.exit_code == 0, result.output
        assert len(made) == 1 and made[0] in result.stdout
        # Named without its password.
        assert ":***@" in result.stdout and f":{url.password}@" not in result.stdout
        demo = create_engine(url.set(database=made[0]))
        with demo.connect() as conn:
            admins = conn.scalar(text("SELECT count(*) FROM users WHERE email = 'admin@demo.test'"))
        demo.dispose()
        assert admins == 1
        with pg_app.app_context():  # the configured database got no demo
            assert not db.session.execute(
                text("SELECT 1 FROM users WHERE email = 'admin@demo.test'")
            ).first()
            db.session.remove()
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            for name in made if "made" in locals() else []:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_database d JOIN "
                        "pg_stat_activity a ON a.datname = d.datname WHERE d.datname = :n"
                    ),
                    {"n": name},
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
