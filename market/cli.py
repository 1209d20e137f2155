"""Command-line interface (``flask --app wsgi ...``)."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Each area registers its own command group here."""
    from market.commands.demo import seed_demo_command

    app.cli.add_command(seed_demo_command)
    from market.commands.demands import demands_cli

    app.cli.add_command(demands_cli)
    from market.commands.users import users_cli

    app.cli.add_command(users_cli)
    from market.commands.search import search_cli

    app.cli.add_command(search_cli)
    from market.commands.ledger import register_ledger_cli

    register_ledger_cli(app)  # policy, baselines, outbox, worker, scheduler
