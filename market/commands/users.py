"""``flask users ...``: staff accounts. Auditors and admins exist only through these commands."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from flask.cli import AppGroup

from market.errors import DomainError
from market.i18n import say
from market.models import Authority, Role
from market.services import accounts, authorities

users_cli = AppGroup(
    "users",
    help="Staff accounts (auditors, admins), authorities and their jurisdictions, user "
    "administration.",
)

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
    "--authority",
    "authority_name",
    default=None,
    help="Auditors: the authority they work for (see authority-list).",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def create(
    email: str,
    role: str,
    display_name: str | None,
    authority_name: str | None,
    password_stdin: bool,
) -> None:
    """Create an auditor (of an authority) or an admin account."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.staff_user_create(email, Role(role), password, display_name, authority_name)
    except DomainError as exc:
        _fail(exc)
    click.echo(
        say(
            "Created %(role)s %(email)s (id %(id)s).",
            role=user.role.value,
            email=user.email,
            id=user.id,
        )
    )


@users_cli.command("list")
@click.option("--role", "role", type=_ANY_ROLE, default=None, help="Only users of this role.")
def list_users(role: str | None) -> None:
    """List users: id, role, status, organization (and org role) or authority, email."""
    for user in accounts.users_list(Role(role) if role else None):
        if user.removed_at is not None:
            status = "removed"
        else:
            status = "disabled" if user.disabled else ("active" if user.is_active else "suspended")
        if user.organization_id is not None:
            where = f"org={user.organization_id}:{user.org_role.value if user.org_role else '-'}"
        else:
            where = f"authority={user.authority_id if user.authority_id is not None else '-'}"
        click.echo(f"{user.id}\t{user.role.value}\t{status}\t{where}\t{user.email}")


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


# --- authorities and jurisdictions --------------------------------------------------------------


def _codes(value: str) -> list[str]:
    return [code.strip() for code in value.split(",") if code.strip()]


def _jurisdiction(authority: Authority) -> str:
    return ",".join(authority.city_codes)


@users_cli.command("authority-create")
@click.argument("name")
@click.option(
    "--city-codes",
    required=True,
    help="Comma-separated GB/T 2260 codes: 44 for the province, or city codes like 440100.",
)
def authority_create(name: str, city_codes: str) -> None:
    """Create an authority with its jurisdiction."""
    try:
        authority = authorities.authority_create(name, _codes(city_codes))
    except DomainError as exc:
        _fail(exc)
    click.echo(
        f"created authority {authority.name} (id {authority.id}): {_jurisdiction(authority)}"
    )


@users_cli.command("authority-list")
def authority_list() -> None:
    """List authorities: id, name, jurisdiction, number of auditors."""
    for authority in authorities.authority_list():
        click.echo(
            f"{authority.id}\t{authority.name}\t{_jurisdiction(authority)}"
            f"\tauditors={len(authority.auditors)}"
        )


@users_cli.command("authority-set")
@click.argument("name")
@click.option("--city-codes", default=None, help="The new jurisdiction (comma-separated codes).")
@click.option("--rename", default=None, help="A new name for the authority.")
def authority_set(name: str, city_codes: str | None, rename: str | None) -> None:
    """Change an authority's jurisdiction or name; its auditors see the change at once."""
    try:
        authority = authorities.authority_by_name(name)
        authority = authorities.authority_update(
            authority.id,
            name=rename,
            city_codes=_codes(city_codes) if city_codes is not None else None,
        )
    except DomainError as exc:
        _fail(exc)
    click.echo(f"authority {authority.name}: {_jurisdiction(authority)}")


@users_cli.command("set-authority")
@click.argument("email")
@click.argument("authority_name")
def set_authority(email: str, authority_name: str) -> None:
    """Attach an auditor to an authority (moving them from another)."""
    try:
        user = accounts.user_by_email(email)
        authority = authorities.authority_by_name(authority_name)
        authorities.auditor_attach(authority.id, user.id)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"{user.email} audits for {authority.name}: {_jurisdiction(authority)}")
