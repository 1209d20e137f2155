"""``python -m bench.proofs``: what a Merkle proof of the ledger costs at 10k and 1M entries.

Two measurements per size:

- in memory (:class:`market.ledger.merkle.MemoryTree`): the pure arithmetic of a proof;
- from PostgreSQL (``ledger_tree_nodes``, as the API serves them): a throw-away database gets
  the 2n − 1 perfect nodes of a tree of n synthetic leaves by COPY, then the service functions
  answer inclusion proofs for random entries and consistency proofs between random sizes.

Printed: proof length (hashes and bytes), median and p95 time per proof, and how many stored
nodes a proof read. Needs the owner role of ``.ci/services.sh`` (it creates the database).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from market import create_app
from market.config import TestConfig
from market.extensions import db
from market.ledger import checkpoints, merkle

OWNER_URL = os.environ.get(
    "BENCH_OWNER_DATABASE_URL",
    "postgresql+psycopg://market_owner:market_owner@127.0.0.1:5432/market_test",
)
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def synthetic_leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(n)]


def timed(samples: int, call: Callable[[], Any]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def in_memory(n: int, samples: int, rng: random.Random) -> dict[str, Any]:
    started = time.perf_counter()
    tree = merkle.MemoryTree(synthetic_leaves(n))
    build = time.perf_counter() - started
    lengths: list[int] = []

    def inclusion() -> None:
        lengths.append(len(tree.inclusion_proof(rng.randrange(n), n)))

    def consistency() -> None:
        lengths.append(len(tree.consistency_proof(rng.randrange(1, n), n)))

    inc = timed(samples, inclusion)
    inc_len = max(lengths)
    lengths.clear()
    con = timed(samples, consistency)
    proof = tree.inclusion_proof(n // 3, n)
    root = tree.root(n)
    verify = timed(
        samples, lambda: merkle.verify_inclusion(n // 3, n, tree.levels[0][n // 3], proof, root)
    )
    return {
        "build_s": build,
        "inclusion_ms": inc,
        "inclusion_hashes": inc_len,
        "consistency_ms": con,
        "consistency_hashes": max(lengths),
        "verify_ms": verify,
    }


def from_postgres(n: int, samples: int, rng: random.Random) -> dict[str, Any]:
    name = f"bench_proofs_{uuid.uuid4().hex[:8]}"
    admin = create_engine(OWNER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(OWNER_URL).set(database=name).render_as_string(hide_password=False)
    app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=url)
    try:
        with app.app_context():
            tables = [db.metadata.tables[t] for t in ("ledger_tree_nodes", "ledger_checkpoints")]
            db.metadata.create_all(db.engine, tables=tables)
            tree = merkle.MemoryTree(synthetic_leaves(n))
            started = time.perf_counter()
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                copy_sql = "COPY ledger_tree_nodes (level, position, hash) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for level, nodes in enumerate(tree.levels):
                        for position, value in enumerate(nodes):
                            copy.write_row((level, position, value))
                raw.commit()
            finally:
                raw.close()
            db.session.execute(text("ANALYZE ledger_tree_nodes"))
            db.session.commit()
            load = time.perf_counter() - started
            reads: list[int] = []
            original = checkpoints._stored_nodes

            def counting(wanted: set[merkle.Node]) -> dict[merkle.Node, bytes]:
                reads.append(len(wanted))
                return original(wanted)

            checkpoints._stored_nodes = counting
            try:
                seqs = [rng.randrange(1, n + 1) for _ in range(samples)]
                inc = timed(samples, lambda: checkpoints.inclusion_proof(seqs.pop(), n))
                inc_reads = max(reads)
                reads.clear()
                olds = [rng.randrange(1, n) for _ in range(samples)]
                con = timed(samples, lambda: checkpoints.consistency_proof(olds.pop(), n))
                con_reads = max(reads)
            finally:
                checkpoints._stored_nodes = original
            answer = checkpoints.inclusion_proof(n // 2, n)
            assert merkle.verify_inclusion(
                n // 2 - 1,
                n,
                bytes.fromhex(answer["leaf_hash"]),
                [bytes.fromhex(h) for h in answer["proof"]],
                tree.root(n),
            )
            db.session.remove()
            db.engine.dispose()
        return {
            "load_s": load,
            "rows": sum(len(level) for level in tree.levels),
            "inclusion_ms": inc,
            "inclusion_node_reads": inc_reads,
            "consistency_ms": con,
            "consistency_node_reads": con_reads,
        }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proofs", description=__doc__)
    parser.add_argument("--sizes", default="10k,1m", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--no-db", dest="db", action="store_false")
    args = parser.parse_args(argv)
    rng = random.Random(9162)
    for label in args.sizes.split(","):
        n = SIZES[label.strip().lower()]
        memory = in_memory(n, args.samples, rng)
        print(f"== {label}: {n:,} leaves")
        print(
            f"in memory: tree built in {memory['build_s']:.1f} s; inclusion proof "
            f"{memory['inclusion_hashes']} hashes ({32 * memory['inclusion_hashes']} B), "
            f"{memory['inclusion_ms'][0]:.3f} ms p50 / {memory['inclusion_ms'][1]:.3f} ms p95; "
            f"consistency proof ≤ {memory['consistency_hashes']} hashes "
            f"({32 * memory['consistency_hashes']} B), {memory['consistency_ms'][0]:.3f} ms p50; "
            f"verification {memory['verify_ms'][0]:.3f} ms"
        )
        if args.db:
            stored = from_postgres(n, args.samples, rng)
            print(
                f"PostgreSQL: {stored['rows']:,} node rows loaded in {stored['load_s']:.1f} s; "
                f"inclusion proof {stored['inclusion_ms'][0]:.2f} ms p50 / "
                f"{stored['inclusion_ms'][1]:.2f} ms p95 (≤ {stored['inclusion_node_reads']} "
                f"nodes read in one query); consistency proof {stored['consistency_ms'][0]:.2f} ms "
                f"p50 / {stored['consistency_ms'][1]:.2f} ms p95 "
                f"(≤ {stored['consistency_node_reads']} nodes)"
            )
    print(f"(hash: {hashlib.sha256().name}, Python, one process; {os.cpu_count()} cores shared)")


if __name__ == "__main__":
    main()
