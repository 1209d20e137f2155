"""Test factories: build rows with sensible defaults. They add and flush, never commit."""

from __future__ import annotations

import itertools
import math
import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from market import geo, refdata, uscc
from market.auth import hash_api_token
from market.clock import business_today
from market.extensions import db
from market.models import (
    ApiToken,
    Authority,
    Capability,
    Certification,
    CertStatus,
    CertVerification,
    Confirmation,
    Demand,
    DemandState,
    Organization,
    OrgKind,
    OrgRole,
    OrgStatus,
    Purchase,
    PurchaseParty,
    PurchaseSource,
    PurchaseStatus,
    Role,
    Site,
    SiteKind,
    User,
)
from market.passwords import hash_password
from market.services.suppliers import check_site_location

_counter = itertools.count(1)
PASSWORD = "correct horse battery staple"
# argon2 is deliberately slow; hash the shared test password once.
_PASSWORD_HASH = hash_password(PASSWORD)

# Guangzhou city centre (WGS-84, approximate) and a few other places for distance tests.
GUANGZHOU = (23.1291, 113.2644)
SHENZHEN = (22.5431, 114.0579)
SHANTOU = (23.3541, 116.6820)
CHANGSHA = (28.2282, 112.9388)  # Hunan: outside the province


def fictional_uscc(division: str = "440300") -> str:
    """A checksum-valid code that belongs to no real company (body is a counter)."""
    body = f"MA{next(_counter):07d}"[:9].replace("I", "J")
    return uscc.complete(f"91{division}{body}")


def _add(obj: Any) -> Any:
    db.session.add(obj)
    db.session.flush()
    return obj


def make_org(
    kind: OrgKind = OrgKind.SUPPLIER,
    *,
    status: OrgStatus = OrgStatus.ACTIVE,
    city_code: str = "440100",
    **fields: Any,
) -> Organization:
    n = next(_counter)
    defaults: dict[str, Any] = {
        "kind": kind,
        "uscc": fictional_uscc(city_code),
        "legal_name": f"测试{'整车' if kind is OrgKind.OEM else '零部件'}公司{n}",
        "english_name": f"Test {kind.value} {n}",
        "city_code": city_code,
        "status": status,
        "tier": 1 if kind is OrgKind.SUPPLIER else None,
    }
    if status is OrgStatus.ACTIVE:
        # On the platform since 2020: the platform's own record of last year is the baseline
        # (a test of the held subsidy makes an OEM verified recently).
        defaults["verified_at"] = datetime(2020, 1, 1, tzinfo=UTC)
    defaults.update(fields)
    return _add(Organization(**defaults))  # type: ignore[no-any-return]


def make_authority(city_codes: list[str] | None = None, **fields: Any) -> Authority:
    """An authority; by default the province (``44``)."""
    name = fields.pop("name", f"测试监管机构{next(_counter)}")
    return _add(Authority(name=name, city_codes=city_codes or ["44"], **fields))  # type: ignore[no-any-return]


def make_user(
    organization: Organization | None = None,
    *,
    role: Role | None = None,
    email: str | None = None,
    **fields: Any,
) -> User:
    """A user; an organisation's user is its org admin unless ``org_role`` says otherwise, an
    auditor works for a provincial authority unless ``authority`` says otherwise."""
    if role is None:
        if organization is None:
            raise ValueError("a user without organization needs an explicit role")
        role = Role.BUYER if organization.kind is OrgKind.OEM else Role.SUPPLIER
    if organization is not None:
        fields.setdefault("org_role", OrgRole.ADMIN)
    if role is Role.AUDITOR and "authority" not in fields and "authority_id" not in fields:
        fields["authority"] = make_authority(["44"])
    user = User(
        email=email or f"user{next(_counter)}@example.test",
        password_hash=_PASSWORD_HASH,
        role=role,
        organization=organization,
        **fields,
    )
    return _add(user)  # type: ignore[no-any-return]


def make_token(user: User, *, name: str = "test") -> str:
    """Create an API token for ``user`` and return the raw bearer token."""
    raw = "sct_" + secrets.token_urlsafe(24)
    _add(ApiToken(user=user, name=name, token_hash=hash_api_token(raw), prefix=raw[:10]))
    return raw


def auth(user: User) -> dict[str, str]:
    """Headers that authenticate as ``user`` with a fresh API token."""
    return {"Authorization": f"Bearer {make_token(user)}"}


def city_at(at: tuple[float, float]) -> str:
    """The GB/T 2260 code of the prefecture whose boundary contains the point."""
    city = geo.city_of(*at)
    if city is None:
        raise ValueError(f"{at} is in no city of the boundary extract (sea, or abroad)")
    return city.code


