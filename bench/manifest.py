"""``python -m bench.manifest``: what a claim package costs — the JSON manifest (canonical JSON
and an inclusion proof per entry) and the XLSX workbook for a claim of ``--claim`` entries in a
ledger of ``--entries``, and the offline verifier on that manifest.

A throw-away PostgreSQL database (owner role of ``.ci/services.sh``, as bench.proofs) gets the
schema, one real purchase recorded by the product (its entry is the template), then
``--entries − 1`` more entries cloned from it with their own seq, cause, OEM and amount, their
chain hashes computed in order; one OEM in ``entries / claim`` gets the claim's entries, spread
over the whole ledger. A signed checkpoint covers them (the stored tree grows as in production).
Each build is timed ``--runs`` times; printed: median and spread.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from market import create_app, ledger
from market import verify as verifier
from market.config import TestConfig
from market.extensions import db
from market.ledger import checkpoints
from market.ledger.chain import ALL_HASHED_FIELDS
from market.ledger.package import ClaimPackageFacts, claim_manifest, claim_workbook
from market.models import LedgerEntry, OrgKind

OWNER_URL = os.environ.get(
    "BENCH_OWNER_DATABASE_URL",
    "postgresql+psycopg://market_owner:market_owner@127.0.0.1:5432/market_test",
)


def _timed(runs: int, call: Callable[[], Any]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _fill_ledger(entries: int, claim: int) -> tuple[int, list[int]]:
    """The ledger of ``entries`` entries; returns the claim OEM and its entries' seqs."""
    # The test world's builders (bench is not the product; mypy does not check tests/).
    factories: Any = importlib.import_module("tests.factories")
    guangzhou, shenzhen = factories.GUANGZHOU, factories.SHENZHEN

    ledger.ensure_default_policy()
    oem, other = factories.make_org(OrgKind.OEM), factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=guangzhou)
    supplier = factories.make_org(city_code="440300")
    site = factories.make_site(supplier, at=shenzhen)
    purchase = factories.make_purchase(oem, plant, supplier, site, purchased_on=date(2026, 3, 1))
    ledger.sync_purchase(purchase.id)
    db.session.commit()
    template = db.session.scalars(select(LedgerEntry)).one()
    columns = [c.key for c in cast(Table, LedgerEntry.__table__).columns if c.key != "id"]
    base = {name: getattr(template, name) for name in columns}
    prev_hash, every = template.entry_hash, entries // claim
    rows, seqs = [], [1]
    for seq in range(2, entries + 1):
        mine = seq % every == 1
        values = {
            **base,
            "seq": seq,
            "cause": f"bench:{seq}",
            "oem_org_id": oem.id if mine else other.id,
            "amount": Decimal(1000 + seq) + Decimal("0.25"),
            "recorded_at": base["recorded_at"] + timedelta(milliseconds=seq),
            "prev_hash": prev_hash,
        }
        values["entry_hash"] = prev_hash = ledger.chain_hash(prev_hash, values)
        rows.append(values)
        if mine:
            seqs.append(seq)
    for start in range(0, len(rows), 2000):
        db.session.execute(insert(cast(Table, LedgerEntry.__table__)), rows[start : start + 2000])
    db.session.commit()
    assert set(ALL_HASHED_FIELDS) <= set(columns)
    return oem.id, seqs[:claim]


def run(entries: int, claim: int, runs: int) -> dict[str, Any]:
    name = f"bench_manifest_{uuid.uuid4().hex[:8]}"
    admin = create_engine(OWNER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(OWNER_URL).set(database=name).render_as_string(hide_password=False)
    folder = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
    app = create_app(
        TestConfig, SQLALCHEMY_DATABASE_URI=url, LEDGER_SIGNING_KEY=str(folder / "key.pem")
    )
    try:
        with app.app_context(), app.test_request_context():
            db.create_all()
            checkpoints.generate_key_file(folder / "key.pem")
            started = time.perf_counter()
            oem, seqs = _fill_ledger(entries, claim)
            checkpoint = checkpoints.issue_checkpoint()
            fill = time.perf_counter() - started
            facts = ClaimPackageFacts(
                claim_id=1,
                oem_id=oem,
                oem_name="bench",
                year=2026,
                state="submitted",
                kind="original",
                figures={},
                checkpoint_size=checkpoint.size,
                entry_seqs=seqs,
                decisions={},
                evidence=[],
            )
            manifest_s = _timed(runs, lambda: claim_manifest(facts))
            workbook_s = _timed(runs, lambda: claim_workbook(facts))
            manifest = claim_manifest(facts)
            path = folder / "manifest.json"
            path.write_text(json.dumps(manifest))
            (folder / "key.json").write_text(json.dumps(checkpoints.public_key_document()))
            verify_s = _timed(runs, lambda: verifier.verify_manifest(path, folder / "key.json"))
            report = verifier.verify_manifest(path, folder / "key.json")
            entries_ok = next(c for c in report.checks if c["check"] == "entries")["ok"]
            db.session.remove()
            db.engine.dispose()
        return {
            "fill_s": fill,
            "size": checkpoint.size,
            "claim": len(seqs),
            "manifest_s": manifest_s,
            "workbook_s": workbook_s,
            "verify_s": verify_s,
            "manifest_bytes": path.stat().st_size,
            "proof_hashes": max(len(e["inclusion_proof"]) for e in manifest["entries"]),
            "entries_verified": entries_ok,
        }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s median ({min(times):.3f}–{max(times):.3f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.manifest", description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--claim", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.entries, args.claim, args.runs)
    print(
        f"ledger of {result['size']:,} entries (filled and checkpointed in "
        f"{result['fill_s']:.1f} s); claim of {result['claim']:,} entries, {args.runs} runs each"
    )
    print(f"manifest: {_spread(result['manifest_s'])}; {result['manifest_bytes']:,} bytes, "
          f"≤ {result['proof_hashes']} hashes per proof")  # fmt: skip
    print(f"workbook: {_spread(result['workbook_s'])}")
    print(
        f"offline verifier on the manifest: {_spread(result['verify_s'])}; every entry "
        f"verified: {result['entries_verified']}"
    )
    print(f"(PostgreSQL on 127.0.0.1, one process; {os.cpu_count()} cores shared)")


if __name__ == "__main__":
    main()
