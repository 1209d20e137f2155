"""``flask users ...``: staff accounts. Auditors and admins exist only through these commands."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from flask.cli import AppGroup

from market.errors import DomainError
from market.models import Role
from market.services import accounts

users_cli = AppGroup("users", help="Staff accounts (auditors, admins) and user administration.")

_STAFF = click.Choice([Role.AUDITOR.value, Role.ADMIN.value])
_ANY_ROLE = click.Choice([role.value for role in Role])


def _fail(error: DomainError) -> NoReturn:
    details = "; ".join(
        f"{name}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
        for name, messages in (error.fields or {}).items()
    )
    raise click.ClickException(f"{error.message} {details}".strip())


@users_cli.command("create")
@click.option("--email", required=True, help="The sign-in address.")
@click.option("--role", "role", type=_STAFF, required=True, help="auditor or admin.")
@click.option("--display-name", default=None, help="Optional name shown in the UI.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def create(email: str, role: str, display_name: str | None, password_stdin: bool) -> None:
    """Create an auditor or admin account."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.staff_user_create(email, Role(role), password, display_name)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"created {user.role.value} {user.email} (id {user.id})")


@users_cli.command("list")
@click.option("--role", "role", type=_ANY_ROLE, default=None, help="Only users of this role.")
def list_users(role: str | None) -> None:
    """List users: id, role, status, organization, email."""
    for user in accounts.users_list(Role(role) if role else None):
        status = "disabled" if user.disabled else ("active" if user.is_active else "suspended")
        org = user.organization_id if user.organization_id is not None else "-"
        click.echo(f"{user.id}\t{user.role.value}\t{status}\torg={org}\t{user.email}")


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=_ANY_ROLE)
def set_role(email: str, role: str) -> None:
    """Change a user's role (it must fit the user's organization); their sessions end."""
    try:
        user = accounts.staff_user_set_role(email, Role(role))
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{user.email} is now {user.role.value}")


@users_cli.command("disable")
@click.argument("email")
def disable(email: str) -> None:
    """Disable a user: sessions end and API tokens are revoked."""
    try:
        user = accounts.staff_user_disable(email)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"disabled {user.email}")
