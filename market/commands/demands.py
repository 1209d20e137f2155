"""``flask demands ...``: housekeeping of demands."""

from __future__ import annotations

from datetime import date, datetime

import click
from flask.cli import AppGroup

from market.clock import business_today as today
from market.i18n import say
from market.services.demands import close_expired_demands

demands_cli = AppGroup("demands", help="Demands (RFQs) housekeeping.")


@demands_cli.command("close-expired")
@click.option(
    "--today",
    "on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Close open demands whose need_by is before this date (default: today).",
)
def close_expired(on: datetime | None) -> None:
    """Close every open demand whose need_by has passed."""
    day: date = on.date() if on else today()
    closed = close_expired_demands(day)
    click.echo(
        say(
            "Closed %(count)s expired demand(s) (need_by before %(day)s).",
            count=closed,
            day=day.isoformat(),
        )
    )
