"""Vectorized send-task encoding (pure numpy, no Kafka): the bytes of each task of a planned
audience. Where it sits: after :mod:`streams.fanout.plan` (who gets which kind of task), before the
emitter (``streams.fanout.scheduler``), which writes the bytes in record batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import numpy.typing as npt
import orjson

from streams.directory.index import FALLBACKS, Selection
from streams.encoding import RecordLayout, decimal_digits, digit_runs, lookup_table, rows
from streams.records import CHANNELS, LANGUAGES, FanoutOrder, TaskKind

__all__ = ["KINDS", "TaskEncoder"]

_CHANNEL_TOKENS = lookup_table([orjson.dumps(c) for c in CHANNELS])
#: ``fallback`` lists by fallback code (``streams.directory.index.fallback_code``).
_FALLBACK_TOKENS = lookup_table([orjson.dumps([CHANNELS[c] for c in f]) for f in FALLBACKS])
_LANGUAGE_TOKENS = lookup_table([orjson.dumps(c) for c in LANGUAGES])
#: Task kinds in the order of their ``uint8`` code in a kinds column.
KINDS: tuple[TaskKind, ...] = tuple(TaskKind)
_KIND_TOKENS = lookup_table([orjson.dumps(k.value) for k in KINDS])


def _unix_s(iso: str) -> int:
    """An ISO 8601 time (CAP ``expires``) as whole Unix seconds, rounded up."""
    return math.ceil(datetime.fromisoformat(iso).timestamp())


class TaskEncoder:
    """Encodes the send tasks of one order: ``schemas/send_task.schema.json``, key = recipient id.

    The per-order parts of the record are serialized once; per chunk, the recipient id, the
    task kind (an Update tells new recipients the ``alert`` and those already served the
    ``update``), channel, fallback channels (the recipient's further preferences, in order;
    ``[]`` when none) and language are filled in column-wise.
    """

    __slots__ = ("_head", "_key_head", "_layouts")

    def __init__(self, order: FanoutOrder) -> None:
        alert = orjson.dumps(order.alert_id)
        # delivery retries stop when the alert expires (streams.delivery.retry): Unix seconds
        expires = b"" if order.expires is None else b'"expires":%d,' % _unix_s(order.expires)
        self._head = (
            b'{"alert_id":'
            + alert
            + b',"version":%d,"priority":"%s",%s"kind":'
            % (
                order.version,
                order.priority.value.encode(),
                expires,
            )
        )
        self._key_head = orjson.dumps(order.alert_id)[:-1] + b":%d:" % order.version
        self._layouts: dict[int, RecordLayout] = {}

    def _layout(self, id_width: int) -> RecordLayout:
        layout = self._layouts.get(id_width)
        if layout is None:
            layout = self._layouts[id_width] = RecordLayout(
                [
                    self._head,
                    _KIND_TOKENS.shape[1],
                    b',"recipient_id":',
                    id_width,
                    b',"channel":',
                    _CHANNEL_TOKENS.shape[1],
                    b',"fallback":',
                    _FALLBACK_TOKENS.shape[1],
                    b',"language":',
                    _LANGUAGE_TOKENS.shape[1],
                    b',"idempotency_key":',
                    self._key_head,
                    id_width,
                    b'"}',
                ]
            )
        return layout

    def matrices(
        self, audience: Selection, start: int, stop: int, kinds: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
        """``(keys, values)`` byte matrices (one row per task) for ``audience[start:stop]``, run
        by run of equal id width; ``kinds`` holds the :data:`KINDS` index of each recipient's
        task, parallel to the audience. The values matrix is reused by the next run: consume it
        before asking for the next."""
        ids = audience.ids[start:stop]
        channel = audience.channel[start:stop]
        fallback = audience.fallback[start:stop]
        language = audience.language[start:stop]
        kind = kinds[start:stop]
        for a, b, width in digit_runs(ids):
            digits = decimal_digits(ids[a:b], width)
            matrix = self._layout(width).fill(
                b - a,
                [
                    _KIND_TOKENS[kind[a:b]],
                    digits,
                    _CHANNEL_TOKENS[channel[a:b]],
                    _FALLBACK_TOKENS[fallback[a:b]],
                    _LANGUAGE_TOKENS[language[a:b]],
                    digits,
                ],
            )
            yield digits, matrix

    def encode(
        self, audience: Selection, start: int, stop: int, kinds: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of the tasks for ``audience[start:stop]`` (see :meth:`matrices`)."""
        for keys, values in self.matrices(audience, start, stop, kinds):
            yield from zip(rows(keys), rows(values), strict=True)
