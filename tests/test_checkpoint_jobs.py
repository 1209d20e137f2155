"""Checkpoints are issued periodically: by the RQ scheduler in production (registration in
tests/test_scheduler.py), and in-process by the embedded default, which has no scheduler."""

from __future__ import annotations

import time
from datetime import date

from market import ledger
from market.extensions import db
from market.ledger import checkpoints
from market.models import Organization, OrgKind, Site
from tests import factories
from tests.conftest import make_test_app
from tests.factories import GUANGZHOU, SHENZHEN
from workers.embedded import EmbeddedJobs


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_embedded_default_issues_checkpoints_in_process(
    committed_db, database_url, signing_key_file
):
    app = make_test_app(
        database_url,
        EMBEDDED_PERIODIC_JOBS=True,
        CHECKPOINT_EVERY_SECONDS=1,
        LEDGER_SIGNING_KEY=signing_key_file,
    )
    runner = app.extensions["embedded_jobs"]
    assert isinstance(runner, EmbeddedJobs) and runner.thread is None  # not before a request
    with app.app_context():
        ledger.ensure_default_policy()
        oem = factories.make_org(OrgKind.OEM)
        plant = factories.make_site(oem, at=GUANGZHOU)
        supplier = factories.make_org(city_code="440300")
        site = factories.make_site(supplier, at=SHENZHEN)

        ids = (oem.id, plant.id, supplier.id, site.id)

        def buy() -> None:
            # Read again in this transaction: ``latest_size`` ends the session, and a purchase
            # copies the sites' facts.
            o, p, s, s_site = (
                db.session.get(model, id_)
                for model, id_ in zip((Organization, Site, Organization, Site), ids, strict=True)
            )
            purchase = factories.make_purchase(
                o, p, s, s_site, amount="10.00", purchased_on=date(2026, 2, 2)
            )
            ledger.sync_purchase(purchase.id)
            db.session.commit()

        def latest_size() -> int:
            db.session.remove()  # a fresh transaction: see what the thread committed
            latest = checkpoints.latest_checkpoint()
            return -1 if latest is None else latest.size

        buy()
        try:
            assert app.test_client().get("/healthz").status_code == 200
            assert runner.thread is not None and runner.thread.is_alive()
            _wait_for(lambda: latest_size() == 1, "the first checkpoint")
            buy()
            buy()
            _wait_for(lambda: latest_size() == 3, "a checkpoint of the grown ledger")
        finally:
            runner.stop.set()
            runner.thread.join(timeout=10)
            db.session.remove()
        assert not runner.thread.is_alive()


def test_tests_and_rq_deployments_run_no_thread(database_url, redis_url):
    assert "embedded_jobs" not in make_test_app(database_url).extensions
    rq_app = make_test_app(
        database_url, REDIS_URL=redis_url, JOB_MODE="rq", EMBEDDED_PERIODIC_JOBS=True
    )
    assert "embedded_jobs" not in rq_app.extensions
