"""A realistic demo world built from the reference data, for trying the product and benchmarks.

The OEMs and plants come from ``oem_plants.json`` (locations labelled approximate); suppliers are
fictional, spread over Guangdong's 21 cities with sites, tiers, capabilities and certifications,
and some OEM demands are open. Rows go in with bulk INSERTs in batches, so 100 000 suppliers take
minutes, not hours; nothing is written to the outbox (run ``flask search reindex`` afterwards).

Every demo organization gets a fictional USCC that is checksum-valid (GB 32100) yet can belong to
no real company: characters 9–17 of a real code are a GB 11714 organization code whose last
character is its own check digit (0–9 or X); demo codes put ``Y`` there. They also read
``DM`` at characters 9–10, which is how ``--reset`` finds the previous demo world.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update

from market import geo, refdata, uscc
from market.errors import Conflict
from market.extensions import db
from market.models import (
    ApiToken,
    Authority,
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    DeclaredBaseline,
    Demand,
    DemandState,
    IdempotencyRecord,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    Purchase,
    Quote,
    Role,
    SecurityEvent,
    Site,
    SiteKind,
    User,
)
from market.passwords import hash_password
from market.services.suppliers import certification_levels
from market.services.unit_of_work import commit

DEMO_PASSWORD = "strongchain-demo-2026"  # noqa: S105  (a documented demo password)
DEMO_EMAIL_DOMAIN = "demo.test"  # reserved TLD (RFC 2606): never a real mailbox
# "91" + division (6) + "DM" + serial (6) + "Y" + check: see the module docstring.
DEMO_USCC_LIKE = "91______DM______Y_"
BATCH = 1000
JITTER_KM = 8.0
KM_PER_DEGREE = 111.32

# Where the auto-parts industry is: relative weights of Guangdong's cities for demo suppliers.
CITY_WEIGHTS = {
    "440100": 18, "440300": 16, "440600": 14, "441900": 12, "441300": 7, "442000": 6,
    "440700": 5, "441200": 5, "440400": 4, "441800": 2.5, "440500": 2, "440200": 1.5,
    "441600": 1.5, "441500": 1.5, "441400": 1, "441700": 1, "440800": 1, "440900": 1,
    "445200": 1, "445100": 0.8, "445300": 0.8,
}  # fmt: skip
# A few sites are outside the province (the ledger marks their purchases OUT_OF_PROVINCE).
OUT_OF_PROVINCE = (
    ("430100", "长沙", "Changsha", 28.228, 112.939),
    ("450100", "南宁", "Nanning", 22.817, 108.366),
    ("360700", "赣州", "Ganzhou", 25.831, 114.935),
    ("350200", "厦门", "Xiamen", 24.480, 118.089),
    ("420100", "武汉", "Wuhan", 30.593, 114.305),
    ("320500", "苏州", "Suzhou", 31.299, 120.585),
)
# Fictional trade names: two characters from this list (with pinyin for the English name).
NAME_PARTS = (
    ("恒", "Heng"), ("锐", "Rui"), ("鑫", "Xin"), ("达", "Da"), ("华", "Hua"), ("瑞", "Rui"),
    ("宏", "Hong"), ("盛", "Sheng"), ("泰", "Tai"), ("丰", "Feng"), ("源", "Yuan"),
    ("晟", "Sheng"), ("拓", "Tuo"), ("骏", "Jun"), ("嘉", "Jia"), ("科", "Ke"), ("迅", "Xun"),
    ("凯", "Kai"), ("博", "Bo"), ("联", "Lian"), ("精", "Jing"), ("诚", "Cheng"), ("永", "Yong"),
    ("信", "Xin"), ("德", "De"), ("创", "Chuang"), ("力", "Li"), ("通", "Tong"), ("立", "Li"),
    ("安", "An"), ("捷", "Jie"), ("峰", "Feng"), ("远", "Yuan"), ("明", "Ming"), ("昊", "Hao"),
    ("腾", "Teng"), ("弘", "Hong"), ("毅", "Yi"), ("卓", "Zhuo"), ("越", "Yue"),
)  # fmt: skip
DOMAINS: dict[str, dict[str, Any]] = {
    "powertrain": {
        "weight": 25,
        "suffixes": (("动力科技", "Power Technology"), ("电驱系统", "E-Drive Systems"),
                     ("新能源科技", "New Energy Technology")),
        "processes": ("machining", "die casting", "winding", "cell assembly", "module assembly",
                      "heat treatment", "EOL testing", "laser welding"),
        "unit": "sets",
    },
    "chassis": {
        "weight": 20,
        "suffixes": (("汽车底盘系统", "Automotive Chassis Systems"),
                     ("精密制动", "Precision Braking"), ("机械", "Machinery")),
        "processes": ("forging", "machining", "stamping", "welding", "casting", "painting",
                      "assembly", "heat treatment"),
        "unit": "sets",
    },
    "intelligent-connected": {
        "weight": 20,
        "suffixes": (("智能科技", "Intelligent Technology"), ("汽车电子", "Automotive Electronics"),
                     ("微电子", "Microelectronics")),
        "processes": ("SMT", "wafer packaging", "PCBA test", "firmware flashing",
                      "optical calibration", "conformal coating", "burn-in"),
        "unit": "pcs",
    },
    "body": {
        "weight": 25,
        "suffixes": (("汽车部件", "Auto Parts"), ("精密压铸", "Precision Die-casting"),
                     ("汽车内饰", "Automotive Interiors")),
        "processes": ("stamping", "injection moulding", "die casting", "welding", "painting",
                      "sewing", "foaming", "harness assembly"),
        "unit": "pcs",
    },
    "industrial-software": {
        "weight": 4,
        "suffixes": (("工业软件", "Industrial Software"), ("数字科技", "Digital Technology")),
        "processes": ("software development", "system integration", "simulation"),
        "unit": None,
    },
    "warehousing-logistics": {
        "weight": 6,
        "suffixes": (("供应链管理", "Supply Chain Management"), ("物流", "Logistics")),
        "processes": ("warehousing", "JIT delivery", "milk run", "sequencing"),
        "unit": "pallets",
    },
}  # fmt: skip
ROADS = ("工业大道", "科技路", "创业路", "兴业路", "环城路", "港城大道", "智造大道", "汽车城路")
ISSUERS = ("DNV", "TÜV SÜD", "TÜV Rheinland", "SGS", "Bureau Veritas", "中国质量认证中心 (CQC)")
SELF_DECLARED = "self-declared by the manufacturer"
EMPLOYEE_BANDS_BY_TIER = {
    1: ("1000-4999", "5000+", "300-999"),
    2: ("300-999", "1000-4999", "20-299"),
    3: ("20-299", "1-19", "300-999"),
}
REVENUE_BANDS_BY_TIER = {
    1: ("400m-2b", "2b+", "20m-400m"),
    2: ("20m-400m", "400m-2b", "3m-20m"),
    3: ("3m-20m", "0-3m", "20m-400m"),
}


@dataclass
class DemoUser:
    email: str
    role: Role
    organization: str | None


@dataclass
class DemoSummary:
    oems: int = 0
    plants: int = 0
    suppliers: int = 0
    sites: int = 0
    capabilities: int = 0
    certifications: int = 0
    demands: int = 0
    users: list[DemoUser] = field(default_factory=list)
    password: str = DEMO_PASSWORD
    reset: bool = False
    seconds: float = 0.0


def demo_uscc(division: str, serial: int) -> str:
    """A checksum-valid USCC that cannot be a real company's (see the module docstring)."""
    digits = []
    for _ in range(6):
        serial, rest = divmod(serial, len(uscc.ALPHABET))
        digits.append(uscc.ALPHABET[rest])
    if serial:
        raise ValueError("demo serial out of range")
    return uscc.complete(f"91{division}DM{''.join(reversed(digits))}Y")


