"""What the fault scenarios run: a real HTTP server, real worker processes, a world of rows.

- :class:`ApiServer`: the app served by werkzeug's threaded WSGI server on 127.0.0.1 (real
  sockets, one thread per request, as a small gunicorn would).
- :class:`Api`: an HTTP client that keeps every reply, so invariant I5 can read them all.
- :class:`Processes`: ``flask --app wsgi worker`` / ``scheduler`` subprocesses, their logs, and
  the work-horse an RQ worker forks for a job.
- :func:`build_world`: an OEM with a plant and a buyer, suppliers with sites, an admin and an
  auditor, committed, with API tokens.
- :data:`REPORT`: each scenario's time to converge; written to ``FAULTS_REPORT`` at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import urllib3
from flask import Flask
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from werkzeug.serving import BaseWSGIServer, make_server

from market.clock import business_today
from market.extensions import db
from market.models import (
    Confirmation,
    OrgKind,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseParty,
    PurchaseSource,
    PurchaseStatus,
    Role,
    Site,
)
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
SECRET_KEY = "test-secret-key-not-for-production"


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP exchange as the client saw it (``status`` None: no HTTP answer at all)."""

    method: str
    path: str
    status: int | None
    body: str
    started: float  # time.monotonic() when the request was sent
    elapsed: float
    error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __str__(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"{self.method} {self.path} -> {answer} in {self.elapsed:.2f}s: {self.body[:300]}"


class Api:
    """A thread-safe HTTP client on the real server; every reply is kept for invariant I5."""

    def __init__(self, base_url: str, timeout: float = 20.0) -> None:
        self.base_url = base_url
        self.pool = urllib3.PoolManager(
            maxsize=32, block=False, retries=False, timeout=urllib3.Timeout(total=scaled(timeout))
        )
        self.replies: list[Reply] = []
        self._lock = threading.Lock()

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        started = time.monotonic()
        all_headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = self.pool.request(
                method, self.base_url + path, body=payload, headers=all_headers
            )
            reply = Reply(
                method,
                path,
                response.status,
                response.data.decode("utf-8", "replace"),
                started,
                time.monotonic() - started,
            )
        except urllib3.exceptions.HTTPError as exc:
            reply = Reply(
                method,
                path,
                None,
                "",
                started,
                time.monotonic() - started,
                error=f"{type(exc).__name__}: {exc}",
            )
        with self._lock:
            self.replies.append(reply)
        return reply

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.call("GET", path, headers=headers)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.call("POST", path, headers=headers, body=body)

    def put(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.call("PUT", path, headers=headers, body=body)

    def patch(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.call("PATCH", path, headers=headers, body=body)


class ApiServer:
    """The app on a real socket: werkzeug's threaded server in a daemon thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=scaled(10))
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- worker processes -----------------------------------------------------------------------


def stack_env(
    *,
    database_url: str,
    redis_url: str,
    prefix: str,
    instance_dir: Path,
    elasticsearch_url: str | None = None,
    index_prefix: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a production deployment on the test's services."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "ELASTICSEARCH_URL", "JOB_MODE"}
    }
    env |= {
        "MARKET_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE_PREFIX": prefix,
        "SECRET_KEY": SECRET_KEY,
        "OUTBOX_STALE_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        "MARKET_INSTANCE_DIR": str(instance_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if elasticsearch_url:
        env["ELASTICSEARCH_URL"] = elasticsearch_url
        env["ELASTICSEARCH_INDEX_PREFIX"] = index_prefix or prefix
    env["LEDGER_SIGNING_KEY"] = str(make_signing_key_file(instance_dir))
    env.update(extra)
    return env


def make_signing_key_file(instance_dir: Path) -> Path:
    """Production brings its own checkpoint signing key: a file, as an operator would."""
    from market.ledger.checkpoints import generate_key_file

    path = instance_dir / "ledger_signing_key.pem"
    generate_key_file(path)  # an existing key is kept
    return path


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def work_horse_of(worker_pid: int) -> int | None:
    """RQ forks a horse per job and makes it a process-group leader (unlike its scheduler)."""
    for child in _children(worker_pid):
        try:
            if os.getpgid(child) == child:
                return child
        except ProcessLookupError:
            continue
    return None


class Processes:
    """``flask --app wsgi ...`` subprocesses of one scenario; all of them end with it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.orphans: list[int] = []  # horses whose worker was killed

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{args[0]}-{len(self.running)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=REPO,
            env=env or self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            # Its own process group: RQ's scheduler child goes with it even if a test
            # SIGKILLs the worker itself (an orphan would poll Redis forever).
            start_new_session=True,
        )
        self.running.append((process, log))
        return process

    def worker(self, *args: str, ready: bool = False) -> subprocess.Popen[bytes]:
        process = self.start("worker", *args)
        if ready:
            self.wait_ready(process, "Listening on")
        return process

    def scheduler(self, every: int = 1, *args: str, ready: bool = False) -> subprocess.Popen[bytes]:
        process = self.start("scheduler", "--sweep-every", str(every), *args)
        if ready:
            self.wait_ready(process, "registering birth")
        return process

    def wait_ready(self, process: subprocess.Popen[bytes], line: str, timeout: float = 60) -> None:
        """Wait until the process logged ``line`` (it is up and listening)."""
        log = next(log for p, log in self.running if p is process)
        deadline = time.monotonic() + scaled(timeout)
        while line not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{log.name} never logged {line!r}\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        """The end of every log (for failure messages)."""
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for _, log in self.running
        )

    def logged(self, line: str) -> bool:
        """Whether any process logged ``line``, anywhere in its whole log."""
        return any(line in log.read_text(errors="replace") for _, log in self.running)

    @staticmethod
    def terminate(process: subprocess.Popen[bytes]) -> None:
        """Stop a process as a supervisor would (SIGTERM: RQ's warm shutdown, which also
        releases its scheduler lock; a SIGKILLed worker holds that lock for about a minute,
        delaying RQ's retries), then anything left in its group."""
        process.terminate()
        try:
            process.wait(timeout=scaled(15))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=scaled(10))

    def stop(self) -> None:
        """End every process of the scenario at once (its outcome is already checked)."""
        horses = [work_horse_of(process.pid) for process, _ in self.running]
        for pid in [*self.orphans, *(h for h in horses if h)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process, _ in self.running:
            # The whole group: RQ's scheduler child too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process, _ in self.running:
            process.wait(timeout=scaled(10))


# --- the world ------------------------------------------------------------------------------


@dataclass
class Supplier:
    id: int
    site_id: int
    headers: dict[str, str]


@dataclass
class World:
    oem_id: int
    plant_id: int
    buyer: dict[str, str]
    admin: dict[str, str]
    auditor: dict[str, str]
    suppliers: list[Supplier]
    far_supplier: Supplier  # out of 200 km: its purchases are recorded, not near-shore


def build_world(suppliers: int = 3, *, sync: bool = False) -> World:
    """Rows for the scenarios, committed in the current app context (factories + commit).

    With ``sync`` every supplier gets a ``search.sync`` outbox row (picked up by the sweeper).
    """
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    buyer = factories.make_user(oem)
    made = []
    for i in range(suppliers):
        org = factories.make_org(city_code="440300", tier=1 + i % 3, description="制动 卡钳")
        site = factories.make_site(org, at=(SHENZHEN[0] + 0.01 * i, SHENZHEN[1]))
        factories.make_capability(org, "chassis.braking.foundation")
        made.append((org, site))
    far = factories.make_org(city_code="440500", description="制动 卡钳")
    far_site = factories.make_site(far, at=SHANTOU)
    factories.make_capability(far, "chassis.braking.foundation")
    made.append((far, far_site))
    if sync:
        for org, _ in made:
            db.session.add(OutboxEvent(topic=OutboxTopic.SEARCH_SYNC, aggregate_id=org.id))
    world = World(
        oem_id=oem.id,
        plant_id=plant.id,
        buyer=factories.auth(buyer),
        admin=factories.auth(factories.make_user(role=Role.ADMIN)),
        auditor=factories.auth(factories.make_user(role=Role.AUDITOR)),
        suppliers=[
            Supplier(org.id, site.id, factories.auth(factories.make_user(org)))
            for org, site in made[:-1]
        ],
        far_supplier=Supplier(far.id, far_site.id, factories.auth(factories.make_user(far))),
    )
    db.session.commit()
    return world


def purchase_body(world: World, n: int, supplier: Supplier | None = None) -> dict[str, Any]:
    """A valid POST /purchases body; ``n`` varies the amount and the supplier (one in five is
    the far one: recorded, not near-shore); the invoice is unique."""
    chosen = supplier or (
        world.far_supplier if n % 5 == 4 else world.suppliers[n % len(world.suppliers)]
    )
    return {
        "supplier_org_id": chosen.id,
        "supplier_site_id": chosen.site_id,
        "plant_id": world.plant_id,
        "category": "chassis.braking.foundation",
        "amount": f"{1000 + n}.{n % 100:02d}",
        "purchased_on": (business_today() - timedelta(days=1 + n % 20)).isoformat(),
        "invoice_number": f"FLT-{uuid.uuid4().hex[:12].upper()}",
        "po_number": f"PO-{n:06d}",
    }


def _frozen_facts(engine: Engine, world: World) -> dict[int, dict[str, Any]]:
    """Per supplier site of the world: the frozen columns a purchase from it carries."""
    with engine.connect() as conn:
        sites = {row.id: row for row in conn.execute(select(Site))}
    plant = sites[world.plant_id]
    return {
        site_id: {
            "site_city_code": site.city_code,
            "site_lat": site.lat,
            "site_lon": site.lon,
            "plant_city_code": plant.city_code,
            "plant_lat": plant.lat,
            "plant_lon": plant.lon,
        }
        for site_id, site in sites.items()
    }


def confirm_purchase(api: Api, world: World, purchase: dict[str, Any]) -> Reply:
    """The purchase's supplier confirms it (what makes the ledger count it)."""
    supplier = next(
        s for s in [*world.suppliers, world.far_supplier] if s.id == purchase["supplier_org_id"]
    )
    return api.post(f"/api/v1/purchases/{purchase['id']}/confirm", {}, supplier.headers)


def insert_purchases(engine: Engine, world: World, count: int) -> list[int]:
    """Many committed, confirmed purchases with their ledger outbox rows, fast (one
    executemany each); their frozen facts are the sites' as they are now."""
    now = datetime.now(UTC)
    frozen = _frozen_facts(engine, world)
    rows = []
    for n in range(count):
        body = purchase_body(world, n)
        rows.append(
            {
                "oem_org_id": world.oem_id,
                "supplier_org_id": body["supplier_org_id"],
                "supplier_site_id": body["supplier_site_id"],
                "plant_id": world.plant_id,
                "category": body["category"],
                "amount": Decimal(body["amount"]),
                "purchased_on": date.fromisoformat(body["purchased_on"]),
                "invoice_number": body["invoice_number"],
                "po_number": body["po_number"],
                "source": PurchaseSource.DIRECT,
                "status": PurchaseStatus.CONFIRMED,
                "confirmation": Confirmation.COUNTERPARTY,
                "confirmed_at": now,
                "created_by_party": PurchaseParty.OEM,
                "created_at": now,
                **frozen[body["supplier_site_id"]],
            }
        )
    invoices = [row["invoice_number"] for row in rows]
    with engine.begin() as conn:
        conn.execute(insert(Purchase.__table__), rows)  # type: ignore[arg-type]
        ids = list(
            conn.scalars(
                select(Purchase.id)
                .where(Purchase.invoice_number.in_(invoices))
                .order_by(Purchase.id)
            )
        )
        conn.execute(
            insert(OutboxEvent.__table__),  # type: ignore[arg-type]
            [
                {
                    "topic": OutboxTopic.LEDGER_RECORD,
                    "aggregate_id": purchase_id,
                    "payload": {},
                    "status": OutboxStatus.PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
                for purchase_id in ids
            ],
        )
    return ids


# --- the report -----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    test: str
    what: str
    timings: list[float] = field(default_factory=list)
    invariants: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    outcome: str = "not run"

    def converged(self, seconds: float) -> float:
        """Record one run's time to converge (and print it)."""
        self.timings.append(seconds)
        print(f"[faults] {self.name}: converged in {seconds:.2f} s")
        return seconds


class Report:
    """Times to converge per scenario, printed as they are measured and written at the end."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}
        self.references: list[dict[str, str]] = []
        self.started = time.monotonic()
        self.written_to: Path | None = None

    def scenario(self, name: str, test: str, what: str) -> Scenario:
        if name not in self.scenarios:
            self.scenarios[name] = Scenario(name, test, what)
        return self.scenarios[name]

    def outcome(self, test: str, outcome: str) -> None:
        for scenario in self.scenarios.values():
            if scenario.test == test and scenario.outcome in {"not run", "passed"}:
                scenario.outcome = outcome

    def as_dict(self) -> dict[str, Any]:
        def row(s: Scenario) -> dict[str, Any]:
            return {
                "scenario": s.name,
                "test": s.test,
                "what": s.what,
                "outcome": s.outcome,
                "runs": len(s.timings),
                "converge_p50_s": round(statistics.median(s.timings), 3) if s.timings else None,
                "converge_max_s": round(max(s.timings), 3) if s.timings else None,
                "timings_s": [round(t, 3) for t in s.timings],
                "invariants": sorted(s.invariants),
                "notes": s.notes,
            }

        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "suite_seconds": round(time.monotonic() - self.started, 1),
            "scenarios": [row(s) for s in self.scenarios.values()],
            "covered_elsewhere": self.references,
        }

    def markdown(self) -> str:
        data = self.as_dict()
        lines = [
            "| scenario | outcome | runs | converge p50 (s) | max (s) | invariants |",
            "|---|---|---|---|---|---|",
        ]
        for s in data["scenarios"]:
            p50 = "" if s["converge_p50_s"] is None else f"{s['converge_p50_s']:.2f}"
            top = "" if s["converge_max_s"] is None else f"{s['converge_max_s']:.2f}"
            lines.append(
                f"| {s['scenario']} | {s['outcome']} | {s['runs']} | {p50} | {top} "
                f"| {' '.join(s['invariants'])} |"
            )
        lines.append(f"\nfaults suite: {data['suite_seconds']} s")
        if data["covered_elsewhere"]:
            lines.append("\ncovered by tests outside tests/faults:")
            lines += [f"- {ref['scenario']}: {ref['test']}" for ref in data["covered_elsewhere"]]
        return "\n".join(lines)


REPORT = Report()


def unique_prefix(name: str) -> str:
    from tests.conftest import RUN_ID

    return f"{RUN_ID}-{name}-{uuid.uuid4().hex[:6]}".lower()
