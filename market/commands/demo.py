"""``flask seed-demo``: build a demo world to try the product or to benchmark it."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from market.errors import DomainError
from market.services.demo import DEMO_PASSWORD, seed_demo


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
    "--password",
    default=DEMO_PASSWORD,
    show_default=True,
    help="Password of every demo user.",
)
@with_appcontext
def seed_demo_command(size: int, seed: int, reset: bool, password: str) -> None:
    """Seed OEM plants, SIZE fictional suppliers, open demands and demo users."""
    try:
        with click.progressbar(length=size, label="Suppliers") as bar:
            summary = seed_demo(
                size=size, seed=seed, reset=reset, password=password, progress=bar.update
            )
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"{'Replaced the demo world' if summary.reset else 'Seeded a demo world'} "
        f"in {summary.seconds:.1f} s: {summary.oems} OEMs with {summary.plants} plants "
        "(locations approximate), "
        f"{summary.suppliers} suppliers with {summary.sites} sites, "
        f"{summary.capabilities} capabilities, {summary.certifications} certifications; "
        f"{summary.demands} demands."
    )
    click.echo(f"Demo users (password: {summary.password}):")
    for user in summary.users:
        where = f"  {user.organization}" if user.organization else ""
        click.echo(f"  {user.email:<22} {user.role.value:<9}{where}")
    click.echo("Nothing was sent to the search index: run `flask search reindex` next.")
