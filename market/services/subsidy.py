"""The subsidy policy in force, and the subsidy effect a purchase *would* have (no writes).

``preview_purchase`` answers "this purchase adds ¥N of new near-shore purchasing" at award time
and on ``POST /purchases``. It applies the ledger's own rules (market/services/ledger.py) to the
ledger as recorded now; purchases still waiting in the outbox are not counted yet, so it is an
estimate: the worker's entry, computed in ledger order, is the figure that counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from market.models import Purchase, Site
from market.services.ledger import (
    PolicyTerms,
    PurchaseFact,
    load_book,
    load_policy_terms,
    select_policy,
)


def policy_for(day: date) -> PolicyTerms:
    """The policy version in force on ``day`` (the nearest version if none covers it)."""
    terms, _ = select_policy(load_policy_terms(), day)
    return terms


@dataclass(frozen=True)
class SubsidyPreview:
    near_shore: bool
    reason_code: str
    distance_km: Decimal
    policy_version: int
    year: int
    baseline: Decimal
    near_shore_total_before: Decimal
    increment: Decimal
    subsidy: Decimal
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _yuan(amount: Decimal) -> str:
    return f"¥{amount:,.2f}"


def preview_purchase(
    *,
    oem_org_id: int,
    plant: Site,
    supplier_site: Site,
    amount: Decimal,
    purchased_on: date,
) -> SubsidyPreview:
    """The record entry this purchase would get if it were recorded now (nothing is written)."""
    fact = PurchaseFact(
        purchase_id=0,
        oem_org_id=oem_org_id,
        supplier_org_id=supplier_site.organization_id,
        supplier_city_code=supplier_site.city_code,
        site=(supplier_site.lat, supplier_site.lon),
        plant=(plant.lat, plant.lon),
        amount=Decimal(amount),
        purchased_on=purchased_on,
    )
    entry = load_book({(oem_org_id, purchased_on.year)}, from_totals=True).evaluate(fact)
    if entry.near_shore and entry.increment:
        message = (
            f"adds {_yuan(entry.increment)} of new near-shore purchasing "
            f"(estimated subsidy {_yuan(entry.subsidy)}, policy v{entry.policy_version})"
        )
    elif entry.near_shore:
        message = (
            f"near-shore, but adds no new near-shore purchasing ({entry.reason_code}; "
            f"{purchased_on.year} total {_yuan(entry.near_shore_total_before)} against "
            f"a baseline of {_yuan(entry.baseline)})"
        )
    else:
        message = (
            f"not near-shore ({entry.reason_code}, {entry.distance_km} km from the plant): "
            "no subsidy"
        )
    return SubsidyPreview(
        near_shore=entry.near_shore,
        reason_code=entry.reason_code,
        distance_km=entry.distance_km,
        policy_version=entry.policy_version,
        year=entry.year,
        baseline=entry.baseline,
        near_shore_total_before=entry.near_shore_total_before,
        increment=entry.increment,
        subsidy=entry.subsidy,
        message=message,
    )


def preview_for_purchase(purchase: Purchase) -> SubsidyPreview:
    """:func:`preview_purchase` for a purchase row, flushed or not (its ``plant`` and
    ``supplier_site`` relationships must be set)."""
    oem_org_id = purchase.oem_org_id if purchase.oem_org_id is not None else purchase.oem.id
    return preview_purchase(
        oem_org_id=oem_org_id,
        plant=purchase.plant,
        supplier_site=purchase.supplier_site,
        amount=purchase.amount,
        purchased_on=purchase.purchased_on,
    )
