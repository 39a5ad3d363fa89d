"""``loa console`` (the agency console's web process and its users) and ``loa audit``.

Thin: load the settings, check them, call :mod:`streams.console`. Passwords come from
``--password-file`` or a prompt, never from the command line (argv is visible to every user of
the machine)."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import click

from streams.cli.context import command_settings, configure_logging
from streams.cli.kit import emit_json, json_option
from streams.console import check_settings, serve
from streams.console.audit import AuditEvent, read_audit
from streams.console.users import (
    USER_NAME,
    Role,
    User,
    hash_password,
    read_users,
    write_users,
)
from streams.ingest.agency_service import read_agencies
from streams.kafkaio.clients import create_topics, require_topics
from streams.settings.model import Settings

_ROLES = click.Choice([r.value for r in Role])


@click.group(invoke_without_command=True)
@click.pass_context
def console(ctx: click.Context) -> None:
    """Serve the agency console (web page and /api/ on LOA_CONSOLE_HOST:PORT; docs/console.md).

    `loa console users ...` manages its users."""
    if ctx.invoked_subcommand is not None:
        return
    settings = command_settings()
    try:
        check_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings)
    asyncio.run(serve(settings))


@console.group()
def users() -> None:
    """Console users (compacted topic <prefix>.console.users)."""


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        text = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        text = click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        return hash_password(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="password") from None


async def _existing(settings: Settings) -> dict[str, User]:
    await create_topics(settings)
    return await read_users(settings)


@users.command("add")
@click.option("--agency", required=True, help="The agency id (must be in the agency registry).")
@click.option("--user", "name", required=True, help="User name (letters, digits, . _ @ -).")
@click.option("--role", "roles", multiple=True, required=True, type=_ROLES, help="Repeatable.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the password from this file (else prompted; never on the command line).",
)
def users_add(
    agency: str, name: str, roles: tuple[str, ...], lang: str, password_file: Path | None
) -> None:
    """Add a user (or replace one: its password, roles and agency)."""
    if not USER_NAME.fullmatch(name):
        raise click.BadParameter(
            "letters, digits and . _ @ - only, at most 64", param_hint="--user"
        )
    settings = command_settings()
    digest = _password(password_file)

    async def run() -> None:
        await create_topics(settings)
        registry = await read_agencies(settings)
        if agency not in registry:
            raise click.BadParameter(
                f"{agency} is not in the agency registry (`loa agencies list`)",
                param_hint="--agency",
            )
        user = User(name, agency, tuple(Role(r) for r in dict.fromkeys(roles)), digest, lang=lang)
        await write_users(settings, [user])

    asyncio.run(run())
    click.echo(f"{name}: {agency}, roles {', '.join(dict.fromkeys(roles))}")


@users.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """Print the users (never their hashes)."""
    settings = command_settings()

    async def run() -> dict[str, User]:
        await require_topics(settings)
        return await read_users(settings)

    found = asyncio.run(run())
    if as_json:
        emit_json({"users": [u.public() for _, u in sorted(found.items())]})
        return
    for name, user in sorted(found.items()):
        state = " DISABLED" if user.disabled else ""
        roles = ",".join(r.value for r in user.roles)
        click.echo(f"{name}  agency={user.agency} roles={roles} lang={user.lang}{state}")


def _change(name: str, **changes: object) -> User:
    settings = command_settings()

    async def run() -> User:
        found = await _existing(settings)
        if name not in found:
            raise click.BadParameter(f"no console user {name}", param_hint="USER")
        current = found[name]
        user = User(
            current.name,
            current.agency,
            changes.get("roles", current.roles),  # type: ignore[arg-type]
            current.password_hash,
            bool(changes.get("disabled", current.disabled)),
            current.lang,
            datetime.now(UTC).isoformat(),
        )
        await write_users(settings, [user])
        return user

    return asyncio.run(run())


@users.command("disable")
@click.argument("name", metavar="USER")
def users_disable(name: str) -> None:
    """Disable USER: their sessions end at their next request, logins are refused."""
    _change(name, disabled=True)
    click.echo(f"{name}: disabled")


@users.command("enable")
@click.argument("name", metavar="USER")
def users_enable(name: str) -> None:
    """Enable USER again."""
    _change(name, disabled=False)
    click.echo(f"{name}: enabled")


@users.command("roles")
@click.argument("name", metavar="USER")
@click.option("--role", "roles", multiple=True, required=True, type=_ROLES, help="Repeatable.")
def users_roles(name: str, roles: tuple[str, ...]) -> None:
    """Replace USER's roles."""
    _change(name, roles=tuple(Role(r) for r in dict.fromkeys(roles)))
    click.echo(f"{name}: roles {', '.join(dict.fromkeys(roles))}")


@click.command()
@click.option("--agency", default=None, help="Only this agency's actions.")
@click.option("--since", default=None, help="Only actions at or after this ISO time (UTC).")
@json_option
def audit(agency: str | None, since: str | None, as_json: bool) -> None:
    """Print the console's audit trail (topic <prefix>.console.audit), oldest first."""
    settings = command_settings()
    if since is not None:
        try:
            since = datetime.fromisoformat(since).astimezone(UTC).isoformat()
        except ValueError:
            raise click.BadParameter("an ISO 8601 time", param_hint="--since") from None

    async def run() -> list[AuditEvent]:
        await require_topics(settings)
        return [e async for e in read_audit(settings, agency=agency) if e.time >= (since or "")]

    events = asyncio.run(run())
    if as_json:
        emit_json({"events": [_doc(e) for e in events]})
        return
    for e in events:
        ids = " ".join(f"{k}={v}" for k, v in (("draft", e.draft_id), ("alert", e.alert_id)) if v)
        detail = f" ({e.detail})" if e.detail else ""
        click.echo(
            f"{e.time} {e.agency or '-'} {e.user or '-'} {e.action} {e.outcome} {ids}{detail}"
        )


def _doc(event: AuditEvent) -> dict[str, str]:
    return {f.name: getattr(event, f.name) for f in fields(AuditEvent)}
