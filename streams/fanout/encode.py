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


def _enum_fields() -> npt.NDArray[np.uint8]:
    """``"kind" .. "language"`` of a task, one row per combination of the four enumerated
    columns (:func:`_enum_codes`): ``KIND,"channel":CHANNEL,"fallback":[..],"language":LANG``,
    each token padded with JSON whitespace to its column's width. One gather per chunk writes
    all four instead of one per column."""
    pieces: list[npt.NDArray[np.uint8]] = []
    for table, name in (
        (_KIND_TOKENS, b""),
        (_CHANNEL_TOKENS, b',"channel":'),
        (_FALLBACK_TOKENS, b',"fallback":'),
        (_LANGUAGE_TOKENS, b',"language":'),
    ):
        prefix = np.frombuffer(name, dtype=np.uint8)
        rows_ = np.concatenate([np.broadcast_to(prefix, (table.shape[0], len(name))), table], 1)
        pieces.append(rows_)
    combined = pieces[0]
    for piece in pieces[1:]:
        a, b = combined.shape[0], piece.shape[0]
        combined = np.concatenate([np.repeat(combined, b, axis=0), np.tile(piece, (a, 1))], axis=1)
    return np.ascontiguousarray(combined)


_ENUM_FIELDS = _enum_fields()


def _enum_codes(
    kind: npt.NDArray[np.uint8],
    channel: npt.NDArray[np.uint8],
    fallback: npt.NDArray[np.uint8],
    language: npt.NDArray[np.uint8],
) -> npt.NDArray[np.intp]:
    """Row of :data:`_ENUM_FIELDS` for each task."""
    code = kind.astype(np.intp)
    for column, table in (
        (channel, _CHANNEL_TOKENS),
        (fallback, _FALLBACK_TOKENS),
        (language, _LANGUAGE_TOKENS),
    ):
        code *= table.shape[0]
        code += column
    return code


def _unix_s(iso: str) -> int:
    """An ISO 8601 time (CAP ``expires``) as whole Unix seconds, rounded up."""
    return math.ceil(datetime.fromisoformat(iso).timestamp())


class TaskEncoder:
    """Encodes the send tasks of one order: ``schemas/send_task.schema.json``, key = recipient id.

    The per-order parts of the record are serialized once; per chunk, the recipient id, the
    task kind (an Update tells new recipients the ``alert`` and those already served the
    ``update``), channel, fallback channels (the recipient's further preferences, in order;
    ``[]`` when none) and language are filled in column-wise, the four enumerated ones in one
    gather (:data:`_ENUM_FIELDS`).
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
                    _ENUM_FIELDS.shape[1],
                    b',"recipient_id":',
                    id_width,
                    b',"idempotency_key":',
                    self._key_head,
                    id_width,
                    b'"}',
                ]
            )
        return layout

    def columns(
        self, audience: Selection, start: int, stop: int, kinds: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[npt.NDArray[np.uint8], list[npt.NDArray[np.uint8]], RecordLayout]]:
        """``(keys, slots, layout)`` for ``audience[start:stop]``, run by run of equal id width:
        the key matrix (one row per task), the per-task pieces of the value in the order of
        ``layout.slots``, and the value's layout (its literal bytes in ``layout.template``).
        ``kinds`` holds the :data:`KINDS` index of each recipient's task, parallel to the
        audience."""
        ids = audience.ids[start:stop]
        channel = audience.channel[start:stop]
        fallback = audience.fallback[start:stop]
        language = audience.language[start:stop]
        enums = _enum_codes(kinds[start:stop], channel, fallback, language)
        for a, b, width in digit_runs(ids):
            digits = decimal_digits(ids[a:b], width)
            yield digits, [_ENUM_FIELDS[enums[a:b]], digits, digits], self._layout(width)

    def matrices(
        self, audience: Selection, start: int, stop: int, kinds: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
        """``(keys, values)`` byte matrices (one row per task) for ``audience[start:stop]``
        (see :meth:`columns`). The values matrix is reused by the next run: consume it before
        asking for the next."""
        for keys, slots, layout in self.columns(audience, start, stop, kinds):
            yield keys, layout.fill(keys.shape[0], slots)

    def encode(
        self, audience: Selection, start: int, stop: int, kinds: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of the tasks for ``audience[start:stop]`` (see :meth:`matrices`)."""
        for keys, values in self.matrices(audience, start, stop, kinds):
            yield from zip(rows(keys), rows(values), strict=True)
