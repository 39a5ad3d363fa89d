"""Reading Loa's outputs back: decisions and fan-out progress (for the CLI, demo, tests, bench)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import TopicMissing
from streams.kafkaio.clients import make_reader, start_all, topic_specs
from streams.records import Progress
from streams.settings.model import Settings

__all__ = ["Decided", "Fate", "resolve_message", "wait_decision", "watch_progress"]

Decided = tuple[str, dict[str, Any]]


async def _consumer(
    settings: Settings, *topics: str
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    consumer = make_reader(settings)
    await start_all(consumer)
    try:
        missing = sorted(set(topics) - await consumer.topics())
        if missing:
            raise TopicMissing(f"topic {', '.join(missing)} does not exist")
    except BaseException:
        await consumer.stop()
        raise
    counts = {spec.name: spec.num_partitions for spec in topic_specs(settings)}
    tps = [TopicPartition(topic, p) for topic in topics for p in range(counts[topic])]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, tps


async def wait_decision(
    settings: Settings,
    sender: str,
    identifier: str,
    *,
    offset: int | None = None,
    timeout_s: float = 60.0,
) -> Decided:
    """The decision on a message: ``("accepted" | "duplicate" | "rejected", record)``.

    With ``offset`` (of the inbound record; the inbound topic has one partition), the decision
    on exactly that record, so a re-publish finds its ``duplicate``, not the first acceptance.

    Read from the sender's decision topic (``<prefix>.decisions.<sender>``, all an agency's ACL
    lets it read; ingest makes it at the agency's first decision, so it may appear while this
    waits) and from the shared ``accepted`` and ``rejected`` topics when this principal may read
    them (an operator; an unregistered sender's rejection is only there).
    """
    own = settings.decisions_topic(sender) if sender else None
    consumer = make_reader(settings)
    await start_all(consumer)
    try:
        async with asyncio.timeout(timeout_s):
            visible = await consumer.topics()
            shared = {settings.accepted_topic, settings.rejected_topic} & visible
            assigned: set[str] = set()
            looked = time.monotonic()
            while True:
                wanted = shared | ({own} & visible if own else set())
                if wanted != assigned:
                    consumer.assign([TopicPartition(t, 0) for t in sorted(wanted)])
                    assigned = wanted
                if own and own not in visible and time.monotonic() - looked > _LOOK_AGAIN_S:
                    visible, looked = await consumer.topics(), time.monotonic()
                if not assigned:
                    await asyncio.sleep(_LOOK_AGAIN_S)
                    continue
                data = await consumer.getmany(timeout_ms=200)
                for tp, records in data.items():
                    for record in records:
                        decided = _decision(
                            record.value, tp.topic, settings, sender, identifier, offset
                        )
                        if decided is not None:
                            return decided
    finally:
        await consumer.stop()


#: How often a reader waiting for a decision topic to be made looks for it again.
_LOOK_AGAIN_S = 0.5


def _decision(
    value: bytes | None,
    topic: str,
    settings: Settings,
    sender: str,
    identifier: str,
    offset: int | None,
) -> Decided | None:
    """``value`` classified, if it is the decision on ``sender/identifier`` (at ``offset``)."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None  # not Loa's (the worker ignores it too)
    if not isinstance(doc, dict):
        return None
    # a decision topic holds both kinds: a rejection has a code, an accepted alert none
    if topic == settings.rejected_topic or (topic != settings.accepted_topic and "code" in doc):
        if _is_for(doc, sender, identifier, offset):
            return ("duplicate" if doc["code"] == "duplicate" else "rejected"), doc
        return None
    found = doc.get("message_id") == f"{sender}/{identifier}"
    if found and offset in (None, doc.get("inbound_offset")):
        return "accepted", doc
    return None


def _is_for(rejection: dict[str, Any], sender: str, identifier: str, offset: int | None) -> bool:
    if offset is not None:
        source = rejection.get("source") or {}
        return bool(source.get("offset") == offset and source.get("topic", "").endswith(".inbound"))
    return rejection.get("sender") == sender and rejection.get("identifier") == identifier


async def watch_progress(
    settings: Settings,
    alert_id: str,
    *,
    version: int = 1,
    on_update: Callable[[dict[int, Progress]], None] | None = None,
    timeout_s: float = 600.0,
) -> dict[int, Progress]:
    """Follow ``loa.fanout.progress`` until every partition of the alert reports ``done``."""
    consumer, _ = await _consumer(settings, settings.progress_topic)
    latest: dict[int, Progress] = {}
    prefix = f"{alert_id}:{version}:".encode()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                data = await consumer.getmany(timeout_ms=200)
                changed = False
                for records in data.values():
                    for record in records:
                        if record.value is None or not (record.key or b"").startswith(prefix):
                            continue
                        try:
                            progress = Progress.from_json(record.value)
                        except Exception:
                            continue  # not a progress record (the worker skips it too)
                        latest[progress.partition] = progress
                        changed = True
                if changed and on_update is not None:
                    on_update(latest)
                if len(latest) == settings.partitions and all(p.done for p in latest.values()):
                    return latest
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class Fate:
    """What ingest decided about one message id (``sender/identifier``).

    ``accepted`` names the lineage (``alert_id``) and the ``version`` the message became;
    ``duplicate`` and ``rejected`` carry the rejection ``code`` and ``message``; ``unknown``
    means no decision was found (not published, or not decided yet).
    """

    outcome: Literal["accepted", "duplicate", "rejected", "unknown"]
    message_id: str
    alert_id: str | None = None
    version: int | None = None
    code: str = ""
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message_id": self.message_id,
            "alert_id": self.alert_id,
            "version": self.version,
            "code": self.code or None,
            "message": self.message or None,
        }


