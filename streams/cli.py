"""``loa``: a thin CLI. Each command loads settings, sets up logging and runs one thing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from streams.clikit import LoaGroup, debug_option, emit_json, json_option, wants_json
from streams.errors import BadInputFile
from streams.progress import ProgressBar
from streams.records import CHANNELS
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.ingest import Rejected
    from streams.observe import Fate
    from streams.preview import Preview

KAFKA_SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "kafka.sh"


def _settings() -> Settings:
    """Strict settings (``streams.config``): ``--config``/``LOA_CONFIG`` file, then ``LOA_*``."""
    from streams.config import load_settings

    config = click.get_current_context().find_root().params.get("config_file")
    try:
        settings = load_settings(config_file=config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    os.environ.setdefault("LOA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)  # for errors
    from streams.clikit import SETTINGS_KEY

    click.get_current_context().meta[SETTINGS_KEY] = settings  # errors name the protocol
    return settings


def _logging(settings: Settings) -> None:
    from streams.logs import configure

    configure(settings.log_level, settings.log_format)  # LOA_LOG_FORMAT: text | json


@click.group(cls=LoaGroup)
@debug_option
@click.version_option(package_name="loa", prog_name="loa")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file (default: LOA_CONFIG); LOA_* variables override it.",
)
def main(config_file: Path | None) -> None:
    """Loa: emergency alert fan-out on Kafka.

    Exit codes: 0 done, 1 answer is no (rejected, not done), 2 usage, 3 not found, 4 broker
    unreachable, 5 not authorized, 6 topic missing, 7 bad input file, 70 bug (see --debug).
    """
    import logging

    # aiokafka logs every failed connection attempt; without a configured handler Python's
    # last-resort handler would print them above the one-line error. Configured logging
    # (worker, deliver, --debug) still receives them: a NullHandler does not stop propagation.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    if config_file is not None:  # processes Loa starts itself (demo, local runs) read it too
        os.environ["LOA_CONFIG"] = str(config_file.resolve())


@main.command("config")
@click.option(
    "--check",
    is_flag=True,
    help="Also open every file the settings name (password, CA, certificates, agencies, data "
    "directory) as this user; exit 78 naming the first that cannot be used.",
)
def show_config(check: bool) -> None:
    """Print the effective settings (file < environment; derived values resolved), secrets
    redacted."""
    from streams.config import check_files, describe

    settings = _settings()
    for line in describe(settings):
        click.echo(line)
    if check:
        for line in check_files(settings):
            click.echo(line)


@main.command()
def worker() -> None:
    """Run a worker (ingest, directory and fan-out agents)."""
    from streams.app import create_app
    from streams.metrics import check_port
    from streams.shutdown import LoaWorker

    settings = _settings()
    check_port(settings.metrics_host, settings.metrics_port)  # before anything connects
    settings = _checked_for_worker(settings)
    app = create_app(settings)
    from streams.logs import worker_logging_config

    LoaWorker(
        app,
        settings,
        loglevel=settings.log_level.lower(),
        quiet=True,
        logging_config=worker_logging_config(settings.log_level, settings.log_format),
    ).execute_from_commandline()


def _checked_for_worker(settings: Settings) -> Settings:
    """Refuse to start on topics the settings do not fit (:class:`TopicMissing`, exit 6, one
    line naming each topic); the cluster's replication for the topics the worker writes."""
    import dataclasses

    from streams.kafkaio.clients import checked_layout, topics_error

    states, rep = asyncio.run(checked_layout(settings))
    error = topics_error(states, lead="the worker does not start: ")
    if error is not None:
        raise error
    return dataclasses.replace(settings, replication_factor=rep.factor)


