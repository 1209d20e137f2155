"""Reference data shipped with the project: Guangdong cities, the part taxonomy, standards."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any


def _load(name: str) -> Any:
    with resources.files("market.data").joinpath(f"{name}.json").open(encoding="utf-8") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class City:
    code: str
    name_zh: str
    name_pinyin: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Category:
    slug: str
    zh: str
    en: str
    depth: int
    parent: str | None
    children: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Standard:
    id: str
    name: str
    kind: str
    validity_years: int | None
    levels: tuple[str, ...]


@cache
def cities() -> dict[str, City]:
    data = _load("guangdong_cities")
    return {
        c["code"]: City(c["code"], c["name_zh"], c["name_pinyin"], c["lat"], c["lon"])
        for c in data["cities"]
    }


@cache
def categories() -> dict[str, Category]:
    out: dict[str, Category] = {}

    def walk(nodes: list[dict[str, Any]], parent: str | None, depth: int) -> None:
        for node in nodes:
            kids = node.get("children") or []
            out[node["slug"]] = Category(
                node["slug"],
                node["zh"],
                node["en"],
                depth,
                parent,
                tuple(k["slug"] for k in kids),
            )
            walk(kids, node["slug"], depth + 1)

    walk(_load("part_taxonomy")["tree"], None, 1)
    return out


def city_code_for(name: str) -> str | None:
    """The code of a city given by code, Chinese name (广州市, 广州), pinyin or slug (any case,
    full-width letters too); None if no city has that name."""
    return _city_names().get(unicodedata.normalize("NFKC", name).strip().lower())


@cache
def _city_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for city in _load("guangdong_cities")["cities"]:
        for key in ("code", "name_zh", "name_short_zh", "name_pinyin", "slug"):
            if city.get(key):
                names[str(city[key]).lower()] = city["code"]
    return names


def category_ancestors(slug: str) -> list[str]:
    """The slug and every ancestor: ``a.b.c`` → ``["a", "a.b", "a.b.c"]``."""
    return list(_ancestors(slug))


@cache  # a few hundred slugs at most
def _ancestors(slug: str) -> tuple[str, ...]:
    parts = slug.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def taxonomy_tree() -> list[dict[str, Any]]:
    return _load("part_taxonomy")["tree"]


def _levels(item: dict[str, Any]) -> tuple[str, ...]:
    raw = item.get("levels") or []
    if isinstance(raw, dict):
        return tuple(str(k) for k in raw)
    return tuple(str(x if not isinstance(x, dict) else x.get("id") or x.get("level")) for x in raw)


@cache
def standards() -> dict[str, Standard]:
    return {
        item["id"]: Standard(
            item["id"],
            item["name"],
            item.get("kind", ""),
            item.get("validity_years"),
            _levels(item),
        )
        for item in _load("certifications")["items"]
    }


@cache
def oem_plants() -> list[dict[str, Any]]:
    return _load("oem_plants")["plants"]
