"""``loa worker``: the Faust worker (ingest, directory and fan-out agents).

Its own module so that only this command imports Faust."""

from __future__ import annotations

import asyncio
import dataclasses

import click

from streams.cli.context import command_settings
from streams.kafkaio.clients import checked_layout, topics_error
from streams.logs import worker_logging_config
from streams.metrics import check_port
from streams.runtime.app import create_app
from streams.runtime.shutdown import LoaWorker
from streams.settings.model import Settings


@click.command()
def worker() -> None:
    """Run a worker (ingest, directory and fan-out agents)."""
    settings = command_settings()
    check_port(settings.metrics_host, settings.metrics_port)  # before anything connects
    settings = _checked_for_worker(settings)
    app = create_app(settings)

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
    states, rep = asyncio.run(checked_layout(settings))
    error = topics_error(states, lead="the worker does not start: ")
    if error is not None:
        raise error
    return dataclasses.replace(settings, replication_factor=rep.factor)
