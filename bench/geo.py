"""``python -m bench.geo``: the cost of loading the boundaries and of one containment check.

Needs no service. Loading is timed in this fresh process (first use of each piece); checks are
timed one call at a time (median and 99th percentile of ``--repeat`` calls, after a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def _per_call_us(action: Callable[[], Any], repeat: int) -> tuple[float, float]:
    for _ in range(min(repeat, 200)):
        action()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.geo", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args(argv)

    shapely_ms = _timed(lambda: __import__("shapely"))
    market_ms = _timed(lambda: __import__("market.extensions"))  # Flask, SQLAlchemy: not ours
    geo_ms = _timed(lambda: __import__("market.geo"))
    from market import geo

    print("loading (ms, first use in this process)")
    print(f"  import shapely (and numpy)           {shapely_ms:8.1f}")
    print(f"  import market (Flask, SQLAlchemy)    {market_ms:8.1f}")
    print(f"  import market.geo after those        {geo_ms:8.1f}")
    print(f"  index (boundaries.json)              {_timed(geo._index):8.1f}")
    print(f"  blob (boundaries.wkb, 2.5 MB)        {_timed(geo._blob):8.1f}")
    print(
        f"  Guangzhou polygon, parsed + prepared {_timed(lambda: geo.city_boundary('440100')):8.1f}"
    )
    print(
        f"  Guangdong outline, parsed + prepared {_timed(lambda: geo.province_boundary('44')):8.1f}"
    )
    print(f"  all 370 cities + tree (city_of)      {_timed(geo._city_tree):8.1f}")

    guangzhou = (23.1291, 113.2644)
    band = (23.848634, 114.067302)  # 1.5 km outside Guangzhou (tests/factories.point_near_city)
    hong_kong = (22.2793, 114.1628)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("city_contains, inside", lambda: geo.city_contains("440100", *guangzhou)),
        ("city_contains, 1.5 km outside", lambda: geo.city_contains("440100", *band)),
        ("city_contains, far (HK as 440100)", lambda: geo.city_contains("440100", *hong_kong)),
        ("in_province('44'), inside", lambda: geo.in_province("44", *guangzhou)),
        ("in_province('44'), Hong Kong", lambda: geo.in_province("44", *hong_kong)),
        ("city_of", lambda: geo.city_of(*guangzhou)),
        ("haversine_km", lambda: geo.haversine_km(*guangzhou, *hong_kong)),
    ]
    print(f"one call (µs, median / p99 of {args.repeat})")
    for name, action in cases:
        median, p99 = _per_call_us(action, args.repeat)
        print(f"  {name:36} {median:8.1f} / {p99:8.1f}")


if __name__ == "__main__":
    main()
