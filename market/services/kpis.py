"""Chain KPIs: near-shore ratio, 整零比 and chip localisation share, from the ledger's count.

Every figure is computed from the purchases the ledger counts for the year: its ``record`` and
``reversal`` entries (signed amounts), joined to the purchases for the facts the entries do not
carry (plant, category, the frozen domestic-origin flag of chips). That set is exactly "the
confirmed, not cancelled purchases" (the ledger records a purchase when it is confirmed and
reverses it when it is cancelled or held), with the ledger's own near-shore verdicts, so the
near-shore totals reconcile to the cent with ``GET /ledger/summary`` (a purchase confirmed
seconds ago appears in both once the ledger worker has recorded it).

- near-shore ratio = near-shore amount / all amount;
- 整零比 (vehicle : parts) = 1 : x with x = Guangdong parts purchases (the supplier site's frozen
  city code in province 44) / the admin-declared vehicle output value of the OEM and year;
  declared per OEM, so shown per OEM (and over the OEMs that have a declaration in totals);
  target 1 : 0.9 (the seed's 2025 goal; 1 : 0.78 in 2021);
- chip localisation share = ``ic.chips`` purchases from domestic-origin capabilities / all
  ``ic.chips`` purchases; target 20 %.

A ratio is a decimal string with 4 places (half-up); with a zero denominator it is "no data":
null with a reason, never 0 %. Grouping: ``oem``, ``plant``, ``city`` (the plant's city, where
the parts are delivered) or ``category`` (top-level taxonomy category).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from market import refdata
from market.clock import business_year, utcnow
from market.errors import Forbidden, ValidationFailed
from market.extensions import db
from market.http import MAX_ID
from market.models import (
    DeclaredVehicleOutput,
    EntryKind,
    LedgerEntry,
    Organization,
    OrgKind,
    Purchase,
    Role,
    Site,
    SiteKind,
    User,
)
from market.permissions import (
    auditor_city_prefixes,
    jurisdiction_condition,
    require_active_org,
)
from market.services.audit import audit
from market.services.suppliers import CHIPS
from market.services.unit_of_work import commit

ZERO = Decimal("0.00")
RATIO = Decimal("0.0001")
PROVINCE = "44"
VEHICLE_RATIO_TARGET = Decimal("0.90")
VEHICLE_RATIO_2021 = Decimal("0.78")
CHIP_SHARE_TARGET = Decimal("0.20")
GROUPINGS = ("oem", "plant", "city", "category")
FIRST_YEAR = 2000

NO_PURCHASES = "no confirmed purchases"
NO_OUTPUT = "no vehicle output declared for this OEM and year"
NO_CHIPS = "no ic.chips purchases"
PER_OEM = "declared per OEM: see by=oem"


@dataclass(frozen=True)
class Scope:
    """Whose purchases a caller's KPIs cover: one OEM, a jurisdiction's plants, or all."""

    oem: int | None = None
    plant_city_prefixes: tuple[str, ...] | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.oem is not None:
            conditions.append(LedgerEntry.oem_org_id == self.oem)
        city = jurisdiction_condition(LedgerEntry.plant_city_code, self.plant_city_prefixes)
        if city is not None:
            conditions.append(city)
        return conditions


def scope_of(user: User, oem: int | None = None) -> Scope:
    """Buyers: their own OEM (``oem`` ignored); auditors: purchases delivered to plants in
    their jurisdiction; admins: everything (optionally one OEM)."""
    if user.role is Role.BUYER:
        return Scope(oem=require_active_org(user, OrgKind.OEM, "read KPIs").id)
    if user.role is Role.AUDITOR:
        return Scope(oem=oem, plant_city_prefixes=auditor_city_prefixes(user))
    return Scope(oem=oem)


@dataclass
class Sums:
    """The amounts one KPI row is computed from."""

    total: Decimal = ZERO
    near_shore: Decimal = ZERO
    guangdong: Decimal = ZERO
    chips: Decimal = ZERO
    chips_domestic: Decimal = ZERO
    oems: set[int] = field(default_factory=set)

    def add(self, row: Any) -> None:
        amount = Decimal(row.amount)
        self.total += amount
        self.oems.add(row.oem_org_id)
        if row.near_shore:
            self.near_shore += amount
        if (row.supplier_city_code or "").startswith(PROVINCE):
            self.guangdong += amount
        if row.category == CHIPS or row.category.startswith(CHIPS + "."):
            self.chips += amount
            if row.chip_domestic_origin:
                self.chips_domestic += amount


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator / denominator to 4 places (half-up); None when the denominator is 0."""
    if not denominator:
        return None
    return (numerator / denominator).quantize(RATIO, rounding=ROUND_HALF_UP)


