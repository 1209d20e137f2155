"""``flask seed-demo``: build a demo world to try the product or to benchmark it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from market.commands.progress import progress_bar
from market.errors import DomainError
from market.extensions import db
from market.i18n import say
from market.services.demo import DEMO_PASSWORD, DemoSummary, seed_demo
from search.current import search_backend


@click.command("seed-demo")
@click.option(
    "--size",
    type=click.IntRange(1, 1_000_000),
    default=300,
    show_default=True,
    help="Number of fictional suppliers (100000 for benchmarks).",
)
@click.option(
    "--seed", type=int, default=2026, show_default=True, help="Same seed, same demo world."
)
@click.option("--reset", is_flag=True, help="Delete the previous demo world first.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Build the demo in a new, empty database (the current one is kept) and say where.",
)
@click.option(
    "--password",
    default=DEMO_PASSWORD,
    show_default=True,
    help="Password of every demo user.",
)
@with_appcontext
def seed_demo_command(size: int, seed: int, reset: bool, fresh: bool, password: str) -> None:
    """Seed OEM plants, SIZE fictional suppliers, open demands and demo users."""
    if fresh and reset:
        raise click.UsageError("--fresh builds a new database: there is nothing to reset.")
    if fresh:
        where = _fresh_database()
        click.echo(where.message)
        if where.other_app is not None:  # PostgreSQL: the new database has its own engine
            with where.other_app.app_context():
                _seed_and_report(size, seed, reset, password)
            return
    _seed_and_report(size, seed, reset, password)


def _seed_and_report(size: int, seed: int, reset: bool, password: str) -> None:
    try:
        with progress_bar(size, "Seeding suppliers") as advance:
            summary = seed_demo(
                size=size, seed=seed, reset=reset, password=password, progress=advance
            )
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    _report(summary)


def _report(summary: DemoSummary) -> None:
    click.echo(
        say(
            "%(what)s in %(seconds)s s: %(oems)s OEMs with %(plants)s plants (locations "
            "approximate), %(suppliers)s suppliers with %(sites)s sites, %(capabilities)s "
            "capabilities, %(certifications)s certifications; %(demands)s demands.",
            what=say("Replaced the demo world") if summary.reset else say("Seeded a demo world"),
            seconds=f"{summary.seconds:.1f}",
            oems=summary.oems,
            plants=summary.plants,
            suppliers=summary.suppliers,
            sites=summary.sites,
            capabilities=summary.capabilities,
            certifications=summary.certifications,
            demands=summary.demands,
        )
    )
    click.echo(say("Demo users (password: %(password)s):", password=summary.password))
    for user in summary.users:
        where = f"  {user.organization}" if user.organization else ""
        click.echo(f"  {user.email:<22} {user.role.value:<9}{where}")
    # The database search backend (the embedded default) reads the tables themselves.
    if search_backend().name == "elasticsearch":
        click.echo(say("Nothing was sent to the search index: run `flask search reindex` next."))


@dataclass
class FreshDatabase:
    """Where ``--fresh`` built the demo's database, and the app to seed it with (PostgreSQL)."""

    message: str
    other_app: Flask | None = None


def _fresh_database() -> FreshDatabase:
    """A new, migrated database for the demo.

    SQLite (the embedded default): the current file is moved aside (kept, with a timestamp)
    and a new one is made in its place, so ``flask run`` serves the demo without any setting.
    PostgreSQL: a new database ``<name>_demo_<timestamp>`` on the same server; the command
    says which ``DATABASE_URL`` serves it (the configured database is left as it is).
    """
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise click.UsageError("--fresh needs a database file or server, not memory.")
        path = Path(url.database).resolve()
        db.session.remove()
        db.engine.dispose()  # no connection may keep the old file open
        kept = None
        if path.exists():
            kept = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
            path.rename(kept)
            for suffix in ("-wal", "-shm", "-journal"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(kept.with_name(kept.name + suffix))
        upgrade(directory=current_app.extensions["migrate"].directory)
        previous = f" (the previous one is kept as {kept})" if kept else ""
        return FreshDatabase(f"New demo database: {path}{previous}.")
    if url.get_backend_name() != "postgresql":
        raise click.UsageError(f"--fresh does not know how to make a {url.get_backend_name()}.")
    name = f"{url.database}_demo_{stamp}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    new_url = url.set(database=name)
    # The same settings as this app's, on the new database.
    settings = dict(current_app.config)
    settings["SQLALCHEMY_DATABASE_URI"] = new_url.render_as_string(hide_password=False)
    other = current_app.extensions["market.create_app"](**settings)
    with other.app_context():
        upgrade(directory=other.extensions["migrate"].directory)
    shown = new_url.render_as_string(hide_password=True)
    return FreshDatabase(
        f"New demo database: {shown} (serve it with DATABASE_URL set to it; the configured "
        "database is unchanged).",
        other_app=other,
    )
