"""What every command does first: load the settings strictly and set up logging."""

from __future__ import annotations

import os

import click

from streams.cli.kit import SETTINGS_KEY
from streams.logs import configure
from streams.settings.load import load_settings
from streams.settings.model import Settings

__all__ = ["command_settings", "configure_logging"]


def command_settings() -> Settings:
    """Strict settings (``streams.settings.load``): ``--config``/``LOA_CONFIG`` file, then
    ``LOA_*``;
    an unusable setting is a usage error (exit 2) naming it."""
    config = click.get_current_context().find_root().params.get("config_file")
    try:
        settings = load_settings(config_file=config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    os.environ.setdefault("LOA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)  # for errors
    click.get_current_context().meta[SETTINGS_KEY] = settings  # errors name the protocol
    return settings


def configure_logging(settings: Settings) -> None:
    configure(settings.log_level, settings.log_format)  # LOA_LOG_FORMAT: text | json
