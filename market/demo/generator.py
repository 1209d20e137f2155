"""The random part of the demo world: suppliers, their sites, capabilities, certifications, and
the OEMs' demands, as rows for bulk INSERTs.

All randomness comes from one ``random.Random(seed)`` consumed in a fixed order, so the same seed
builds the same world (dates are relative to today). Sites are drawn near their city's centre
and pass the API's real-boundary check; a few are outside the province (purchases from them are
``OUT_OF_PROVINCE``). The second demo supplier (``supplier2@demo.test``) always has one such
site, so the demo's purchases include one that is not near-shore.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from market import geo, refdata
from market.demo.names import (
    CITY_WEIGHTS,
    DOMAINS,
    EMPLOYEE_BANDS_BY_TIER,
    ISSUERS,
    JITTER_KM,
    KM_PER_DEGREE,
    NAME_PARTS,
    OUT_OF_PROVINCE,
    REVENUE_BANDS_BY_TIER,
    ROADS,
    SELF_DECLARED,
    demo_uscc,
)
from market.models import (
    CertStatus,
    CertVerification,
    DemandState,
    OrgKind,
    OrgStatus,
    SiteKind,
)
from market.services.suppliers import certification_levels


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
class WorldGenerator:
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

    def sites(self, org_id: int, home: str, *, far_site: bool = False) -> list[dict[str, Any]]:
        """1–4 sites, the first at home; ``far_site``: the last one is outside the province."""
        rng = self.rng
        count = rng.choices((1, 2, 3, 4), weights=(20, 35, 25, 20))[0]
        if far_site:
            count = max(count, 2)
        rows = []
        for n in range(count):
            roll = rng.random()
            if far_site and n == count - 1:
                code = ""
            elif n == 0 or roll < 0.6:
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
                    "active": n == 0 or rng.random() > 0.05 or far_site,
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