def _fate(
    message_id: str, accepted: dict[str, Any] | None, rejection: dict[str, Any] | None
) -> Fate:
    if accepted is not None:
        return Fate("accepted", message_id, str(accepted["alert_id"]), int(accepted["version"]))
    if rejection is not None:
        code = str(rejection.get("code", ""))
        outcome: Literal["duplicate", "rejected"] = (
            "duplicate" if code == "duplicate" else "rejected"
        )
        return Fate(outcome, message_id, code=code, message=str(rejection.get("message", "")))
    return Fate("unknown", message_id)


async def resolve_message(settings: Settings, message_id: str, *, wait_s: float = 0.0) -> Fate:
    """The fate of ``message_id`` (an alert id is the message id of its lineage's first message).

    Reads the accepted and rejected topics to their ends; with ``wait_s``, keeps following them
    that long for a message not decided yet (``loa watch`` right after ``publish --no-wait``).
    """
    consumer, tps = await _consumer(settings, settings.accepted_topic, settings.rejected_topic)
    key = message_id.encode()
    accepted: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None
    try:
        end = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            data = await consumer.getmany(timeout_ms=200)
            for tp, records in data.items():
                for record in records:
                    if tp.topic == settings.accepted_topic:
                        if record.key == key and record.value is not None:
                            accepted = orjson.loads(record.value)
                        continue
                    doc = _json_object(record.value)
                    if doc is not None and _message_id(doc) == message_id:
                        rejection = doc  # the latest decision on a re-publish wins
            if accepted is not None:
                return _fate(message_id, accepted, None)
            caught_up = all([await consumer.position(tp) >= end[tp] for tp in tps])
            if caught_up and (rejection is not None or loop.time() >= deadline):
                return _fate(message_id, None, rejection)
    finally:
        await consumer.stop()


async def lineage_messages(settings: Settings, alert_id: str) -> list[dict[str, Any]]:
    """The accepted messages of lineage ``alert_id``, by version (what ``loa status`` names for
    each version: its message, type, sender and status)."""
    from streams.kafkaio.clients import read_to_end

    found: dict[str, dict[str, Any]] = {}
    async for record in read_to_end(settings, settings.accepted_topic):
        doc = _json_object(record.value)
        if doc is not None and doc.get("alert_id") == alert_id:
            found[str(doc.get("message_id"))] = doc
    return sorted(
        found.values(), key=lambda d: (int(d.get("version", 0)), d["msg_type"] != "Cancel")
    )


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _message_id(rejection: dict[str, Any]) -> str | None:
    sender, identifier = rejection.get("sender"), rejection.get("identifier")
    return f"{sender}/{identifier}" if sender and identifier else None
