"""KPI bar charts as SVG, drawn server-side with matplotlib.

Deterministic, so a chart is byte-for-byte the same for the same figures (cacheable, testable):
``svg.hashsalt`` is fixed (element ids), no date metadata is written. Text stays text
(``svg.fonttype = 'none'``): the browser draws the Chinese labels with its own fonts, so the
server needs no CJK font file. The Agg-free object API (``Figure``) is used, never pyplot, so
concurrent requests share no global figure state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from market.insights.drawing import drawing

KINDS = ("near_shore", "vehicle_ratio", "chips")
HASH_SALT = "strongchain-kpis"
# Fonts the browser tries, in order (text is not embedded): Chinese first, then a Latin one.
FONT_FAMILIES = ["Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC"]


@dataclass(frozen=True)
class ChartSpec:
    field: str  # the KPI's key in a kpis() item
    title: str
    target: Decimal | None
    target_label: str


SPECS = {
    "near_shore": ChartSpec("near_shore_ratio", "近岸采购占比 near-shore ratio", None, "合计 all"),
    "vehicle_ratio": ChartSpec(
        "vehicle_ratio", "整零比 (1:x) vehicle-to-parts ratio", Decimal("0.90"), "目标 1:0.9"
    ),
    "chips": ChartSpec(
        "chip_share", "车规芯片国产化率 chip localisation", Decimal("0.20"), "目标 20%"
    ),
}


def _bars(items: Sequence[dict[str, Any]], field: str) -> tuple[list[str], list[float | None]]:
    labels = [str(item["label"]) for item in items]
    values = [
        None if item[field]["value"] is None else float(item[field]["value"]) for item in items
    ]
    return labels, values


def render(kind: str, figures: dict[str, Any]) -> str:
    """The SVG bar chart of one KPI from :func:`market.services.kpis.kpis`' answer."""
    spec = SPECS[kind]
    labels, values = _bars(figures["items"], spec.field)
    target = spec.target
    if target is None:  # near-shore has no seed target: draw the overall ratio instead
        overall = figures["totals"][spec.field]["value"]
        target = None if overall is None else Decimal(overall)
    style: dict[str, Any] = {
        "svg.hashsalt": HASH_SALT,
        "svg.fonttype": "none",
        "font.family": "sans-serif",
        "font.sans-serif": [*FONT_FAMILIES, "DejaVu Sans"],
    }
    with drawing(style):  # one at a time, without "glyph missing" noise for CJK text
        from matplotlib.figure import Figure  # imported by the first drawing

        figure = Figure(figsize=(min(24.0, max(6.0, 1.1 * len(labels) + 2)), 4.0))
        axes = figure.subplots()
        positions = list(range(len(labels)))
        heights = [0.0 if v is None else v for v in values]
        axes.bar(positions, heights, color="#2f6db5", width=0.6)
        for x, value in zip(positions, values, strict=True):
            text = "无数据 no data" if value is None else f"{value:.2f}"
            axes.annotate(text, (x, value or 0.0), ha="center", va="bottom", fontsize=8)
        if target is not None:
            axes.axhline(float(target), color="#c0392b", linestyle="--", linewidth=1.2)
            axes.annotate(
                spec.target_label,
                (1.0, float(target)),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                color="#c0392b",
                fontsize=8,
            )
        axes.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
        top = max([*heights, float(target or 0), 0.1])
        axes.set_ylim(0, top * 1.2)
        axes.set_title(f"{spec.title} · {figures['year']}", fontsize=10)
        if not labels:
            axes.text(0.5, 0.5, "无数据 no data", transform=axes.transAxes, ha="center")
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
