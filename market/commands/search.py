"""``flask search ...``: rebuild the index, show its state, catch up on pending syncs."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from market.commands.progress import progress_bar
from market.extensions import db
from market.i18n import say
from market.models import OutboxEvent, OutboxStatus, OutboxTopic
from search.current import search_backend
from search.elastic import ElasticsearchBackend
from search.reindex import reindex, retokenize, supplier_count
from search.sync import reconcile, sync_pending

search_cli = AppGroup("search", help="The supplier search index.")


def _elasticsearch() -> ElasticsearchBackend | None:
    backend = search_backend()
    if isinstance(backend, ElasticsearchBackend):
        return backend
    click.echo(
        say("The database search backend is in use (ELASTICSEARCH_URL is not set): no index.")
    )
    return None


@search_cli.command("reindex")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 5000))
def reindex_command(batch_size: int) -> None:
    """Build a new index from the database and swap the alias to it (no downtime)."""
    backend = _elasticsearch()
    if backend is None:
        return
    total = supplier_count()
    with progress_bar(total, "Indexing suppliers") as advance:
        result = reindex(backend, batch_size=batch_size, progress=advance)
    click.echo(
        say(
            "%(count)s suppliers indexed into %(index)s (alias %(alias)s); %(caught_up)s caught "
            "up; removed: %(removed)s",
            count=result.indexed,
            index=result.index,
            alias=backend.alias,
            caught_up=result.caught_up,
            removed=", ".join(result.removed_indices) or say("nothing"),
        )
    )


@search_cli.command("status")
def status_command() -> None:
    """Backend, alias, document counts, stale documents and the outbox backlog."""
    backend = search_backend()
    counts = dict(
        db.session.execute(
            select(OutboxEvent.status, func.count(OutboxEvent.id))
            .where(OutboxEvent.topic == OutboxTopic.SEARCH_SYNC)
            .group_by(OutboxEvent.status)
        ).all()
    )
    click.echo(f"backend: {backend.name} ({backend.health()['status']})")
    click.echo(f"suppliers in the database: {supplier_count()}")
    click.echo(
        f"search.sync outbox rows: {counts.get(OutboxStatus.PENDING, 0)} pending, "
        f"{counts.get(OutboxStatus.DEAD, 0)} dead"
    )
    if isinstance(backend, ElasticsearchBackend):
        targets = backend.alias_targets()
        click.echo(f"alias {backend.alias} → {', '.join(targets) or 'missing'}")
        if targets:
            report = reconcile(backend, dry_run=True)
            click.echo(f"documents: {report.indexed}; stale or missing: {len(report.stale)}")
            if report.ahead:
                click.echo(
                    f"{len(report.ahead)} documents are newer than the database "
                    "(restored database?): run `flask search reindex`."
                )


@search_cli.command("sync-pending")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--reconcile", "full", is_flag=True, help="Also compare every (id, version) with the index."
)
def sync_pending_command(limit: int, full: bool) -> None:
    """Write the suppliers of pending search.sync rows in one bulk request."""
    report = sync_pending(limit=limit)
    click.echo(f"{report.rows} rows, {report.suppliers} suppliers, {len(report.failed)} failed")
    if full:
        checked = reconcile()
        click.echo(
            f"reconcile: {len(checked.stale)} stale, {len(checked.extra)} extra, "
            f"{len(checked.failed)} failed"
        )


@search_cli.command("retokenize")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10_000))
def retokenize_command(batch_size: int) -> None:
    """Recompute the stored search tokens (after a change of the segmenter's dictionary)."""
    result = retokenize(batch_size=batch_size)
    click.echo(
        f"search tokens changed: {result.organizations} organizations, {result.demands} demands"
    )
    if result.organizations and isinstance(search_backend(), ElasticsearchBackend):
        click.echo(say("Elasticsearch holds copies of them: run `flask search reindex`."))
