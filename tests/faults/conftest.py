"""Fixtures of the fault scenarios, and their convergence report.

A scenario runs the product as deployed: the app behind a real HTTP server, ``flask worker`` and
``flask scheduler`` processes, on the run's database and the real Redis and Elasticsearch (or a
private Redis, a proxy in front of Elasticsearch, a private PostgreSQL cluster). Every table is
emptied before and after. Times to converge go to ``FAULTS_REPORT`` (JSON, plus a ``.md``
beside it; default ``<pytest basetemp>/faults-report.json``) and into the terminal summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from market import ledger
from market.extensions import db
from tests.conftest import _empty_all_tables, make_test_app
from tests.faults.harness import (
    REPORT,
    Api,
    ApiServer,
    Processes,
    Scenario,
    World,
    stack_env,
    unique_prefix,
)
from tests.faults.invariants import Invariants

# Faults covered by tests outside this folder; listed in the report beside ours.
REPORT.references = [
    {
        "scenario": "the same job delivered 10 times across 2 workers",
        "test": "tests/test_workers.py::test_ten_deliveries_to_two_workers_make_one_entry",
    },
    {
        "scenario": "work-horse killed waiting for the ledger lock / inside its insert",
        "test": "tests/test_workers.py::test_a_work_horse_killed_mid_job_still_gives_one_entry",
    },
    {
        "scenario": "Redis keys flushed with jobs queued (sweeper recovery)",
        "test": "tests/test_workers.py::test_the_sweeper_recovers_everything_redis_lost",
    },
    {
        "scenario": "a ledger row edited behind the app's back (/ledger/verify)",
        "test": "tests/test_workers.py::test_the_sweeper_recovers_everything_redis_lost",
    },
    {
        "scenario": "a ledger row deleted (/ledger/verify) / refused by the trigger",
        "test": "tests/test_ledger_api.py::test_verify_reports_a_missing_entry, "
        "tests/test_ledger_rules.py::test_the_database_refuses_to_change_or_delete_an_entry",
    },
    {
        "scenario": "20 concurrent awards on one demand: the states left (quotes, demand)",
        "test": "tests/test_quotes.py::test_twenty_concurrent_awards_make_exactly_one_purchase",
    },
]


# --- the report -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def faults_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    configured = os.environ.get("FAULTS_REPORT")
    path = Path(configured) if configured else tmp_path_factory.getbasetemp() / "faults-report.json"
    yield path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(REPORT.as_dict(), indent=2, ensure_ascii=False) + "\n")
    path.with_suffix(".md").write_text(REPORT.markdown() + "\n")
    REPORT.written_to = path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        REPORT.outcome(item.nodeid, report.outcome)
    elif report.when == "teardown" and report.failed:
        REPORT.outcome(item.nodeid, "failed")
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.scenarios:
        return
    terminalreporter.section("fault scenarios: time to converge")
    terminalreporter.write_line(REPORT.markdown())
    if REPORT.written_to is not None:
        terminalreporter.write_line(f"report: {REPORT.written_to}")


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Callable[[str, str], Scenario]:
    """Register a named scenario of this test in the report."""

    def register(name: str, what: str) -> Scenario:
        return REPORT.scenario(name, request.node.nodeid, what)

    return register


# --- the database -----------------------------------------------------------------------------


@pytest.fixture
def fresh_db(committed_db: Any) -> Iterator[Any]:
    """The run's database with real commits, emptied first (and afterwards), the policy seeded."""
    _empty_all_tables()
    ledger.ensure_default_policy()
    db.session.commit()
    yield committed_db


@pytest.fixture
def engine(owner_database_url: str) -> Iterator[Engine]:
    """An engine of the test's own on the run's database (invariant checks, lock holders),
    as the tables' owner: a tampering scenario plays an insider with the owner's password."""
    engine = create_engine(owner_database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """One deployment under test: the app over HTTP, its worker processes, the checks."""

    app: Flask
    api: Api
    processes: Processes
    check: Invariants
    world: World
    prefix: str
    env: dict[str, str]


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Build stacks on demand; every server and process is stopped at the end of the test."""
    exits = ExitStack()

    def build(
        *,
        database_url: str,
        redis_url: str,
        world: World,
        engine: Engine,
        name: str = "stack",
        elasticsearch_url: str | None = None,
        index_prefix: str | None = None,
        app_settings: dict[str, Any] | None = None,
        worker_env: dict[str, str] | None = None,
    ) -> Stack:
        prefix = unique_prefix(name)
        settings: dict[str, Any] = {
            "REDIS_URL": redis_url,
            "JOB_MODE": "rq",
            "RQ_QUEUE_PREFIX": prefix,
        }
        if elasticsearch_url:
            settings |= {
                "ELASTICSEARCH_URL": elasticsearch_url,
                "ELASTICSEARCH_INDEX_PREFIX": index_prefix or prefix,
            }
        settings.update(app_settings or {})
        app = make_test_app(database_url, **settings)
        server = exits.enter_context(ApiServer(app))
        log_dir = tmp_path / prefix
        log_dir.mkdir()
        env = stack_env(
            database_url=database_url,
            redis_url=redis_url,
            prefix=prefix,
            instance_dir=log_dir,
            elasticsearch_url=elasticsearch_url,
            index_prefix=index_prefix,
            **(worker_env or {}),
        )
        processes = Processes(env, log_dir)
        exits.callback(processes.stop)
        api = Api(server.url)
        return Stack(app, api, processes, Invariants(engine, api, world), world, prefix, env)

    with exits:
        yield build
