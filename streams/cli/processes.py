"""The long-running processes besides the worker: ``loa gateway`` and ``deliver``."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from streams.cli.context import command_settings, configure_logging
from streams.delivery.channels import Channel, check_channel_options, make_channel
from streams.delivery.policy import DeliveryStats
from streams.delivery.worker import DeliveryMetrics, stop_on_signals
from streams.delivery.worker import deliver as run_delivery
from streams.gateway import check_settings, serve
from streams.health import Readiness
from streams.httpserver import start_server
from streams.kafkaio.clients import require_topics
from streams.metrics import shutdown
from streams.records import CHANNELS
from streams.settings.model import Settings


@click.command()
def gateway() -> None:
    """Serve the HTTP gateway for agencies: POST /v1/alerts, GET /v1/alerts/{id}
    (schemas/gateway.openapi.yaml; LOA_GATEWAY_* settings)."""
    settings = command_settings()
    try:
        check_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings)
    asyncio.run(serve(settings))


@click.command()
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
    if channel == "log":  # the old spelling of --provider log
        channel = None
    carries = {"smpp": "sms", "push": "push"}.get(provider)
    if carries is not None:  # an SMS provider sends only sms tasks, a push API only push ones
        if channel not in (None, carries):
            raise click.UsageError(f"--provider {provider} delivers only --channel {carries}")
        channel = carries
    if provider != "log" and not url:
        raise click.UsageError(f"--provider {provider} needs --url")
    settings = command_settings()
    if provider != "log" and url:
        hint = {"http": "HTTP", "smpp": "SMPP", "push": "PUSH"}[provider]
        try:  # the URL, credentials, CA, client certificate: fail closed, before anything runs
            check_channel_options(provider, url, settings)
        except ValueError as exc:
            raise click.BadParameter(
                str(exc), param_hint=f"--url / LOA_DELIVERY_{hint}_*"
            ) from None
    configure_logging(settings)
    metrics = DeliveryMetrics()
    readiness = Readiness()
    server = (
        start_server(settings.metrics_host, metrics_port, metrics.registry, readiness)
        if metrics_port
        else None
    )

    chosen = make_channel(
        provider,
        url,
        settings,
        timeout_s=timeout_s,
        max_connections=concurrency or settings.delivery_max_in_flight,
        fail_every=fail_every,
    )
    options = {
        "channel": channel,
        "priorities": priorities or ("extreme", "severe", "routine"),
        "max_tasks": max_tasks,
        "idle_exit_s": idle_exit,
        "concurrency": concurrency,
        "max_attempts": max_attempts,
        "timeout_s": timeout_s,
        "metrics": metrics,
    }
    try:
        stats = asyncio.run(_deliver(settings, chosen, readiness, options))
    finally:
        shutdown(server)
    if stats is not None:
        click.echo(
            f"delivered {stats.delivered:,}, failed {stats.failed:,}, "
            f"duplicates dropped {stats.duplicates:,}, unreadable {stats.invalid:,}, "
            f"retries {stats.retries:,}, fallbacks {stats.fallbacks:,}"
        )


async def _deliver(
    settings: Settings, chosen: Channel, readiness: Readiness, options: dict[str, Any]
) -> DeliveryStats | None:
    """Check the topics (created by ``loa init``, never here: exit 6 naming a missing one),
    then deliver until stopped; None when a signal came first."""
    stop = asyncio.Event()
    # signals first: a SIGTERM while the topics are checked stops cleanly, too
    with stop_on_signals(stop):
        try:
            await require_topics(settings)
            if stop.is_set():
                return None
            readiness.started()
            return await run_delivery(settings, provider=chosen, stop=stop, **options)
        finally:
            readiness.started(False)
            await chosen.close()