def point_near_city(
    city_code: str, km_outside: float, bearing_deg: float = 45.0
) -> tuple[float, float]:
    """A point ``km_outside`` km outside the city's boundary (0: on its edge), found along the
    ray from the city's representative point at ``bearing_deg`` (clockwise from north)."""
    lat0, lon0 = representative_point(city_code)
    geometry = geo.city_boundary(city_code).geometry
    east = geo.KM_PER_DEGREE * math.cos(math.radians(lat0))
    north_share = math.cos(math.radians(bearing_deg))
    east_share = math.sin(math.radians(bearing_deg))

    def along(km: float) -> tuple[float, float]:
        return lat0 + km * north_share / geo.KM_PER_DEGREE, lon0 + km * east_share / east

    low, high = 0.0, 1.0
    while geo.km_outside(geometry, *along(high)) <= km_outside:
        low, high = high, high * 2
    for _ in range(60):  # bisection on the ray: the distance grows from 0 to past the target
        middle = (low + high) / 2
        if geo.km_outside(geometry, *along(middle)) <= km_outside:
            low = middle
        else:
            high = middle
    return along(low)


def representative_point(city_code: str) -> tuple[float, float]:
    """The city's seat from guangdong_cities.json in Guangdong, else a point inside its polygon."""
    city = refdata.cities().get(city_code)
    if city is not None:
        return city.lat, city.lon
    point = geo.city_boundary(city_code).geometry.representative_point()
    return point.y, point.x


def make_site(
    organization: Organization,
    *,
    at: tuple[float, float] = GUANGZHOU,
    city_code: str | None = None,
    kind: SiteKind = SiteKind.PLANT,
    validate: bool = True,
    **fields: Any,
) -> Site:
    """A site at ``at``; its city code defaults to the city that contains the point, and the pair
    must pass the API's location check (``validate=False`` only for deliberately broken rows)."""
    city_code = city_code or city_at(at)
    if validate:
        check_site_location(city_code, *at)
    site = Site(
        organization=organization,
        kind=kind,
        name=fields.pop("name", f"Site {next(_counter)}"),
        city_code=city_code,
        address=fields.pop("address", "测试路 1 号"),
        lat=at[0],
        lon=at[1],
        **fields,
    )
    return _add(site)  # type: ignore[no-any-return]


def make_capability(
    organization: Organization, category: str = "chassis.braking.foundation", **fields: Any
) -> Capability:
    fields.setdefault("processes", ["machining"])
    return _add(Capability(organization=organization, category=category, **fields))  # type: ignore[no-any-return]


def make_certification(
    organization: Organization,
    standard: str = "iatf-16949",
    *,
    valid_from: date | None = None,
    valid_until: date | None = None,
    status: CertStatus = CertStatus.ACTIVE,
    verification: CertVerification = CertVerification.VERIFIED,
    **fields: Any,
) -> Certification:
    """A certificate, verified by default (as an admin's review leaves it: it counts for
    matching); pass ``verification=CertVerification.PENDING`` for a fresh declaration."""
    today = business_today()
    cert = Certification(
        organization=organization,
        standard=standard,
        number=fields.pop("number", f"CERT-{next(_counter)}"),
        issuer=fields.pop("issuer", "Test Certification Body"),
        valid_from=valid_from or today - timedelta(days=365),
        valid_until=valid_until if valid_until is not None else today + timedelta(days=730),
        status=status,
        verification=verification,
        **fields,
    )
    return _add(cert)  # type: ignore[no-any-return]


def make_demand(
    organization: Organization,
    plant: Site,
    *,
    category: str = "chassis",
    state: DemandState = DemandState.OPEN,
    **fields: Any,
) -> Demand:
    defaults: dict[str, Any] = {
        "organization": organization,
        "plant": plant,
        "category": category,
        "title": "Brake calipers for the 2027 model year",
        "quantity": 10_000,
        "unit": "pcs",
        "required_standards": [],
        "need_by": business_today() + timedelta(days=90),
        "radius_km": 200,
        "state": state,
    }
    defaults.update(fields)
    return _add(Demand(**defaults))  # type: ignore[no-any-return]


def make_purchase(
    oem: Organization,
    plant: Site,
    supplier: Organization,
    supplier_site: Site,
    *,
    amount: str | Decimal = "10000.00",
    purchased_on: date | None = None,
    **fields: Any,
) -> Purchase:
    defaults: dict[str, Any] = {
        "oem": oem,
        "plant": plant,
        "supplier": supplier,
        "supplier_site": supplier_site,
        "category": "chassis.braking.foundation",
        "amount": Decimal(amount),
        "purchased_on": purchased_on or business_today(),
        "invoice_number": f"INV-{next(_counter):08d}",
        "po_number": f"PO-{next(_counter):06d}",
        "source": PurchaseSource.DIRECT,
        # Confirmed by the supplier unless a test says otherwise (the ledger counts only these).
        "status": PurchaseStatus.CONFIRMED,
        "confirmation": Confirmation.COUNTERPARTY,
        "created_by_party": PurchaseParty.OEM,
        # The frozen facts, as the service copies them.
        "site_city_code": supplier_site.city_code,
        "site_lat": supplier_site.lat,
        "site_lon": supplier_site.lon,
        "plant_city_code": plant.city_code,
        "plant_lat": plant.lat,
        "plant_lon": plant.lon,
    }
    defaults.update(fields)
    return _add(Purchase(**defaults))  # type: ignore[no-any-return]