def is_demo_uscc(code: str) -> bool:
    return len(code) == 18 and code[:2] == "91" and code[8:10] == "DM" and code[16] == "Y"


def _demo_orgs() -> Any:
    return select(Organization.id).where(Organization.uscc.like(DEMO_USCC_LIKE))


def _demo_users() -> Any:
    return select(User.id).where(
        or_(
            User.organization_id.in_(_demo_orgs()),
            User.email.like(f"%@{DEMO_EMAIL_DOMAIN}"),
        )
    )


def demo_world_exists() -> bool:
    return bool(
        db.session.scalar(select(exists(_demo_orgs())))
        or db.session.scalar(select(exists(_demo_users())))
    )


def _delete_demo_world() -> None:
    """Remove the previous demo world (children first). Ledger entries are never deleted."""
    orgs, users = _demo_orgs(), _demo_users()
    counted = db.session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(or_(LedgerEntry.oem_org_id.in_(orgs), LedgerEntry.supplier_org_id.in_(orgs)))
    )
    if counted:
        raise Conflict(
            f"The demo world has {counted} ledger entries, which are append-only; "
            "seed a fresh database instead of --reset."
        )
    demands = select(Demand.id).where(Demand.organization_id.in_(orgs))
    quotes = select(Quote.id).where(
        or_(Quote.organization_id.in_(orgs), Quote.demand_id.in_(demands))
    )
    statements = [
        delete(IdempotencyRecord).where(IdempotencyRecord.user_id.in_(users)),
        delete(ApiToken).where(ApiToken.user_id.in_(users)),
        delete(SecurityEvent).where(SecurityEvent.user_id.in_(users)),
        delete(Purchase).where(
            or_(
                Purchase.oem_org_id.in_(orgs),
                Purchase.supplier_org_id.in_(orgs),
                Purchase.quote_id.in_(quotes),
            )
        ),
        delete(Quote).where(Quote.id.in_(quotes)),
        delete(Demand).where(Demand.id.in_(demands)),
        delete(Certification).where(Certification.organization_id.in_(orgs)),
        delete(Capability).where(Capability.organization_id.in_(orgs)),
        delete(Site).where(Site.organization_id.in_(orgs)),
        delete(DeclaredBaseline).where(DeclaredBaseline.oem_org_id.in_(orgs)),
        # Rows of real organizations that a demo user created stay, without the author.
        update(Demand).where(Demand.created_by_id.in_(users)).values(created_by_id=None),
        update(Quote).where(Quote.created_by_id.in_(users)).values(created_by_id=None),
        update(Purchase).where(Purchase.created_by_id.in_(users)).values(created_by_id=None),
        update(DeclaredBaseline)
        .where(DeclaredBaseline.declared_by_id.in_(users))
        .values(declared_by_id=None),
        *_other_references(orgs, users),
        delete(User).where(User.id.in_(users)),
        delete(Organization).where(Organization.id.in_(orgs)),
    ]
    for statement in statements:
        db.session.execute(statement.execution_options(synchronize_session=False))


