"""The ``loa`` command: a root group whose commands live in the modules beside this one.

Each command module is imported only when its command runs (or ``--help`` lists them), so
``loa publish`` never imports Faust and ``loa --version`` imports almost nothing (click's
"lazily loading subcommands" pattern). :data:`COMMANDS` is the whole map.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import click

from streams.cli.kit import LoaGroup, debug_option

__all__ = ["COMMANDS", "main"]

#: command name -> ``module:attribute`` of its click command or group
COMMANDS = {
    # setting a cluster up
    "config": "streams.cli.setup:show_config",
    "init": "streams.cli.setup:init",
    "topics": "streams.cli.setup:topics",
    "kafka": "streams.cli.setup:kafka",
    "directory": "streams.cli.setup:directory",
    # registries
    "keys": "streams.cli.registry:keys",
    "agencies": "streams.cli.registry:agencies",
    "channels": "streams.cli.registry:channels",
    # an agency's alerts
    "publish": "streams.cli.alerts:publish",
    "preview": "streams.cli.alerts:preview",
    "watch": "streams.cli.alerts:watch",
    "status": "streams.cli.alerts:status",
    # processes
    "worker": "streams.cli.worker:worker",
    "gateway": "streams.cli.processes:gateway",
    "deliver": "streams.cli.processes:deliver",
    "console": "streams.cli.console:console",
    "audit": "streams.cli.console:audit",
    "demo": "streams.cli.demo:demo",
    "bench": "streams.cli.bench:bench",
}


class LazyLoaGroup(LoaGroup):
    """:class:`LoaGroup` whose commands are imported from :data:`COMMANDS` when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyLoaGroup)
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
    unreachable, 5 not authorized, 6 topic missing, 7 bad input file, 8 done with warnings,
    70 bug (see --debug), 78 configuration unusable here.
    """
    # aiokafka logs every failed connection attempt; without a configured handler Python's
    # last-resort handler would print them above the one-line error. Configured logging
    # (worker, deliver, --debug) still receives them: a NullHandler does not stop propagation.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    if config_file is not None:  # processes Loa starts itself (demo, local runs) read it too
        os.environ["LOA_CONFIG"] = str(config_file.resolve())