@main.command()
@click.argument("action", type=click.Choice(["start", "stop", "restart", "status", "fetch"]))
@click.option("--brokers", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--secure", is_flag=True, help="TLS + SASL/SCRAM + ACLs (with --brokers 3).")
def kafka(action: str, brokers: str, secure: bool) -> None:
    """Manage the local development broker (deploy/kafka/kafka.sh), or with --brokers 3
    --secure the secured replicated cluster (deploy/kafka/cluster.sh)."""
    if (brokers == "3") != secure:
        raise click.UsageError("the secured cluster has 3 brokers: give both --brokers 3 --secure")
    if secure and action in ("restart", "fetch"):
        raise click.UsageError(f"{action} is for the single dev broker")
    script = KAFKA_SCRIPT.with_name("cluster.sh") if secure else KAFKA_SCRIPT
    if not script.is_file():  # an installed wheel holds the package, not deploy/
        raise click.UsageError(
            f"loa kafka runs {script.name} of a repository checkout (deploy/kafka/), and this "
            f"installation has none ({script} not found): run it from a clone of the "
            "repository, or use your own broker (LOA_BOOTSTRAP_SERVERS)"
        )
    sys.exit(subprocess.call(["bash", str(script), action]))


@main.command("init")
@click.option(
    "--agencies",
    "agencies_dir",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Agency files to load (a file or a directory of *.json; default LOA_AGENCIES_DIR).",
)
@click.option("--no-agencies", is_flag=True, help="Do not load agencies.")
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Read-only: report the topics and exit 6 unless workers can start on them (a pod's "
    "init container waits with it until the init Job has run).",
)
@click.option(
    "--channel-limits",
    "limits_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML file of `channel = tasks per second` (negative: unlimited) to apply.",
)
def init(
    agencies_dir: Path | None, no_agencies: bool, check_only: bool, limits_file: Path | None
) -> None:
    """Bootstrap a cluster, idempotently: create the missing topics (the cluster's replication),
    grant the ACLs of the LOA_ACL_* principals where this principal may, load the agency
    registry and apply channel limits from files; print what it created, found and changed.
    Run it before the workers (compose: the `init` service; k8s: the `loa-init` Job).

    Exit status: 0 the cluster is ready for workers (also when the broker has no authorizer or
    this principal may not alter ACLs: the report says so); 6 a topic exists with other
    partitions or replication than the settings (named; nothing else is written); 4, 5, 7, 78
    as for every command (unreachable, not authorized, bad file, unusable configuration)."""
    from streams.bootstrap import read_channel_limits, run_init
    from streams.errors import InvalidAgency
    from streams.kafkaio.clients import topics_error

    settings = _settings()
    if check_only:
        _init_check(settings)
        return
    limits = read_channel_limits(limits_file) if limits_file is not None else None
    source = None if no_agencies else agencies_dir or Path(settings.resolved_agencies_dir)
    try:
        report = asyncio.run(run_init(settings, agencies_dir=source, channel_limits=limits))
    except InvalidAgency as exc:
        raise BadInputFile(exc.message) from None
    for line in report.lines():
        click.echo(line)
    error = topics_error(
        report.topics, lead="the cluster is not ready for workers: ", partitions_only=False
    )
    if error is not None:
        raise error


def _init_check(settings: Settings) -> None:
    from streams.kafkaio.clients import check_topics, topics_error

    states = asyncio.run(check_topics(settings))
    for state in states:
        click.echo(state.line())
    error = topics_error(states, lead="not ready for workers: ")
    if error is not None:
        raise error


@main.group()
def topics() -> None:
    """Loa's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic Loa uses (idempotent); report existing topics whose partitions or
    replication differ from the settings (exit code 1)."""
    from streams.kafkaio.clients import ensure_topics

    created, differing = asyncio.run(ensure_topics(_settings()))
    click.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    for line in differing:
        click.echo(f"differs from the settings: {line}", err=True)
    if differing:
        sys.exit(1)


@main.group()
def directory() -> None:
    """The subscriber directory."""


@directory.command("load")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--synthetic", "n", type=int, default=None, help="Number of synthetic subscribers.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default=None,
    help="File format (default: .csv is CSV, anything else JSON Lines).",
)
def directory_load(file: Path | None, n: int | None, seed: int, fmt: str | None) -> None:
    """Write subscribers from FILE (CSV or JSON Lines), or N synthetic ones, to
    loa.directory.changes. Bad rows are reported by line number and skipped; the exit code is
    1 if there were any (the good rows are loaded)."""
    from streams.directory.files import read_subscribers
    from streams.directory.load import write_changes
    from streams.directory.synthetic import synthetic_subscribers
    from streams.kafkaio.clients import create_topics
    from streams.regions import registry

    if (file is None) == (n is None):
        raise click.UsageError("give a FILE or --synthetic N (one of them)")
    settings = _settings()
    regions = registry()
    bad: list[tuple[int, str]] = []
    if file is not None:
        batch, bad, rows = read_subscribers(
            file, regions, h3_resolution=settings.h3_resolution, fmt=fmt
        )
        for line, reason in bad:
            click.echo(f"{file}:{line}: {reason} (skipped)", err=True)
        click.echo(f"read {rows:,} rows: {len(batch):,} good, {len(bad):,} bad", err=True)
    else:
        assert n is not None
        batch = synthetic_subscribers(n, seed, regions, h3_resolution=settings.h3_resolution)
    bar = ProgressBar("directory", len(batch.last_per_id()) if len(batch) else 0)

    async def run() -> int:
        await create_topics(settings)
        return await write_changes(settings, batch, regions, on_progress=bar.update)

    started = time.monotonic()
    written = asyncio.run(run())
    seconds = max(time.monotonic() - started, 1e-9)
    click.echo(f"loaded {written:,} subscribers in {seconds:.1f} s ({written / seconds:,.0f}/s)")
    if bad:
        click.echo(f"{len(bad):,} bad rows skipped", err=True)
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Private key file from `loa keys new`: sign the raw file bytes with it.",
)
@click.option("--key-id", default=None, help="Key id to send (default: the one in the key file).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Print ingest's decision.")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for it."
)
@json_option
def publish(
    file: Path, key_file: Path | None, key_id: str | None, wait: bool, timeout: float, as_json: bool
) -> None:
    """Send an alert file (CAP XML or Loa JSON) to loa.alerts.inbound and print what ingest
    decided. With --key the exact file bytes are signed (headers loa-signature, loa-key-id).

    Exit status: 0 accepted (no warnings) or duplicate; 8 accepted with warnings (empty
    audience, located only, partly outside, reach unknown: printed); 1 rejected (the code,
    pointer and every fault are printed); 7 not sent: the file or key cannot be read, or the file
    is not an alert at all (empty, not well-formed, too large, forbidden XML); 4 Kafka
    unreachable, or no decision came within --timeout (retry later); 5 not authorized; 2 a usage
    error. --no-wait exits 0 once the record is on the topic. --json prints one object, also on
    failure.
    """
    from streams.publish import publish_file

    settings = _settings()
    raw = _read_input(file, "alert file")
    key = None
    if key_file is not None:
        from streams.ingest.agencies import load_private_key

        try:
            key = load_private_key(_read_input(key_file, "key file"), key_id=key_id)
        except (ValueError, TypeError) as exc:
            raise BadInputFile(
                f"{key_file}: not a usable private key: {str(exc).splitlines()[0]}",
                hint="give the .key file `loa keys new` wrote",
            ) from None
    result = asyncio.run(publish_file(settings, raw, key, wait=wait, timeout_s=timeout))
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(result.json() if as_json else result.text())
    sys.exit(result.exit_code)


