"""Samples, percentiles and the printed table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Row:
    """One line of the table: a case or its baseline, in milliseconds or in a rate."""

    case: str
    subject: str
    n: int
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    rate: float = math.nan  # operations per second, where the case measures throughput
    unit: str = "ms"
    note: str = ""

    @classmethod
    def of_latencies(
        cls,
        case: str,
        subject: str,
        seconds: Sequence[float],
        *,
        rate: float = math.nan,
        note: str = "",
    ) -> Row:
        millis = [s * 1000 for s in seconds]
        return cls(
            case,
            subject,
            len(millis),
            percentile(millis, 50),
            percentile(millis, 95),
            percentile(millis, 99),
            rate,
            note=note,
        )


@dataclass
class Goal:
    """A target from the issue and whether this run met it."""

    text: str
    measured: str
    met: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(format_rows([row], header=False), flush=True)
        return row

    def goal(self, text: str, measured: str, met: bool) -> None:
        self.goals.append(Goal(text, measured, met))

    def fact(self, text: str) -> None:
        self.facts.append(text)
        print(f"  · {text}", flush=True)

    def render(self) -> str:
        lines = ["", format_rows(self.rows), ""]
        if self.goals:
            lines.append("Goals")
            for goal in self.goals:
                lines.append(f"  [{'met' if goal.met else 'MISSED'}] {goal.text}: {goal.measured}")
            lines.append("")
        if self.facts:
            lines.append("Facts")
            lines.extend(f"  · {fact}" for fact in self.facts)
        return "\n".join(lines)


def _number(value: float) -> str:
    if math.isnan(value):
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


COLUMNS = ("case", "subject", "n", "p50 ms", "p95 ms", "p99 ms", "per s", "note")


def format_rows(rows: Iterable[Row], *, header: bool = True) -> str:
    table = [
        [
            r.case,
            r.subject,
            str(r.n),
            _number(r.p50),
            _number(r.p95),
            _number(r.p99),
            _number(r.rate),
            r.note,
        ]
        for r in rows
    ]
    widths = [max([len(COLUMNS[i])] + [len(line[i]) for line in table]) for i in range(7)]
    widths = [max(w, 8 if i >= 2 else 0) for i, w in enumerate(widths)]
    widths[0], widths[1] = max(widths[0], 26), max(widths[1], 30)

    def fmt(cells: Sequence[str]) -> str:
        left = [f"{cells[0]:<{widths[0]}}", f"{cells[1]:<{widths[1]}}"]
        right = [f"{cells[i]:>{widths[i]}}" for i in range(2, 7)]
        return "  ".join(left + right + [cells[7]]).rstrip()

    out = [fmt(COLUMNS), fmt(["-" * w for w in widths] + ["----"])] if header else []
    out.extend(fmt(line) for line in table)
    return "\n".join(out)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan
