"""What the demo's steps hand on to each other, and what the command reports at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from market.demo.generator import WorldGenerator
from market.demo.names import DEMO_PASSWORD
from market.models import Role, User


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
    # The demo buyer's business (none with ``purchases=False``): ledger records by verdict.
    buyer_organization: str | None = None
    near_shore: int = 0
    not_near_shore: int = 0
    cancelled: int = 0
    ledger_entries: int = 0
    previous_year: int | None = None
    previous_year_subsidy: Decimal | None = None
    baseline_year: int | None = None
    claim_id: int | None = None
    claim_state: str | None = None


@dataclass
class DemoWorld:
    """The rows built so far, by the steps of ``seed_demo`` in order."""

    gen: WorldGenerator
    summary: DemoSummary
    now: datetime
    plants: list[tuple[int, int]] = field(default_factory=list)  # (site id, OEM id)
    oem_of_plant: dict[str, int] = field(default_factory=dict)  # reference plant id → OEM
    site_of_plant: dict[str, int] = field(default_factory=dict)  # reference plant id → site
    supplier_ids: list[int] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)  # "buyer", "supplier2", "admin", …
    created_by: dict[int, int] = field(default_factory=dict)  # OEM id → its buyer's user id