def _read_input(path: Path, what: str) -> bytes:
    """A file named on the command line; :class:`BadInputFile` (exit 7) naming it if unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputFile(f"{what} {path}: {exc.strerror}") from None


@main.command()
def gateway() -> None:
    """Serve the HTTP gateway for agencies: POST /v1/alerts, GET /v1/alerts/{id}
    (schemas/gateway.openapi.yaml; LOA_GATEWAY_* settings)."""
    from streams.gateway import check_settings, serve

    settings = _settings()
    try:
        check_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _logging(settings)
    asyncio.run(serve(settings))


@main.group()
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
    import secrets
    from datetime import UTC, datetime

    import orjson

    from streams.ingest.agencies import new_key_pair, write_key_pair

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


@main.group()
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
    from streams.errors import InvalidAgency
    from streams.ingest.agency_service import load_agencies
    from streams.kafkaio.clients import create_topics

    settings = _settings()
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
    settings = _settings()
    for agency_id in agency_ids:
        click.echo(settings.decisions_topic(agency_id))


@agencies.command("remove")
@click.argument("agency_ids", nargs=-1, required=True)
def agencies_remove(agency_ids: tuple[str, ...]) -> None:
    """Remove agencies (tombstones): their alerts are rejected as unknown_sender from now on."""
    from streams.ingest.agency_service import remove_agencies
    from streams.kafkaio.clients import create_topics

    settings = _settings()

    async def run() -> int:
        await create_topics(settings)
        return await remove_agencies(settings, agency_ids)

    click.echo(f"removed {asyncio.run(run())} agencies from {settings.agencies_topic}")


@agencies.command("list")
@json_option
def agencies_list(as_json: bool) -> None:
    """Print the registry as the topic holds it now."""
    from streams.ingest.agencies import AgencyRegistry
    from streams.ingest.agency_service import read_agencies
    from streams.kafkaio.clients import require_topics

    settings = _settings()

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


@main.group()
def channels() -> None:
    """Cluster-wide channel rate limits (compacted topic <prefix>.channels; workers follow it)."""


@channels.command("list")
@json_option
def channels_list(as_json: bool) -> None:
    """Each channel's limit in tasks/s across the cluster ("unlimited" when none is set)."""
    from streams.channels import read_limits
    from streams.kafkaio.clients import require_topics

    settings = _settings()

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
    from streams.channels import limit_value, set_limit
    from streams.kafkaio.clients import create_topics

    try:
        limit_value(rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    settings = _settings()

    async def run() -> None:
        await create_topics(settings)
        await set_limit(settings, channel, rate)

    asyncio.run(run())
    click.echo(f"{channel}: limited to {rate:g} tasks/s across the cluster")


@channels.command("lift")
@click.argument("channel", type=click.Choice(CHANNELS))
def channels_lift(channel: str) -> None:
    """Remove CHANNEL's limit."""
    from streams.channels import lift_limit
    from streams.kafkaio.clients import create_topics

    settings = _settings()

    async def run() -> None:
        await create_topics(settings)
        await lift_limit(settings, channel)

    asyncio.run(run())
    click.echo(f"{channel}: unlimited")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def preview(file: Path, as_json: bool) -> None:
    """Who FILE would reach, with which task (alert, update, cancel), by province and channel,
    judged against the live lifecycle state; sends nothing. Exit status 1 if it would be
    rejected."""
    from streams.ingest import Rejected
    from streams.preview import preview as run_preview
    from streams.regions import registry

    settings = _settings()
    _require_topics(settings)
    result = asyncio.run(run_preview(settings, file.read_bytes(), registry()))
    if as_json:
        emit_json(_preview_json(result))
        sys.exit(1 if isinstance(result, Rejected) else 0)
    if isinstance(result, Rejected):
        click.echo(
            f"would be rejected: code={result.code.value} pointer={result.pointer}: "
            f"{result.message}"
        )
        for problem in result.all_problems[1:]:
            click.echo(f"  also: {problem.message}")
        sys.exit(1)
    if result.duplicate:
        click.echo(
            f"duplicate: already accepted as {result.alert_id} version {result.version};"
            " a re-publish reaches nobody"
        )
        return
    click.echo(
        f"{result.alert_id} version {result.version} ({result.msg_type}): priority "
        f"{result.priority}, status {result.status}"
    )
    click.echo(f"would reach {result.reached:,} of {result.directory:,} subscribers")
    kinds = result.by_kind or {}
    click.echo("by task: " + ", ".join(f"{k} {n:,}" for k, n in kinds.items()))
    for name, n in result.by_province.items():
        click.echo(f"  {name:<32} {n:>12,}")
    click.echo("by channel: " + ", ".join(f"{c} {n:,}" for c, n in result.by_channel.items()))
    for w in result.warnings:
        where = f" {w['pointer']}" if w.get("pointer") else ""
        click.echo(f"warning {w['code']}{where}: {w['message']}")


@main.command()
@click.argument("message_id")
@click.option("--timeout", type=float, default=600.0, show_default=True)
def watch(message_id: str, timeout: float) -> None:
    """Follow the fan-out of MESSAGE_ID (an alert id or any message id of its lineage) until
    every partition is done. A rejected or duplicate message is reported at once (exit 1)."""
    from streams.observe import watch_progress

    settings = _settings()
    _require_topics(settings)
    fate = _resolve(settings, message_id, wait_s=min(timeout, 10.0))
    assert fate.alert_id is not None and fate.version is not None
    result = asyncio.run(
        watch_progress(settings, fate.alert_id, version=fate.version, timeout_s=timeout)
    )
    targeted = sum(p.targeted for p in result.values())
    emitted = sum(p.emitted for p in result.values())
    click.echo(f"{fate.alert_id} v{fate.version}: targeted {targeted:,}, emitted {emitted:,}")


def _require_topics(settings: Settings) -> None:
    """Read-only commands check the layout first (creating nothing): a missing topic is named
    at once (exit 6) instead of a reader waiting for records that cannot come."""
    from streams.kafkaio.clients import require_topics

    asyncio.run(require_topics(settings))


def _version_messages(messages: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    """The accepted messages that are (or, for Ack and Error, joined) ``version``."""
    return [
        {k: m.get(k) for k in ("version", "message_id", "msg_type", "sender", "status")}
        for m in messages
        if m.get("version") == version
    ]


def _resolve(settings: Settings, message_id: str, *, wait_s: float = 0.0) -> Fate:
    """The accepted message ``message_id`` names; a rejection or duplicate ends the command
    (exit 1), an unknown id raises :class:`NotFound` (exit 3)."""
    from streams.errors import NotFound
    from streams.observe import resolve_message

    fate = asyncio.run(resolve_message(settings, message_id, wait_s=wait_s))
    if fate.outcome == "accepted":
        return fate
    if fate.outcome == "unknown":
        raise NotFound(f"{message_id}: no alert or message with this id was decided")
    if wants_json():
        emit_json(fate.as_json())
    else:
        click.echo(f"{message_id}: {fate.outcome} (code={fate.code}): {fate.message}")
    sys.exit(1)


@main.command()
@click.option("--subscribers", type=int, default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--alert", "alert_file", type=click.Path(exists=True, path_type=Path), default=None)
def demo(subscribers: int, seed: int, alert_file: Path | None) -> None:
    """Broker, worker, synthetic directory, a typhoon alert fanned out, a summary; then stop."""
    from streams.demo import run_demo

    settings = _settings()
    os.environ.setdefault("LOA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    sys.exit(run_demo(settings, subscribers=subscribers, seed=seed, alert_file=alert_file))


@main.command()
@click.argument("message_id")
@click.option("--version", "version", type=int, default=None, help="Default: the latest seen.")
@click.option("--watch", is_flag=True, help="Live progress bar until the alert is done.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="For --watch.")
@json_option
def status(
    message_id: str, version: int | None, watch: bool, timeout: float, as_json: bool
) -> None:
    """Targeted, emitted, suppressed (by reason: cancelled, superseded, expired, cap...),
    delivered, failed and fell back (moved to the recipient's next channel, by route and reason)
    for MESSAGE_ID: an alert id (every version of the lineage, each with the message that made
    it: type, sender, status) or any message id of its lineage (that message's version).

    Exit 0 when shown (with --watch: when done), 1 rejected/duplicate or --watch timed out,
    3 unknown id."""
    from streams.observe import lineage_messages
    from streams.status import StatusReader, render
    from streams.status import as_json as status_json

    settings = _settings()
    _require_topics(settings)
    fate = _resolve(settings, message_id, wait_s=min(timeout, 10.0) if watch else 0.0)
    assert fate.alert_id is not None
    alert_id = fate.alert_id
    if version is None and fate.message_id != fate.alert_id:
        version = fate.version  # an Update's own id: the version it became

    async def run() -> int:
        async with StatusReader(settings, alert_id) as reader:
            await reader.catch_up()
            current = reader.status(version)
            if watch:
                bar = ProgressBar(f"{alert_id} receipts", max(current.targeted, 1))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while not current.done and loop.time() < deadline:
                    bar.total = max(current.emitted if current.fanout_done else current.targeted, 1)
                    bar.update(current.settled)
                    await asyncio.sleep(0.5)
                    await reader.catch_up()
                    current = reader.status(version)
                bar.total = max(current.emitted, 1)
                bar.update(current.settled)
            every = version is None and not watch
            messages = await lineage_messages(settings, alert_id) if every else []
            versions = sorted({*reader.versions(), *(int(m["version"]) for m in messages)})
            shown = [reader.status(v) for v in versions] if every and versions else [current]
            if as_json:
                doc: dict[str, Any] = {"message": fate.as_json(), "status": status_json(current)}
                if every:
                    doc["versions"] = [
                        {"messages": _version_messages(messages, s.version), **status_json(s)}
                        for s in shown
                    ]
                emit_json(doc)
            else:
                for s in shown:
                    for m in _version_messages(messages, s.version):
                        click.echo(
                            f"v{m['version']} {m['msg_type']} {m['message_id']} by {m['sender']}"
                            f" ({m['status']})"
                        )
                    click.echo(render(s))
            return 0 if current.done or not watch else 1

    sys.exit(asyncio.run(run()))


@main.command()
@click.option(
    "--provider",
    type=click.Choice(["log", "http", "smpp", "push"]),
    default="log",
    show_default=True,
    help="log: write a line per task; http: POST each task as JSON to --url; smpp: SMS to "
    "the SMSC at --url smpp://host:port (LOA_DELIVERY_SMPP_*); push: FCM HTTP v1 messages "
    "to the API at --url (LOA_DELIVERY_PUSH_*). docs/delivery.md, Protocols.",
)
@click.option(
    "--url",
    default=None,
    help="http: the provider URL; smpp: smpp://host:port of the SMSC; push: the API's base "
    "URL (https://fcm.googleapis.com).",
)
@click.option(
    "--channel",
    type=click.Choice(["log", *CHANNELS]),
    default=None,
    help="Deliver only tasks of this channel (its own consumer group); default: all (smpp: sms,"
    " push: push).",
)
@click.option(
    "--priority",
    "priorities",
    multiple=True,
    type=click.Choice(["extreme", "severe", "routine"]),
    help="Send-task topics to consume (default: all, extreme first).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Tasks in provider calls per channel at once (default: LOA_DELIVERY_MAX_IN_FLIGHT).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.001, None),
    default=10.0,
    show_default=True,
    help="Each provider call's own timeout, in seconds.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, None),
    default=None,
    help="Calls per task before it fails for good (default: retry until the alert expires).",
)
@click.option("--max-tasks", type=int, default=None, help="Stop after this many receipts.")
@click.option("--idle-exit", type=float, default=None, help="Stop after this many idle seconds.")
@click.option("--fail-every", type=int, default=0, help="log provider: fail every Nth task.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Serve /metrics, /ready, /live on LOA_METRICS_HOST:PORT (0: off).",
)
def deliver(
    provider: str,
    url: str | None,
    channel: str | None,
    priorities: tuple[str, ...],
    concurrency: int | None,
    timeout_s: float,
    max_attempts: int | None,
    max_tasks: int | None,
    idle_exit: float | None,
    fail_every: int,
    metrics_port: int,
) -> None:
    """Delivery worker: consume send tasks (extreme before severe before routine) and their
    retries, call the provider with many calls in flight (each with its own timeout, behind a
    circuit breaker), and commit receipts, retries and offsets in small transactions. A failed
    call is retried from a retry-tier topic until the alert expires (docs/delivery.md).
    SIGTERM lets the calls in flight finish and commit, then stops."""
    from streams.delivery.channels import Channel, check_channel_options, make_channel
    from streams.delivery.worker import DeliveryMetrics, stop_on_signals
    from streams.delivery.worker import deliver as run_delivery
    from streams.health import Readiness
    from streams.httpserver import start_server
    from streams.kafkaio.clients import create_topics
    from streams.metrics import shutdown

    if channel == "log":  # the old spelling of --provider log
        channel = None
    carries = {"smpp": "sms", "push": "push"}.get(provider)
    if carries is not None:  # an SMS provider sends only sms tasks, a push API only push ones
        if channel not in (None, carries):
            raise click.UsageError(f"--provider {provider} delivers only --channel {carries}")
        channel = carries
    if provider != "log" and not url:
        raise click.UsageError(f"--provider {provider} needs --url")
    settings = _settings()
    if provider != "log" and url:
        hint = {"http": "HTTP", "smpp": "SMPP", "push": "PUSH"}[provider]
        try:  # the URL, credentials, CA, client certificate: fail closed, before anything runs
            check_channel_options(provider, url, settings)
        except ValueError as exc:
            raise click.BadParameter(
                str(exc), param_hint=f"--url / LOA_DELIVERY_{hint}_*"
            ) from None
    _logging(settings)
    metrics = DeliveryMetrics()
    readiness = Readiness()
    server = (
        start_server(settings.metrics_host, metrics_port, metrics.registry, readiness)
        if metrics_port
        else None
    )

    async def run() -> None:
        in_flight = concurrency or settings.delivery_max_in_flight
        chosen: Channel = make_channel(
            provider,
            url,
            settings,
            timeout_s=timeout_s,
            max_connections=in_flight,
            fail_every=fail_every,
        )
        stop = asyncio.Event()
        # signals first: a SIGTERM while topics are being created stops cleanly, too
        with stop_on_signals(stop):
            try:
                await create_topics(settings)
                if stop.is_set():
                    return
                readiness.started()
                stats = await run_delivery(
                    settings,
                    provider=chosen,
                    channel=channel,
                    priorities=priorities or ("extreme", "severe", "routine"),
                    max_tasks=max_tasks,
                    idle_exit_s=idle_exit,
                    concurrency=concurrency,
                    max_attempts=max_attempts,
                    timeout_s=timeout_s,
                    metrics=metrics,
                    stop=stop,
                )
            finally:
                readiness.started(False)
                await chosen.close()
        click.echo(
            f"delivered {stats.delivered:,}, failed {stats.failed:,}, "
            f"duplicates dropped {stats.duplicates:,}, unreadable {stats.invalid:,}, "
            f"retries {stats.retries:,}, fallbacks {stats.fallbacks:,}"
        )

    try:
        asyncio.run(run())
    finally:
        shutdown(server)


def _preview_json(result: Preview | Rejected) -> dict[str, Any]:
    from streams.ingest import Rejected

    if isinstance(result, Rejected):
        return {
            "outcome": "rejected",
            "code": result.code.value,
            "pointer": result.pointer,
            "message": result.message,
            "errors": [{"pointer": p.pointer, "message": p.message} for p in result.all_problems],
        }
    return {
        "outcome": "duplicate" if result.duplicate else "accepted",
        "alert_id": result.alert_id,
        "version": result.version,
        "msg_type": result.msg_type,
        "priority": result.priority,
        "status": result.status,
        "reached": result.reached,
        "by_kind": result.by_kind,
        "directory": result.directory,
        "by_province": result.by_province,
        "by_channel": result.by_channel,
        "warnings": list(result.warnings),
    }


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmarks by the broker's clock, next to peers (``loa bench --help``)."""
    import importlib

    # benchmarks/ sits beside the package in the repository, not inside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    run = importlib.import_module("benchmarks.run")
    raise SystemExit(run.cli(list(args)))