def _entries(year: int, scope: Scope) -> Any:
    """The counted purchases' entries of the year, summed per fact that a KPI groups by."""
    keys = (
        LedgerEntry.oem_org_id,
        Purchase.plant_id,
        LedgerEntry.plant_city_code,
        LedgerEntry.supplier_city_code,
        Purchase.category,
        Purchase.chip_domestic_origin,
        LedgerEntry.near_shore,
    )
    return (
        select(*keys, func.sum(LedgerEntry.amount).label("amount"))
        .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
        .where(
            LedgerEntry.year == year,
            LedgerEntry.kind.in_([EntryKind.RECORD, EntryKind.REVERSAL]),
            *scope.conditions(),
        )
        .group_by(*keys)
    )


def _group_key(row: Any, by: str) -> Any:
    if by == "oem":
        return row.oem_org_id
    if by == "plant":
        return row.plant_id
    if by == "city":
        return row.plant_city_code
    return row.category.split(".")[0]


def declared_outputs(oems: Iterable[int], year: int) -> dict[int, DeclaredVehicleOutput]:
    ids = list(oems)
    if not ids:
        return {}
    rows = db.session.scalars(
        select(DeclaredVehicleOutput).where(
            DeclaredVehicleOutput.oem_org_id.in_(ids), DeclaredVehicleOutput.year == year
        )
    )
    return {row.oem_org_id: row for row in rows}


def _labels(by: str, keys: set[Any]) -> dict[Any, str]:
    if by == "oem" and keys:
        rows = db.session.execute(
            select(Organization.id, Organization.legal_name).where(Organization.id.in_(keys))
        )
        return {org_id: name for org_id, name in rows}
    if by == "plant" and keys:
        sites = db.session.execute(select(Site.id, Site.name).where(Site.id.in_(keys)))
        return {site_id: name for site_id, name in sites}
    if by == "city":
        return {code: city.name_zh for code in keys if (city := refdata.cities().get(code))}
    if by == "category":
        return {slug: c.zh for slug in keys if (c := refdata.categories().get(slug))}
    return {}


def _near_shore(sums: Sums) -> dict[str, Any]:
    value = ratio(sums.near_shore, sums.total)
    return {
        "value": value,
        "reason": NO_PURCHASES if value is None else None,
        "near_shore_amount": sums.near_shore,
        "total_amount": sums.total,
    }


def _chips(sums: Sums) -> dict[str, Any]:
    value = ratio(sums.chips_domestic, sums.chips)
    return {
        "value": value,
        "reason": NO_CHIPS if value is None else None,
        "domestic_amount": sums.chips_domestic,
        "chips_amount": sums.chips,
        "target": CHIP_SHARE_TARGET,
        "target_met": None if value is None else value >= CHIP_SHARE_TARGET,
    }


def _vehicle(guangdong: Decimal, output: Decimal | None, reason: str) -> dict[str, Any]:
    """整零比 as 1 : x, x = Guangdong parts purchases / declared vehicle output value."""
    value = ratio(guangdong, output) if output is not None else None
    return {
        "value": value,
        "display": None if value is None else f"1:{value.normalize():f}",
        "reason": reason if value is None else None,
        "guangdong_parts_amount": guangdong,
        "vehicle_output_value": output,
        "target": VEHICLE_RATIO_TARGET,
        "target_display": f"1:{VEHICLE_RATIO_TARGET.normalize():f}",
        "target_met": None if value is None else value >= VEHICLE_RATIO_TARGET,
    }


def _vehicle_of(sums: Sums, by: str, outputs: dict[int, DeclaredVehicleOutput]) -> dict[str, Any]:
    if by != "oem":
        return _vehicle(sums.guangdong, None, PER_OEM)
    (oem,) = sums.oems
    declared = outputs.get(oem)
    output = declared.output_value if declared is not None and declared.output_value else None
    return _vehicle(sums.guangdong, output, NO_OUTPUT)


