"""An agency's commands: ``loa publish``, ``preview``, ``watch`` and ``status``.

Each loads the settings and calls one function (:func:`streams.agency.publish.publish_file`,
:func:`streams.agency.preview.preview`, :mod:`streams.receipts.observe`,
:class:`streams.receipts.status.StatusReader`);
read-only commands check the layout first and create nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from streams.cli.context import command_settings
from streams.cli.kit import emit_json, json_option, wants_json
from streams.errors import BadInputFile
from streams.progress import ProgressBar
from streams.settings.model import Settings

if TYPE_CHECKING:
    from streams.agency.preview import Preview
    from streams.receipts.observe import Fate
from streams.agency.preview import preview as run_preview
from streams.agency.publish import publish_file
from streams.errors import NotFound
from streams.ingest import Rejected
from streams.ingest.signatures import load_private_key
from streams.kafkaio.clients import require_topics
from streams.receipts.observe import lineage_messages, resolve_message, watch_progress
from streams.receipts.status import StatusReader, render
from streams.receipts.status import as_json as status_json
from streams.regions import registry


@click.command()
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
    settings = command_settings()
    raw = _read_input(file, "alert file")
    key = None
    if key_file is not None:
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


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def preview(file: Path, as_json: bool) -> None:
    """Who FILE would reach, with which task (alert, update, cancel), by province and channel,
    judged against the live lifecycle state; sends nothing. Exit status 1 if it would be
    rejected."""
    settings = command_settings()
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


def _preview_json(result: Preview | Rejected) -> dict[str, Any]:
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


@click.command()
@click.argument("message_id")
@click.option("--timeout", type=float, default=600.0, show_default=True)
def watch(message_id: str, timeout: float) -> None:
    """Follow the fan-out of MESSAGE_ID (an alert id or any message id of its lineage) until
    every partition is done. A rejected or duplicate message is reported at once (exit 1)."""
    settings = command_settings()
    _require_topics(settings)
    fate = _resolve(settings, message_id, wait_s=min(timeout, 10.0))
    assert fate.alert_id is not None and fate.version is not None
    result = asyncio.run(
        watch_progress(settings, fate.alert_id, version=fate.version, timeout_s=timeout)
    )
    targeted = sum(p.targeted for p in result.values())
    emitted = sum(p.emitted for p in result.values())
    click.echo(f"{fate.alert_id} v{fate.version}: targeted {targeted:,}, emitted {emitted:,}")


@click.command()
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
    settings = command_settings()
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


def _require_topics(settings: Settings) -> None:
    """Read-only commands check the layout first (creating nothing): a missing topic is named
    at once (exit 6) instead of a reader waiting for records that cannot come."""
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
