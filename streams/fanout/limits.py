"""Cluster-wide channel rate limits: the operator's side of ``<prefix>.channels``.

The topic is compacted, one partition: key = channel name, value ``{"rate": tasks per second}``
for the whole cluster; a tombstone lifts the limit. Every worker follows it live
(:mod:`streams.runtime.app` keeps a replica, :mod:`streams.fanout.throttle` paces each channel to
its
share), so a change reaches the fan-out within a poll. ``loa channels list | set | lift`` write
and read it here; nobody writes raw records by hand.
"""

from __future__ import annotations

import math

from streams.kafkaio.clients import make_producer, read_to_end, start_all
from streams.records import CHANNELS
from streams.settings.model import Settings

__all__ = ["decode_limit", "lift_limit", "limit_value", "read_limits", "set_limit"]


def limit_value(rate: float) -> bytes:
    """The record value for ``rate`` tasks/s (0 pauses the channel); refuses NaN, inf, < 0."""
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate must be a finite number >= 0 (tasks per second), got {rate!r}")
    return b'{"rate":%s}' % repr(float(rate)).encode()


def decode_limit(key: bytes, value: bytes) -> float:
    """A channel limit record: ``{"rate": tasks per second}`` for the whole cluster."""
    import orjson

    rate = orjson.loads(value)["rate"]
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate < 0:
        raise ValueError(f"rate must be a number >= 0, got {rate!r}")
    return float(rate)


async def _write(settings: Settings, channel: str, value: bytes | None) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    producer = make_producer(settings)
    await start_all(producer)
    try:
        await producer.send_and_wait(settings.channels_topic, value, key=channel.encode())
    finally:
        await producer.stop()


async def set_limit(settings: Settings, channel: str, rate: float) -> None:
    """Limit ``channel`` to ``rate`` tasks/s across the cluster."""
    await _write(settings, channel, limit_value(rate))


async def lift_limit(settings: Settings, channel: str) -> None:
    """Remove ``channel``'s limit (a tombstone): it is no longer throttled."""
    await _write(settings, channel, None)


async def read_limits(settings: Settings) -> dict[str, float | None]:
    """Every known channel's limit as the topic holds it now (``None``: unlimited).

    A record the workers cannot decode counts as no limit, as it does for them.
    """
    limits: dict[str, float | None] = dict.fromkeys(CHANNELS)
    async for record in read_to_end(settings, settings.channels_topic):
        name = (record.key or b"").decode(errors="replace")
        if record.value is None:
            limits[name] = None
            continue
        try:
            limits[name] = decode_limit(record.key or b"", record.value)
        except (ValueError, KeyError, TypeError):
            limits[name] = None
    return limits
