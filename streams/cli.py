"""``loa``: a thin CLI. Each command loads settings, sets up logging and runs one thing."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from streams.settings import Settings

KAFKA_SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "kafka.sh"


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, max(total, 1)
        self.started = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last = -1.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        finished = done >= self.total
        if not finished and now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = done / max(now - self.started, 1e-9)
        line = f"{self.label} [{bar:<30}] {done:,}/{self.total:,} {frac:6.1%} {rate:,.0f}/s"
        sys.stderr.write(("\r" + line) if self._tty else line + "\n")
        if finished and self._tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


@click.group()
def main() -> None:
    """Loa: emergency alert fan-out on Kafka."""


@main.command()
def worker() -> None:
    """Run a worker (ingest, directory and fan-out agents)."""
    import faust

    from streams.app import create_app

    settings = _settings()
    app = create_app(settings)
    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


@main.command()
@click.argument("action", type=click.Choice(["start", "stop", "status", "fetch"]))
def kafka(action: str) -> None:
    """Manage the local development broker (deploy/kafka/kafka.sh)."""
    sys.exit(subprocess.call(["bash", str(KAFKA_SCRIPT), action]))


@main.group()
def topics() -> None:
    """Loa's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic Loa uses (idempotent)."""
    from streams.kafka import create_topics

    created = asyncio.run(create_topics(_settings()))
    click.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))


@main.group()
def directory() -> None:
    """The subscriber directory."""


@directory.command("load")
@click.option("--synthetic", "n", type=int, required=True, help="Number of synthetic subscribers.")
@click.option("--seed", type=int, default=1, show_default=True)
def directory_load(n: int, seed: int) -> None:
    """Write N deterministic synthetic subscribers to loa.directory.changes."""
    from streams.directory.load import load_synthetic
    from streams.kafka import create_topics
    from streams.regions import registry

    settings = _settings()
    bar = ProgressBar("directory", n)

    async def run() -> int:
        await create_topics(settings)
        return await load_synthetic(settings, n, seed, registry(), on_progress=bar.update)

    started = time.monotonic()
    written = asyncio.run(run())
    seconds = time.monotonic() - started
    click.echo(f"loaded {written:,} subscribers in {seconds:.1f} s ({written / seconds:,.0f}/s)")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Print ingest's decision.")
def publish(file: Path, wait: bool) -> None:
    """Send an alert file to loa.alerts.inbound and print what ingest decided."""
    import orjson

    from streams.kafka import create_topics, make_producer
    from streams.observe import wait_decision

    settings = _settings()
    raw = file.read_bytes()

    async def run() -> int:
        await create_topics(settings)
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(settings.inbound_topic, raw)
        finally:
            await producer.stop()
        if not wait:
            return 0
        try:
            doc = orjson.loads(raw)
            sender, identifier = str(doc["sender"]), str(doc["identifier"])
        except Exception:
            click.echo("sent (not a JSON alert with sender and identifier: not waiting)")
            return 0
        outcome, record = await wait_decision(settings, sender, identifier)
        if outcome == "accepted":
            click.echo(f"accepted {record['alert_id']} priority={record['priority']}")
            return 0
        click.echo(
            f"rejected code={record['code']} pointer={record['pointer']}: {record['message']}"
        )
        return 1

    sys.exit(asyncio.run(run()))


@main.command()
@click.argument("alert_id")
@click.option("--timeout", type=float, default=600.0, show_default=True)
def watch(alert_id: str, timeout: float) -> None:
    """Follow an alert's fan-out until every partition is done."""
    from streams.observe import watch_progress

    settings = _settings()
    result = asyncio.run(watch_progress(settings, alert_id, timeout_s=timeout))
    targeted = sum(p.targeted for p in result.values())
    emitted = sum(p.emitted for p in result.values())
    click.echo(f"{alert_id}: targeted {targeted:,}, emitted {emitted:,}")


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
