"""The ledger's commands: ``flask policy``, ``flask baselines``, ``flask outbox``, and the
background processes ``flask worker`` and ``flask scheduler``.

Run the background side of a production deployment with::

    flask --app wsgi worker        # as many as needed (each serves periodic, then default)
    flask --app wsgi scheduler     # exactly one: enqueues the sweeper and the expiry checks
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, NoReturn

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from marshmallow import ValidationError

from market.errors import DomainError
from market.i18n import say
from market.models import OutboxStatus
from market.schemas.ledger import BaselineCreateSchema, PolicyCreateSchema
from market.services import policies
from workers import outbox
from workers.queue import QUEUES

policy_cli = AppGroup("policy", help="Subsidy policy versions (a change is a new version).")
baselines_cli = AppGroup("baselines", help="Declared baselines of OEMs for past years.")
outbox_cli = AppGroup("outbox", help="The outbox: pending and dead work, the sweeper.")


def _fail(error: DomainError) -> NoReturn:
    details = "; ".join(
        f"{name}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
        for name, messages in (error.fields or {}).items()
    )
    raise click.ClickException(f"{error.message} {details}".strip())


def _load(schema: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Validate console input with the API's own schema (same rules, same messages)."""
    try:
        return dict(schema.load(values))
    except ValidationError as exc:
        _fail(DomainError("Invalid values.", fields=exc.normalized_messages()))


@policy_cli.command("list")
def policy_list() -> None:
    """List policy versions: version, range, province, km, rate, annual cap."""
    for p in policies.policy_list():
        until = p.effective_until.isoformat() if p.effective_until else "open"
        click.echo(
            f"v{p.version}\t{p.effective_from.isoformat()}..{until}\tprefix={p.province_prefix}"
            f"\tmax_km={p.max_distance_km}\trate={p.rate}\tcap={p.annual_cap}\t{p.note or ''}"
        )


@policy_cli.command("add")
@click.option("--from", "effective_from", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--until", "effective_until", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--prefix", "province_prefix", default="44", show_default=True)
# Decimals stay text: the schema reads them exactly, as it does the API's decimal strings.
@click.option("--max-km", "max_distance_km", required=True)
@click.option("--rate", required=True, help="e.g. 0.01 for 1%")
@click.option("--cap", "annual_cap", required=True, help="CNY per OEM-year")
@click.option("--note", default=None)
def policy_add(
    effective_from: datetime,
    effective_until: datetime | None,
    **values: Any,
) -> None:
    """Add the next policy version, in force from --from (never retroactive)."""
    data = _load(
        PolicyCreateSchema(),
        {
            "effective_from": effective_from.date().isoformat(),
            "effective_until": effective_until.date().isoformat() if effective_until else None,
            **values,
        },
    )
    try:
        policy = policies.policy_add(data, by=None)
    except DomainError as exc:
        _fail(exc)
    click.echo(
        say(
            "Added policy v%(version)s from %(start)s.",
            version=policy.version,
            start=policy.effective_from.isoformat(),
        )
    )


@baselines_cli.command("declare")
@click.option("--oem", "oem_org_id", required=True, type=int, help="The OEM's organization id.")
@click.option("--year", required=True, type=int, help="The past year whose total this is.")
@click.option("--amount", required=True, help="Near-shore total, CNY.")
@click.option("--note", default=None)
def baselines_declare(**values: Any) -> None:
    """Declare an OEM's near-shore total of a year (the baseline of the year after)."""
    data = _load(BaselineCreateSchema(), values)
    try:
        baseline = policies.baseline_declare(data, by=None)
    except DomainError as exc:
        _fail(exc)
    click.echo(
        say(
            "Declared %(amount)s for OEM %(oem)s in %(year)s (the baseline of %(next)s).",
            amount=baseline.amount,
            oem=baseline.oem_org_id,
            year=baseline.year,
            next=baseline.year + 1,
        )
    )


@baselines_cli.command("list")
@click.option("--oem", "oem_org_id", type=int, default=None)
@click.option("--year", type=int, default=None)
def baselines_list(oem_org_id: int | None, year: int | None) -> None:
    """List declared baselines: OEM, year, amount, note."""
    for b in policies.baseline_list(oem_org_id=oem_org_id, year=year):
        click.echo(f"oem={b.oem_org_id}\t{b.year}\t{b.amount}\t{b.note or ''}")


