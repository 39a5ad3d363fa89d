"""Setting a cluster up: ``loa config``, ``init``, ``topics``, ``kafka`` and ``directory load``.

Where it sits: the operator's commands before and beside the workers; each loads the settings
and calls one function of the package (tests call those functions directly)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import click

from streams.cli.context import command_settings
from streams.directory.files import read_subscribers
from streams.directory.load import write_changes
from streams.directory.synthetic import synthetic_subscribers
from streams.errors import BadInputFile, InvalidAgency
from streams.kafkaio.clients import check_topics, create_topics, ensure_topics, topics_error
from streams.progress import ProgressBar
from streams.regions import registry
from streams.runtime.bootstrap import read_channel_limits, run_init
from streams.settings.load import check_files, describe
from streams.settings.model import Settings

#: the dev broker's script in a repository checkout (an installed wheel has none)
KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"


@click.command("config")
@click.option(
    "--check",
    is_flag=True,
    help="Also open every file the settings name (password, CA, certificates, agencies, data "
    "directory) as this user; exit 78 naming the first that cannot be used.",
)
def show_config(check: bool) -> None:
    """Print the effective settings (file < environment; derived values resolved), secrets
    redacted."""
    settings = command_settings()
    for line in describe(settings):
        click.echo(line)
    if check:
        for line in check_files(settings):
            click.echo(line)


@click.command("init")
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
    settings = command_settings()
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
    states = asyncio.run(check_topics(settings))
    for state in states:
        click.echo(state.line())
    error = topics_error(states, lead="not ready for workers: ")
    if error is not None:
        raise error


@click.group()
def topics() -> None:
    """Loa's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic Loa uses (idempotent); report existing topics whose partitions or
    replication differ from the settings (exit code 1)."""
    created, differing = asyncio.run(ensure_topics(command_settings()))
    click.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    for line in differing:
        click.echo(f"differs from the settings: {line}", err=True)
    if differing:
        sys.exit(1)


@click.command()
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


@click.group()
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
    if (file is None) == (n is None):
        raise click.UsageError("give a FILE or --synthetic N (one of them)")
    settings = command_settings()
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
