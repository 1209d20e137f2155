"""Reference data: Guangdong cities, the part taxonomy, certification standards."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from market import refdata
from market.permissions import public

blp = Blueprint("reference", __name__, description="Reference data shipped with the product")


@blp.route("/cities")
@blp.response(200)
@public
def list_cities() -> dict[str, Any]:
    """Guangdong's 21 prefecture-level cities (GB/T 2260 codes).

    Each city with its six-digit GB/T 2260 code and its Chinese and English names. Site and plant
    addresses name one of these codes, and search filters accept the code or either name.
    """
    return {"items": [vars(c) for c in refdata.cities().values()]}


@blp.route("/taxonomy")
@blp.response(200)
@public
def taxonomy() -> dict[str, Any]:
    """The part-category tree with its dot-path slugs.

    Categories nest by dot path (``chassis.braking.calipers`` is under ``chassis.braking``).
    Capabilities, demands and filters name a slug; a filter on a category includes its descendants.
    """
    return {"items": refdata.taxonomy_tree()}


@blp.route("/certifications")
@blp.response(200)
@public
def standards() -> dict[str, Any]:
    """Certification standards a supplier can hold.

    The standards (IATF 16949, ISO 14001, AEC-Q100, ...) a certification may name, with their
    Chinese names. A demand's ``required_standards`` must come from this list.
    """
    return {"items": [{**vars(s), "levels": list(s.levels)} for s in refdata.standards().values()]}
