"""The registries an operator keeps: ``loa keys``, ``agencies`` and ``channels`` (limits).

Each command loads the settings and calls the registry's own function
(:mod:`streams.ingest.agency_service`, :mod:`streams.fanout.limits`); read-only commands create
nothing."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from streams.cli.context import command_settings
from streams.cli.kit import emit_json, json_option
from streams.errors import InvalidAgency
from streams.fanout.limits import lift_limit, limit_value, read_limits, set_limit
from streams.ingest.agencies import AgencyRegistry
from streams.ingest.agency_service import load_agencies, read_agencies, remove_agencies
from streams.ingest.signatures import new_key_pair, write_key_pair
from streams.kafkaio.clients import create_topics, require_topics
from streams.records import CHANNELS


@click.group()
def keys() -> None:
    """Agency signing keys (Ed25519)."""


@keys.command("new")
@click.option("--agency", required=True, help="Agency id (the CAP sender) the key is for.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".loa/keys"),
    show_default=True,
    help="Directory for the key files.",
)
@click.option("--key-id", default=None, help="Key id (default: <agency>/<UTC date>-<random>).")
def keys_new(agency: str, out_dir: Path, key_id: str | None) -> None:
    """Make a key pair: <out>/<kid>.key (private, 0600) and <out>/<kid>.pub.json (public).

    Register the public key with `loa agencies load --key <out>/<kid>.pub.json`, or paste the
    printed snippet into the agency's file under deploy/agencies/ to make it permanent.
    """
    kid = key_id or f"{agency}/{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    pair = new_key_pair(agency, kid)
    try:
        private_path, public_path = write_key_pair(pair, out_dir)
    except FileExistsError as exc:
        raise click.UsageError(f"{exc.filename} exists: choose another --key-id") from None
    click.echo(f"private key  {private_path} (keep it secret; never commit it)")
    click.echo(f"public key   {public_path}")
    click.echo(f"key id       {kid}")
    click.echo(f"public       {pair.public_key_b64}")
    click.echo('snippet for the agency file ("keys"):')
    click.echo(orjson.dumps({kid: pair.public_key_b64}, option=orjson.OPT_INDENT_2).decode())


@click.group()
def agencies() -> None:
    """The agency registry (compacted topic <prefix>.agencies; workers follow it live)."""


@agencies.command("load")
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False, default=None)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .pub.json from `loa keys new` to add to its agency (repeatable).",
)
def agencies_load(path: Path | None, key_files: tuple[Path, ...]) -> None:
    """Validate and write agency files (a file or a directory of *.json; default
    LOA_AGENCIES_DIR) to the registry topic. Each agency's record is replaced as a whole."""
    settings = command_settings()
    source = path or Path(settings.resolved_agencies_dir)

    async def run() -> list[str]:
        await create_topics(settings)
        loaded = await load_agencies(settings, source, key_files=key_files)
        return [f"{a.id} ({len(a.keys)} keys)" for a in loaded]

    try:
        names = asyncio.run(run())
    except InvalidAgency as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"loaded {len(names)} agencies into {settings.agencies_topic}: {', '.join(names)}")


@agencies.command("topic")
@click.argument("agency_ids", nargs=-1, required=True)
def agencies_topic(agency_ids: tuple[str, ...]) -> None:
    """Print the decision topic of each agency (what its ACL must let it read): ingest copies
    every decision on an agency's alerts there, and `loa publish` reads it."""
    settings = command_settings()
    for agency_id in agency_ids:
        click.echo(settings.decisions_topic(agency_id))


@agencies.command("remove")
@click.argument("agency_ids", nargs=-1, required=True)
def agencies_remove(agency_ids: tuple[str, ...]) -> None:
    """Remove agencies (tombstones): their alerts are rejected as unknown_sender from now on."""
    settings = command_settings()

    async def run() -> int:
        await create_topics(settings)
        return await remove_agencies(settings, agency_ids)

    click.echo(f"removed {asyncio.run(run())} agencies from {settings.agencies_topic}")


@agencies.command("list")
@json_option
def agencies_list(as_json: bool) -> None:
    """Print the registry as the topic holds it now."""
    settings = command_settings()

    async def run() -> AgencyRegistry:
        await require_topics(settings)  # read-only: never creates a topic
        return await read_agencies(settings)

    registry = asyncio.run(run())
    if as_json:
        emit_json(
            {
                "agencies": [
                    {
                        "id": a.id,
                        "jurisdiction": list(a.jurisdiction),
                        "allowed_statuses": list(a.allowed_statuses),
                        "max_severity": a.max_severity,
                        "keys": sorted(a.keys),
                        "amends": [g.to_doc() for g in a.amends],
                    }
                    for a in sorted(registry.agencies.values(), key=lambda a: a.id)
                ],
                "invalid": dict(sorted(registry.invalid.items())),
            }
        )
        return
    for agency in sorted(registry.agencies.values(), key=lambda a: a.id):
        click.echo(
            f"{agency.id}  jurisdiction={','.join(agency.jurisdiction)} "
            f"statuses={','.join(agency.allowed_statuses)} max_severity={agency.max_severity} "
            f"keys={','.join(agency.keys) or '-'} "
            f"amends={'; '.join(g.describe() for g in agency.amends) or 'own lineages only'}"
        )
    for agency_id, why in sorted(registry.invalid.items()):
        click.echo(f"{agency_id}  INVALID: {why}")


@click.group()
def channels() -> None:
    """Cluster-wide channel rate limits (compacted topic <prefix>.channels; workers follow it)."""


@channels.command("list")
@json_option
def channels_list(as_json: bool) -> None:
    """Each channel's limit in tasks/s across the cluster ("unlimited" when none is set)."""
    settings = command_settings()

    async def run() -> dict[str, float | None]:
        await require_topics(settings)  # read-only: never creates a topic
        return await read_limits(settings)

    limits = asyncio.run(run())
    if as_json:
        emit_json({"channels": limits})
        return
    for name, rate in limits.items():
        click.echo(f"{name:<8} {'unlimited' if rate is None else f'{rate:g} tasks/s'}")


@channels.command("set")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("rate", type=click.FloatRange(min=0.0, max=1e9))
def channels_set(channel: str, rate: float) -> None:
    """Limit CHANNEL to RATE tasks/s across the cluster (0 pauses it)."""
    try:
        limit_value(rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    settings = command_settings()

    async def run() -> None:
        await create_topics(settings)
        await set_limit(settings, channel, rate)

    asyncio.run(run())
    click.echo(f"{channel}: limited to {rate:g} tasks/s across the cluster")


@channels.command("lift")
@click.argument("channel", type=click.Choice(CHANNELS))
def channels_lift(channel: str) -> None:
    """Remove CHANNEL's limit."""
    settings = command_settings()

    async def run() -> None:
        await create_topics(settings)
        await lift_limit(settings, channel)

    asyncio.run(run())
    click.echo(f"{channel}: unlimited")
