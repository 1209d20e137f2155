"""The periodic jobs the scheduler registers, per configuration."""

from __future__ import annotations

import pytest

from tests.conftest import make_test_app
from workers.scheduler import build_scheduler

pytestmark = pytest.mark.redis


def _registered(app) -> dict[str, int]:
    with app.app_context():
        scheduler = build_scheduler(app, reconcile_every=45)
        return {job.func.__name__: job.interval for job in scheduler.get_jobs()}


def test_reconciliation_runs_only_when_elasticsearch_is_configured(database_url, redis_url):
    without_es = make_test_app(database_url, REDIS_URL=redis_url, JOB_MODE="rq")
    assert set(_registered(without_es)) == {
        "sweep_outbox",
        "warn_expiring_certifications",
        "refresh_performance_job",
        "issue_checkpoint_job",
    }

    with_es = make_test_app(
        database_url,
        REDIS_URL=redis_url,
        JOB_MODE="rq",
        ELASTICSEARCH_URL="http://127.0.0.1:9200",
    )
    jobs = _registered(with_es)
    assert jobs["reconcile_job"] == 45
    assert jobs["sweep_outbox"] == 5
    assert jobs["issue_checkpoint_job"] == 300


def test_the_scheduler_refuses_to_run_without_redis(database_url):
    app = make_test_app(database_url)
    with app.app_context(), pytest.raises(RuntimeError, match="REDIS_URL"):
        build_scheduler(app)