HANDLED_TABLES = frozenset(
    {
        "organizations", "users", "sites", "capabilities", "certifications", "demands", "quotes",
        "purchases", "idempotency_records", "api_tokens", "security_events",
        "declared_baselines", "ledger_entries",
    }
)  # fmt: skip


def _other_references(orgs: Any, users: Any) -> list[Any]:
    """Rows of other tables (e.g. notifications) that point at demo organizations, users or
    sites: nullable references are cleared, the other rows deleted, so the demo rows can go."""
    sites = select(Site.id).where(Site.organization_id.in_(orgs))
    targets = {"organizations": orgs, "users": users, "sites": sites}
    statements: list[Any] = []
    for table in db.metadata.sorted_tables:
        if table.name in HANDLED_TABLES:
            continue
        for key in table.foreign_keys:
            demo_ids = targets.get(key.column.table.name)
            if demo_ids is None:
                continue
            column = key.parent
            if column.nullable:
                statements.append(
                    table.update().where(column.in_(demo_ids)).values({column.name: None})
                )
            else:
                statements.append(table.delete().where(column.in_(demo_ids)))
    return statements


# --- the generator -----------------------------------------------------------------------------


def _jitter(
    rng: random.Random, lat: float, lon: float, km: float = JITTER_KM
) -> tuple[float, float]:
    """A point uniformly within ``km`` of (lat, lon)."""
    distance = km * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    dlat = distance * math.cos(angle) / KM_PER_DEGREE
    dlon = distance * math.sin(angle) / (KM_PER_DEGREE * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _site_point(rng: random.Random, city_code: str, lat: float, lon: float) -> tuple[float, float]:
    """A site near the city's centre (where the industry is) that passes site validation: inside
    the city's polygon and, in Guangdong, inside the province outline (so near-shore can hold)."""
    for _ in range(100):
        point = _jitter(rng, lat, lon)
        if geo.city_contains(city_code, *point, tolerance_km=0.0) and (
            not city_code.startswith("44") or geo.in_province("44", *point)
        ):
            return point
    return geo.random_point_in_city(city_code, rng)


def _split_company(company: str) -> tuple[str | None, str | None]:
    """``"广汽丰田汽车有限公司 GAC Toyota Motor Co., Ltd."`` → (Chinese name, English name)."""
    zh, en = [], []
    for part in company.replace(" / ", " ").split(" "):
        if part and not part.isascii():
            zh.append(part)
        elif part:
            en.append(part)
    return (zh[0] if zh else None), (" ".join(en) or None)


@dataclass
class _Generator:
    rng: random.Random
    today: date
    now: datetime
    serial: int = 0
    names: set[str] = field(default_factory=set)

    def next_uscc(self, division: str) -> str:
        code = demo_uscc(division, self.serial)
        self.serial += 1
        return code

    def past(self, max_days: int) -> datetime:
        return self.now - timedelta(
            days=self.rng.randint(1, max_days), minutes=self.rng.randint(0, 1439)
        )

    # OEMs ---------------------------------------------------------------------------------------

    def oem_groups(self) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        """Plants grouped into OEM organizations by legal name (in reference-data order)."""
        plants = refdata.oem_plants()
        zh_by_group: dict[str, str] = {}
        for plant in plants:
            zh, _ = _split_company(plant["company"])
            if zh:
                zh_by_group.setdefault(plant["group"], zh)
        groups: dict[str, tuple[list[str | None], list[dict[str, Any]]]] = {}
        for plant in plants:
            zh, en = _split_company(plant["company"])
            name = zh or zh_by_group.get(plant["group"]) or plant["company"]
            english, members = groups.setdefault(name, ([], []))
            english.append(en)
            members.append(plant)
        return [
            (name, next((e for e in english if e), None), members)
            for name, (english, members) in groups.items()
        ]

    # Suppliers ----------------------------------------------------------------------------------

    def supplier(self, index: int, city_code: str) -> dict[str, Any]:
        rng = self.rng
        domain = rng.choices(list(DOMAINS), weights=[d["weight"] for d in DOMAINS.values()])[0]
        city = refdata.cities()[city_code]
        short = city.name_zh.removesuffix("市")
        for attempt in range(20):
            (a, pa), (b, pb) = rng.sample(NAME_PARTS, 2)
            suffix_zh, suffix_en = rng.choice(DOMAINS[domain]["suffixes"])
            legal_name = f"{short}{a}{b}{suffix_zh}有限公司"
            english = f"{city.name_pinyin} {pa}{pb.lower()} {suffix_en} Co., Ltd."
            if attempt == 19:  # crowded: number it like a branch
                legal_name = f"{short}{a}{b}{suffix_zh}（第{index}）有限公司"
                english = f"{city.name_pinyin} {pa}{pb.lower()} {suffix_en} No.{index} Co., Ltd."
            if legal_name not in self.names:
                self.names.add(legal_name)
                break
        tier = rng.choices((1, 2, 3), weights=(15, 35, 50))[0]
        status = rng.choices(
            (OrgStatus.ACTIVE, OrgStatus.PENDING, OrgStatus.SUSPENDED), weights=(94, 5, 1)
        )[0]
        if index < 2:  # the demo supplier users' organizations
            status, tier = OrgStatus.ACTIVE, 1 + index
        created = self.past(1500)
        domain_name = refdata.categories()[domain]
        return {
            "kind": OrgKind.SUPPLIER,
            "uscc": self.next_uscc(city_code),
            "legal_name": legal_name,
            "english_name": english,
            "city_code": city_code,
            "status": status,
            "tier": tier,
            "description": (
                f"{domain_name.zh}领域 {tier} 级供应商（演示数据）。"
                f"Tier-{tier} supplier in {domain_name.en.lower()} (demo data)."
            ),
            "specialized": rng.random() < (0.06 if tier == 1 else 0.14),
            "employee_band": rng.choice(EMPLOYEE_BANDS_BY_TIER[tier]),
            "revenue_band": rng.choice(REVENUE_BANDS_BY_TIER[tier]),
            "listed": index < 2 or rng.random() > 0.02,
            "version": 1,
            "verified_at": created + timedelta(days=3) if status is OrgStatus.ACTIVE else None,
            "created_at": created,
            "updated_at": created,
            "_domain": domain,
        }

    def sites(self, org_id: int, home: str) -> list[dict[str, Any]]:
        rng = self.rng
        count = rng.choices((1, 2, 3, 4), weights=(20, 35, 25, 20))[0]
        rows = []
        for n in range(count):
            roll = rng.random()
            if n == 0 or roll < 0.6:
                code = home
            elif roll < 0.9:
                code = self.city(rng)
            else:
                code = ""
            if code:
                city = refdata.cities()[code]
                name_zh, lat, lon = city.name_zh, city.lat, city.lon
                short = name_zh.removesuffix("市")
            else:
                code, short, _, lat, lon = rng.choice(OUT_OF_PROVINCE)
                name_zh = short + "市"
            lat, lon = _site_point(rng, code, lat, lon)
            kind = SiteKind.PLANT if n == 0 or rng.random() < 0.7 else SiteKind.WAREHOUSE
            label = "工厂" if kind is SiteKind.PLANT else "仓库"
            rows.append(
                {
                    "organization_id": org_id,
                    "kind": kind,
                    "name": f"{short}{label}{n + 1}" if n else f"{short}总部{label}",
                    "city_code": code,
                    "address": f"{name_zh}{rng.choice(ROADS)}{rng.randint(1, 999)}号",
                    "lat": lat,
                    "lon": lon,
                    "active": n == 0 or rng.random() > 0.05,
                    "created_at": self.now,
                }
            )
        return rows

    def city(self, rng: random.Random) -> str:
        return rng.choices(list(CITY_WEIGHTS), weights=list(CITY_WEIGHTS.values()))[0]

    def capabilities(self, org_id: int, domain: str) -> list[dict[str, Any]]:
        rng = self.rng
        everything = list(refdata.categories().values())
        own = [c for c in everything if c.slug == domain or c.slug.startswith(domain + ".")]
        wanted = rng.choices((1, 2, 3, 4, 5), weights=(30, 30, 20, 12, 8))[0]
        chosen: dict[str, None] = {}
        for _ in range(wanted * 3):
            pool = own if rng.random() < 0.85 else everything
            # Mostly leaves, some mid-level, a few whole top-level areas.
            depth = rng.choices((1, 2, 3), weights=(8, 35, 57))[0]
            candidates = [c for c in pool if c.depth == depth] or pool
            chosen[rng.choice(candidates).slug] = None
            if len(chosen) == wanted:
                break
        spec = DOMAINS[domain]
        rows = []
        for slug in chosen:
            unit = "kWh" if slug.startswith("powertrain.traction-battery") else spec["unit"]
            capacity = int(rng.lognormvariate(11, 1.3)) + 100 if unit else None
            rows.append(
                {
                    "organization_id": org_id,
                    "category": slug,
                    "processes": rng.sample(spec["processes"], rng.randint(1, 3)),
                    "annual_capacity": min(capacity, 2_000_000_000) if capacity else None,
                    "capacity_unit": unit,
                    "created_at": self.now,
                }
            )
        return rows

    def certifications(
        self, org_id: int, domain: str, plant_id: int | None
    ) -> list[dict[str, Any]]:
        rng = self.rng
        odds: dict[str, float] = {"iso-9001": 0.5, "iso-14001": 0.4, "iso-45001": 0.25}
        if domain in {"industrial-software", "warehousing-logistics"}:
            odds |= {"iso-9001": 0.8, "tisax": 0.1}
        else:
            odds |= {"iatf-16949": 0.75, "tisax": 0.04, "vda-6.3": 0.08, "ccc": 0.05}
        if domain == "intelligent-connected":
            odds |= {"aec-q100": 0.3, "aec-q101": 0.2, "aec-q200": 0.2, "iso-26262": 0.3,
                     "iso-sae-21434": 0.1, "aspice": 0.2}  # fmt: skip
        elif domain == "powertrain":
            odds |= {"gb-38031": 0.35, "iso-26262": 0.15, "aec-q101": 0.08}
        elif domain == "chassis":
            odds |= {"iso-26262": 0.2}
        standards = refdata.standards()
        rows = []
        for standard, chance in odds.items():
            if rng.random() >= chance:
                continue
            years = standards[standard].validity_years
            if years is None:
                valid_from = self.today - timedelta(days=rng.randint(30, 2000))
                valid_until = None
            else:
                # Issued up to a cycle and ~7 months ago: about one in seven has expired.
                valid_from = self.today - timedelta(days=rng.randint(0, years * 365 + 200))
                valid_until = valid_from + timedelta(days=years * 365 - 1)
            levels = certification_levels(standard)
            issuer = SELF_DECLARED if standard.startswith("aec-q") else rng.choice(ISSUERS)
            rows.append(
                {
                    "organization_id": org_id,
                    "standard": standard,
                    "level": rng.choice(levels) if levels else None,
                    "number": f"DEMO-{standard.upper()}-{rng.randint(0, 9_999_999):07d}",
                    "issuer": issuer,
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                    "scope": None,
                    "site_id": plant_id if standard == "iatf-16949" else None,
                    "status": CertStatus.REVOKED if rng.random() < 0.03 else CertStatus.ACTIVE,
                    # The demo world's certificates have been reviewed (they count for matching).
                    "verification": CertVerification.VERIFIED,
                    "created_at": self.now,
                }
            )
        return rows

    def demand(self, plant: tuple[int, int], created_by: dict[int, int]) -> dict[str, Any]:
        rng = self.rng
        plant_id, org_id = plant
        leaves = [c for c in refdata.categories().values() if c.depth >= 2]
        category = rng.choice(leaves)
        state = DemandState.OPEN if rng.random() < 0.85 else DemandState.DRAFT
        standards = ["iatf-16949"] if rng.random() < 0.6 else []
        if rng.random() < 0.15:
            standards.append("iso-14001")
        price = Decimal(rng.randint(100, 500_000)) / 100 if rng.random() < 0.7 else None
        return {
            "organization_id": org_id,
            "plant_id": plant_id,
            "category": category.slug,
            "title": f"{category.zh}采购 — {category.en}"[:200],
            "description": "演示需求：请报价并注明交期。Demo: quote unit price and lead time.",
            "quantity": rng.choice((500, 1000, 5000, 10_000, 20_000, 50_000)),
            "unit": "kWh" if category.slug.startswith("powertrain.traction-battery") else "pcs",
            "target_unit_price": price,
            "required_standards": standards,
            "need_by": self.today + timedelta(days=rng.randint(30, 180)),
            "radius_km": rng.choice((100, 150, 200, 200, 200, 300)),
            "tier_weights": {"1": 0.6, "2": 1.0, "3": 0.8} if rng.random() < 0.1 else None,
            "state": state,
            "created_by_id": created_by.get(org_id),
            "created_at": self.now,
            "updated_at": self.now,
            "published_at": self.now if state is DemandState.OPEN else None,
            "closed_at": None,
        }


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


def seed_demo(
    *,
    size: int = 300,
    seed: int = 2026,
    reset: bool = False,
    password: str = DEMO_PASSWORD,
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Build the demo world in one transaction: OEMs and plants, ``size`` suppliers, demands,
    demo users. The same ``seed`` builds the same world (dates are relative to today)."""
    started = time.perf_counter()
    if size < 1:
        raise ValueError("size must be at least 1")
    summary = DemoSummary(password=password, reset=reset)
    if demo_world_exists():
        if not reset:
            raise Conflict("A demo world is already there; run with --reset to replace it.")
        _delete_demo_world()
    now = datetime.now(UTC)
    gen = _Generator(rng=random.Random(seed), today=now.date(), now=now)

    # OEM organizations and their plants (approximate locations from the reference data).
    plants: list[tuple[int, int]] = []
    oem_ids: dict[str, int] = {}
    for legal_name, english, members in gen.oem_groups():
        city_code = members[0]["city_code"]
        [oem_id] = _insert_returning_ids(
            Organization,
            [
                {
                    "kind": OrgKind.OEM,
                    "uscc": gen.next_uscc(city_code),
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
            ],
        )
        for plant in members:
            oem_ids[plant["id"]] = oem_id
        ids = _insert_returning_ids(
            Site,
            [
                {
                    "organization_id": oem_id,
                    "kind": SiteKind.PLANT,
                    "name": plant["name"][:200],
                    "city_code": plant["city_code"],
                    "address": (
                        f"{plant.get('town') or refdata.cities()[plant['city_code']].name_zh}"
                        f" — approximate location: {plant['coord_precision']}"
                    )[:300],
                    "lat": plant["lat"],
                    "lon": plant["lon"],
                    "active": True,
                    "created_at": now,
                }
                for plant in members
            ],
        )
        plants.extend((plant_id, oem_id) for plant_id in ids)
        summary.oems += 1
    summary.plants = len(plants)

    # Suppliers, in batches: organizations, then their sites, capabilities, certifications.
    city_codes = list(refdata.cities())
    supplier_ids: list[int] = []
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
        supplier_ids.extend(ids)
        sites = [
            row
            for org_id, org in zip(ids, orgs, strict=True)
            for row in gen.sites(org_id, org["city_code"])
        ]
        _insert(Site, sites)
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
            capabilities.extend(gen.capabilities(org_id, domain))
            certifications.extend(gen.certifications(org_id, domain, first_plant.get(org_id)))
        _insert(Capability, capabilities)
        _insert(Certification, certifications)
        summary.sites += len(sites)
        summary.capabilities += len(capabilities)
        summary.certifications += len(certifications)
        if progress:
            progress(len(batch))
    summary.suppliers = len(supplier_ids)

    # Demo users: one hash for the one printed password (argon2 is deliberately slow).
    password_hash = hash_password(password)
    buyer_org = oem_ids.get("gac-honda-huangpu") or plants[0][1]
    second_buyer_org = oem_ids.get("byd-pingshan") or plants[-1][1]
    people: list[tuple[str, Role, int | None]] = [
        ("buyer", Role.BUYER, buyer_org),
        ("buyer2", Role.BUYER, second_buyer_org),
        ("supplier", Role.SUPPLIER, supplier_ids[0]),
        ("supplier2", Role.SUPPLIER, supplier_ids[1] if len(supplier_ids) > 1 else None),
        ("auditor", Role.AUDITOR, None),
        ("admin", Role.ADMIN, None),
    ]
    # The demo auditor audits the whole province (a provincial authority, jurisdiction "44").
    authority_name = "广东省工业和信息化厅（演示）"
    authority = db.session.scalar(select(Authority).where(Authority.name == authority_name))
    if authority is None:  # a reset keeps it: staff rows outlive the demo's organizations
        authority = Authority(name=authority_name, city_codes=["44"])
        db.session.add(authority)
        db.session.flush()
    created_by: dict[int, int] = {}
    for name, role, member_of in people:
        if role is Role.SUPPLIER and member_of is None:
            continue
        user = User(
            email=f"{name}@{DEMO_EMAIL_DOMAIN}",
            password_hash=password_hash,
            display_name=f"Demo {name}",
            role=role,
            organization_id=member_of,
            # Each demo organization's user is its org admin (it may invite colleagues).
            org_role=OrgRole.ADMIN if member_of is not None else None,
            authority_id=authority.id if role is Role.AUDITOR else None,
        )
        db.session.add(user)
        db.session.flush()
        if role is Role.BUYER and member_of is not None:
            created_by.setdefault(member_of, user.id)
        org_name = (
            db.session.scalar(select(Organization.legal_name).where(Organization.id == member_of))
            if member_of
            else None
        )
        summary.users.append(DemoUser(user.email, role, org_name))

    # Open (and a few draft) demands at the OEM plants.
    demand_count = min(max(10, size // 10), 5000)
    for batch in _batches(demand_count, BATCH):
        _insert(Demand, [gen.demand(gen.rng.choice(plants), created_by) for _ in batch])
    summary.demands = demand_count

    commit()
    summary.seconds = time.perf_counter() - started
    return summary
