"""``python -m bench``: every case, or some, printed with its baseline and the goals."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

from bench.stats import Report
from bench.world import SIZES

CASES = ("matches", "reindex", "ledger", "purchases", "gaps")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of StrongChain Exchange beside their baselines (real services "
        "on 127.0.0.1: PostgreSQL with PostGIS, Redis, Elasticsearch).",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    parser.add_argument(
        "--sizes", default="10k,100k,1m", help="supplier counts for the search cases: 10k,100k,1m"
    )
    parser.add_argument("--demands", type=int, default=300, help="benchmark demands per size")
    parser.add_argument(
        "--slow-demands",
        type=int,
        default=0,
        help="measure the SQL baselines and the database backend on only this many demands "
        "(0: all); they take seconds each at 1M",
    )
    parser.add_argument("--warmup", type=int, default=30, help="requests before measuring")
    parser.add_argument(
        "--no-throughput", dest="throughput", action="store_false", help="skip case 2"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="connections in case 2")
    parser.add_argument("--seconds", type=float, default=20, help="duration of each load run")
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--gunicorn-threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and short")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    try:
        args.sizes = [SIZES[s.strip().lower()] for s in args.sizes.split(",") if s.strip()]
    except KeyError as exc:
        parser.error(f"unknown size {exc}; use {', '.join(SIZES)}")
    if args.quick:
        args.demands, args.warmup, args.seconds = min(args.demands, 40), 5, 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = Report()
    started = time.perf_counter()
    report.fact(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    if {"matches", "reindex"} & set(args.cases):
        from bench import matching

        matching.run(report, args)
    if "ledger" in args.cases:
        from bench import ledger

        ledger.run(report, args)
    if "purchases" in args.cases:
        from bench import purchases

        purchases.run(report, args)
    if "gaps" in args.cases:
        from bench import gaps

        gaps.run(report, args)
    report.fact(f"whole run: {time.perf_counter() - started:.0f} s")
    print(report.render())
    return 0 if all(goal.met for goal in report.goals) else 1


if __name__ == "__main__":
    sys.exit(main())
