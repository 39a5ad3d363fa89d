"""``loa demo``: a broker, a worker, a synthetic directory, a typhoon alert fanned out, a
summary. The demo (:mod:`streams.demo`) needs the repository's ``deploy/`` and is not in the
wheel: an installed ``loa demo`` says where it runs instead of failing on an import."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import click

from streams.cli.context import command_settings


@click.command()
@click.option("--subscribers", type=int, default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--alert", "alert_file", type=click.Path(exists=True, path_type=Path), default=None)
def demo(subscribers: int, seed: int, alert_file: Path | None) -> None:
    """Broker, worker, synthetic directory, a typhoon alert fanned out, a summary; then stop."""
    if importlib.util.find_spec("streams.demo") is None:
        raise click.UsageError(
            "loa demo runs from a source checkout (it starts deploy/kafka/kafka.sh, which the "
            "wheel does not have): clone the repository and run `make demo` there"
        )
    run_demo = importlib.import_module("streams.demo.run").run_demo
    settings = command_settings()
    os.environ.setdefault("LOA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    sys.exit(run_demo(settings, subscribers=subscribers, seed=seed, alert_file=alert_file))