@baselines_cli.command("settle")
def baselines_settle() -> None:
    """Bring every (OEM, year) of the ledger to the v2 rule with adjustment entries (after
    migration 0009: the positions written under v1 are settled in the open, in the chain)."""
    from sqlalchemy import select

    from market.extensions import db
    from market.ledger import acquire_ledger_lock, settle_year
    from market.models import LedgerEntry
    from market.services.unit_of_work import commit

    acquire_ledger_lock()
    keys = db.session.execute(
        select(LedgerEntry.oem_org_id, LedgerEntry.year).distinct().order_by("oem_org_id", "year")
    ).all()
    appended = [seq for oem, year in keys for seq in settle_year(oem, year)]
    commit()
    click.echo(
        say(
            "%(positions)s (OEM, year) positions checked; %(appended)s adjustments appended.",
            positions=len(keys),
            appended=len(appended),
        )
    )


@outbox_cli.command("list")
@click.option(
    "--status",
    "statuses",
    type=click.Choice([s.value for s in OutboxStatus]),
    multiple=True,
    help="Repeatable; default: dead and pending.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def outbox_list(statuses: tuple[str, ...], limit: int) -> None:
    """List outbox rows (dead and pending by default), oldest first, with their last error."""
    wanted = [OutboxStatus(s) for s in statuses] or [OutboxStatus.DEAD, OutboxStatus.PENDING]
    counts = outbox.outbox_counts()
    click.echo("  ".join(f"{name}={count}" for name, count in counts.items()))
    for event in outbox.outbox_page(wanted, None, 1, limit).items:
        row = outbox.describe(event)
        error = row["last_error"] or ""
        click.echo(
            f"{row['id']}\t{row['status']}\t{row['topic']}\t{row['aggregate_id']}"
            f"\tattempts={row['attempts']}\t{row['created_at']:%Y-%m-%dT%H:%M:%SZ}\t{error}"
        )


@outbox_cli.command("sweep")
@click.option(
    "--via-worker", is_flag=True, help="Enqueue a sweep job instead of sweeping in this process."
)
def outbox_sweep(via_worker: bool) -> None:
    """Re-enqueue rows pending for longer than OUTBOX_STALE_SECONDS (inline mode: run them)."""
    if via_worker:
        ok = outbox.enqueue_sweep()
        click.echo(say("Sweep enqueued.") if ok else say("Could not enqueue (is Redis up?)."))
        return
    report = outbox.sweep_outbox()
    click.echo("  ".join(f"{name}={value}" for name, value in report.items()))


@outbox_cli.command("retry-dead")
@click.option("--id", "event_ids", type=int, multiple=True, help="Repeatable; default: all dead.")
def outbox_retry_dead(event_ids: tuple[int, ...]) -> None:
    """Put dead rows back to pending (attempts reset) and enqueue them."""
    ids = outbox.retry_dead(list(event_ids) or None)
    click.echo(
        say("Retried %(count)s row(s).", count=len(ids))
        + (f" {', '.join(map(str, ids))}" if ids else "")
    )


@click.command("worker")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(list(QUEUES)),
    help=f"Repeatable; default: {', '.join(QUEUES)} (in that order).",
)
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Also move due delayed jobs (retries) to their queues.",
)
@click.option("--max-jobs", type=click.IntRange(1), default=None)
def worker_command(
    queues: tuple[str, ...], burst: bool, scheduler: bool, max_jobs: int | None
) -> None:
    """Run an RQ worker on the app's queues (needs REDIS_URL)."""
    from workers.worker import run_worker

    try:
        run_worker(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            queues=queues or QUEUES,
            burst=burst,
            with_scheduler=scheduler,
            max_jobs=max_jobs,
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("scheduler")
@click.option("--sweep-every", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--certifications-every", type=click.IntRange(60), default=6 * 3600, show_default=True
)
@click.option(
    "--reconcile-every",
    type=click.IntRange(5),
    default=30,
    show_default=True,
    help="Seconds between search index reconciliations (Elasticsearch only).",
)
def scheduler_command(sweep_every: int, certifications_every: int, reconcile_every: int) -> None:
    """Run RQ's cron scheduler: outbox sweep, certification expiry, search reconciliation.

    Without Redis (the embedded default, jobs inline) it runs the embedded default's periodic
    jobs itself, in the foreground (workers/embedded.py), at the EMBEDDED_* intervals.
    """
    from workers.scheduler import run_scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["JOB_MODE"] == "inline":
        from workers.embedded import EmbeddedJobs, embedded_jobs

        click.echo("no Redis: running the periodic jobs here, inline (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            EmbeddedJobs(app, embedded_jobs(app)).run_forever()
        return

    try:
        run_scheduler(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            sweep_every=sweep_every,
            certifications_every=certifications_every,
            reconcile_every=reconcile_every,
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


def register_ledger_cli(app: Flask) -> None:
    for command in (policy_cli, baselines_cli, outbox_cli, worker_command, scheduler_command):
        app.cli.add_command(command)
