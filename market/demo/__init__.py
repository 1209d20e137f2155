"""The demo world: a realistic, deterministic world to try the product and to benchmark it.

``names`` holds the fixed data (password, fictional USCCs, trade-name parts), ``generator`` the
random suppliers, sites, capabilities, certifications and demands, ``seed`` the steps that build
the world, ``activity`` the demo buyer's purchases, baseline and claim (through the services),
``reset`` finding and deleting a previous demo world (never its ledger entries).
"""

from market.demo.names import DEMO_PASSWORD, demo_uscc, is_demo_uscc
from market.demo.seed import seed_demo
from market.demo.world import DemoSummary, DemoUser

__all__ = ["DEMO_PASSWORD", "DemoSummary", "DemoUser", "demo_uscc", "is_demo_uscc", "seed_demo"]