def kpis(user: User, year: int | None, by: str, oem: int | None = None) -> dict[str, Any]:
    """The caller's KPIs for a year (default: the current business year), grouped ``by``."""
    year = year or business_year()
    rows = list(db.session.execute(_entries(year, scope_of(user, oem))))
    groups: dict[Any, Sums] = {}
    totals = Sums()
    guangdong_by_oem: dict[int, Decimal] = {}
    for row in rows:
        groups.setdefault(_group_key(row, by), Sums()).add(row)
        totals.add(row)
        if (row.supplier_city_code or "").startswith(PROVINCE):
            guangdong_by_oem[row.oem_org_id] = guangdong_by_oem.get(row.oem_org_id, ZERO) + (
                Decimal(row.amount)
            )
    outputs = declared_outputs(totals.oems, year)
    labels = _labels(by, set(groups))
    items = [
        {
            "key": str(key),
            "label": labels.get(key, str(key)),
            "near_shore_ratio": _near_shore(sums),
            "vehicle_ratio": _vehicle_of(sums, by, outputs),
            "chip_share": _chips(sums),
        }
        for key, sums in sorted(groups.items(), key=lambda item: str(item[0]))
    ]
    declared = {o: d.output_value for o, d in outputs.items() if d.output_value}
    covered = sum((guangdong_by_oem.get(o, ZERO) for o in declared), ZERO)
    total_output = sum(declared.values(), ZERO) if declared else None
    return {
        "year": year,
        "by": by,
        "items": items,
        "totals": {
            "near_shore_ratio": _near_shore(totals),
            "vehicle_ratio": _vehicle(covered, total_output, NO_OUTPUT),
            "chip_share": _chips(totals),
        },
    }


# --- declared vehicle output -------------------------------------------------------------------


def vehicle_output_declare(data: dict[str, Any], *, by: User | None) -> DeclaredVehicleOutput:
    """Declare (or replace) an OEM's vehicle output of a year (admins; audit-logged with the
    value it replaces)."""
    if by is not None and by.role is not Role.ADMIN:
        raise Forbidden()
    oem_org_id: int = data["oem_org_id"]
    year: int = data["year"]
    oem = db.session.get(Organization, oem_org_id) if oem_org_id <= MAX_ID else None
    if oem is None or oem.kind is not OrgKind.OEM:
        raise ValidationFailed(fields={"oem_org_id": ["No OEM organization has this id."]})
    if not FIRST_YEAR <= year <= business_year():
        raise ValidationFailed(
            fields={"year": ["Must be a year from 2000 up to the current year."]}
        )
    declared = db.session.scalar(
        select(DeclaredVehicleOutput)
        .where(DeclaredVehicleOutput.oem_org_id == oem.id, DeclaredVehicleOutput.year == year)
        .with_for_update()
    )
    previous = None
    if declared is None:
        declared = DeclaredVehicleOutput(oem_org_id=oem.id, year=year)
        db.session.add(declared)
    else:
        previous = {"output_value": str(declared.output_value), "vehicles": declared.vehicles}
    declared.output_value = data["output_value"]
    declared.vehicles = data.get("vehicles")
    declared.note = data.get("note")
    declared.declared_by_id = by.id if by is not None else None
    declared.created_at = utcnow()
    details = {"year": year, "output_value": str(declared.output_value)}
    details |= {"vehicles": declared.vehicles, "previous": previous}
    audit("vehicle_output.declared", f"oem:{oem.id}", details, organization_id=oem.id, actor=by)
    commit()
    return declared


def vehicle_output_list(
    user: User, *, oem: int | None = None, year: int | None = None
) -> list[DeclaredVehicleOutput]:
    """Declarations by OEM then year: buyers their own OEM's, auditors those of OEMs with a
    plant in their jurisdiction, admins all."""
    query = select(DeclaredVehicleOutput).order_by(
        DeclaredVehicleOutput.oem_org_id, DeclaredVehicleOutput.year
    )
    if user.role is Role.BUYER:
        oem = require_active_org(user, OrgKind.OEM, "read vehicle output").id
    elif user.role is Role.AUDITOR:
        prefixes = auditor_city_prefixes(user)
        if prefixes is not None:
            query = query.where(DeclaredVehicleOutput.oem_org_id.in_(_oems_in(prefixes)))
    if oem is not None:
        query = query.where(DeclaredVehicleOutput.oem_org_id == oem)
    if year is not None:
        query = query.where(DeclaredVehicleOutput.year == year)
    return list(db.session.scalars(query))


def _oems_in(prefixes: tuple[str, ...]) -> Select[Any]:
    condition = jurisdiction_condition(Site.city_code, prefixes)
    return select(Site.organization_id).where(Site.kind == SiteKind.PLANT, condition)  # type: ignore[arg-type]
