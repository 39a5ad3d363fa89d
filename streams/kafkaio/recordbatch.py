"""Kafka record batches (message format v2) built and read column-wise with numpy.

Where it sits: between the directory's wire format (``streams.directory.wire``, which turns
subscribers into fixed-layout JSON byte matrices and back) and the broker. The loader builds
whole record batches from those matrices (:func:`build_records`, :func:`finish_batch`), and a
restoring worker reads fetched partitions without one Python object per record
(:func:`read_partition`): record boundaries, keys and values come out as offset arrays into one
buffer, so the wire decoder can gather fixed-layout values into a matrix in one numpy call.

The format is Kafka's documented record batch v2 (KIP-98): a 61-byte header, then records of
``length, attributes, timestampDelta, offsetDelta, keyLength, key, valueLength, value,
headers``, every integer a zigzag varint. Reading follows the consumer's rules exactly
(aiokafka's ``PartitionRecords``): records before the fetch offset are skipped, control batches
are skipped, and under ``read_committed`` the batches of aborted transactions (from the fetch
response's aborted-transaction list and the abort markers) are dropped. Batches whose records
are not in equal-length runs (another writer's varying records), compressed batches and legacy
(v0/v1) batches are read with aiokafka's own record readers, so every batch a consumer could
read is read, and read the same. Nothing here talks to Kafka.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Final

import google_crc32c
import numpy as np
import numpy.typing as npt

from streams.kafkaio.internals import DefaultRecordBatch, MemoryRecords, calc_crc32c, codec

__all__ = [
    "HEADER_SIZE",
    "BatchLayout",
    "FetchedRecords",
    "build_records",
    "finish_batch",
    "read_partition",
    "varints",
]

#: Bytes before the first record of a v2 batch.
HEADER_SIZE: Final = 61
_HEADER = struct.Struct(">qiiBIhiqqqhii")
_CRC_FROM: Final = 21  # the CRC covers attributes .. end
_TRANSACTIONAL: Final = 0x10
_CONTROL: Final = 0x20
_CODEC_MASK: Final = 0x07
_NO_PRODUCER: Final = -1
#: A batch read column-wise must average at least this many records per equal-length run;
#: below it aiokafka's per-record reader is faster than one numpy pass per run.
_MIN_RUN: Final = 8

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data``.

    With SSE4.2 (``google-crc32c``'s C build) it runs at some 20 GB/s; aiokafka's table
    version (about 1.8 GB/s) was a fifth of the fan-out worker's CPU, one pass per 1 MB batch.
    """
    if _HARDWARE_CRC:
        # the C extension takes ``bytes`` only (a copy costs less than the table CRC)
        return int(google_crc32c.value(data if isinstance(data, bytes) else bytes(data)))
    assert calc_crc32c is not None
    return int(calc_crc32c(data))


_HARDWARE_CRC: Final = google_crc32c.implementation == "c"


class CorruptBatch(ValueError):
    """A fetched batch fails its CRC or its records do not add up to its length."""


# ---------------------------------------------------------------------------------- varints


def _zigzag(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _unzigzag(raw: npt.NDArray[np.uint64]) -> I64:
    return (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)


def encode_varints(values: npt.NDArray[np.int64]) -> tuple[U8, npt.NDArray[np.intp]]:
    """Zigzag varints of ``values``: an ``(n, 10)`` byte matrix (left-aligned) and sizes."""
    raw = _zigzag(values)
    n = raw.shape[0]
    out = np.zeros((n, 10), dtype=np.uint8)
    size = np.ones(n, dtype=np.intp)
    for i in range(10):
        more = raw >= np.uint64(0x80)
        out[:, i] = (raw & np.uint64(0x7F)).astype(np.uint8) | np.where(more, 0x80, 0).astype(
            np.uint8
        )
        raw = raw >> np.uint64(7)
        size += more
        if not more.any():
            break
    return out, size


def varints(buf: U8, at: I64) -> tuple[I64, I64]:
    """Zigzag varints starting at positions ``at`` of ``buf``: values and sizes in bytes.

    ``buf`` must hold 10 readable bytes past the last position (callers pad it); a varint
    longer than 10 bytes is reported as size 0 (corrupt).
    """
    raw = np.zeros(at.shape[0], dtype=np.uint64)
    size = np.zeros(at.shape[0], dtype=np.int64)
    live = np.ones(at.shape[0], dtype=np.bool_)
    idx = np.flatnonzero(live)
    for i in range(10):
        b = buf[at[idx] + i]
        raw[idx] |= (b & 0x7F).astype(np.uint64) << np.uint64(7 * i)
        size[idx] += 1
        more = b >= 0x80
        idx = idx[more]
        if idx.size == 0:
            break
    else:
        size[idx] = 0
    return _unzigzag(raw), size


# ---------------------------------------------------------------------------------- build


@dataclass(frozen=True, slots=True)
class _Run:
    """Records ``first .. stop - 1`` of a batch: their offset deltas have the same varint size,
    so they share one fixed layout of ``width`` bytes, starting at byte ``at``."""

    first: int
    stop: int
    delta_size: int
    #: length varint, attributes and timestamp delta (the bytes before the offset delta)
    head: bytes
    width: int
    at: int
    #: where the key starts within a record
    key_col: int


def _record_runs(
    n: int, kw: int, vw: int, first_delta: int, head_room: int
) -> tuple[list[_Run], int]:
    """The layout of ``n`` records of a ``kw``-byte key and a ``vw``-byte value (offset deltas
    from ``first_delta``, no headers) after ``head_room`` bytes, and the total size."""
    _, sizes = _offset_deltas(first_delta, n)
    key_len = len(_varint_bytes(kw))
    value_len = len(_varint_bytes(vw))
    runs = []
    at = head_room
    for a, b, s in sizes:
        body = 1 + 1 + s + key_len + kw + value_len + vw + 1
        head = _varint_bytes(body) + b"\x00\x00"  # length, attributes, timestampDelta 0
        width = len(head) + s + key_len + kw + value_len + vw + 1
        runs.append(_Run(a, b, s, head, width, at, len(head) + s + key_len))
        at += (b - a) * width
    return runs, at


def build_records(
    keys: U8, values: U8, first_delta: int = 0, *, head_room: int = 0
) -> tuple[bytearray, int]:
    """The records section of a batch holding ``keys[i] -> values[i]`` (equal widths each).

    Offset deltas start at ``first_delta``; the timestamp delta is 0 (the batch's timestamp is
    its records'), no headers. Returns the bytes (after ``head_room`` bytes left for the batch
    header, see :func:`finish_batch`) and the record count. Records of equal width
    differ only in the size of their offset delta, so each size class is one fixed layout,
    written straight into the returned buffer.
    """
    n, kw = keys.shape
    od, _ = _offset_deltas(first_delta, n)
    runs, total = _record_runs(n, kw, values.shape[1], first_delta, head_room)
    out = bytearray(total)
    buf = np.frombuffer(out, dtype=np.uint8)
    key_len = _varint_bytes(kw)
    value_len = _varint_bytes(values.shape[1])
    for run in runs:
        a, b = run.first, run.stop
        m = buf[run.at : run.at + (b - a) * run.width].reshape(b - a, run.width)
        at = 0
        for piece in (
            run.head,
            od[a:b, : run.delta_size],
            key_len,
            keys[a:b],
            value_len,
            values[a:b],
            b"\x00",
        ):
            if isinstance(piece, bytes):
                m[:, at : at + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                at += len(piece)
            else:
                m[:, at : at + piece.shape[1]] = piece
                at += piece.shape[1]
    return out, n


class BatchLayout:
    """The records section of a batch of ``n`` fixed-layout records, literals written once.

    What :func:`build_records` writes for every batch, a record's length, attributes, deltas,
    key and value lengths, the value's literal pieces and the headers count, is the same for
    every batch of ``n`` records of the same layout: it is laid out here once, and each
    :meth:`fill` copies it and writes only the key and the value's slots, instead of copying
    whole value rows into the batch after filling them. ``value_template`` holds the value's
    literal bytes (slot bytes are overwritten); ``value_slots`` the ``(start, stop)`` byte
    ranges of the per-record pieces within the value.
    """

    __slots__ = ("_key_width", "_runs", "_slots", "_template", "_value_len_size", "count")

    def __init__(
        self,
        key_width: int,
        value_template: bytes,
        value_slots: list[tuple[int, int]],
        n: int,
        *,
        head_room: int = 0,
    ) -> None:
        blank_keys = np.zeros((n, key_width), dtype=np.uint8)
        values = np.broadcast_to(
            np.frombuffer(value_template, dtype=np.uint8), (n, len(value_template))
        )
        template, _ = build_records(blank_keys, values, head_room=head_room)
        self._template = bytes(template)
        self._key_width = key_width
        self._slots = value_slots
        self.count = n
        self._runs, _ = _record_runs(n, key_width, len(value_template), 0, head_room)
        self._value_len_size = len(_varint_bytes(len(value_template)))

    def fill(self, keys: U8, slots: list[U8]) -> bytearray:
        """The records section with ``keys[i]`` and the slots' ``slots[j][i]`` of record ``i``."""
        out = bytearray(self._template)
        buf = np.frombuffer(out, dtype=np.uint8)
        kw = self._key_width
        for run in self._runs:
            a, b = run.first, run.stop
            rows_ = buf[run.at : run.at + (b - a) * run.width].reshape(b - a, run.width)
            rows_[:, run.key_col : run.key_col + kw] = keys[a:b]
            value_col = run.key_col + kw + self._value_len_size
            for (s0, s1), piece in zip(self._slots, slots, strict=True):
                rows_[:, value_col + s0 : value_col + s1] = piece[a:b]
        return out


@functools.lru_cache(maxsize=16)
def _offset_deltas(first: int, n: int) -> tuple[U8, tuple[tuple[int, int, int], ...]]:
    """Varints of the offset deltas ``first .. first + n - 1`` and their runs of equal size
    ``(start, stop, size)``; the same for every full batch, so computed once."""
    od, od_size = encode_varints(np.arange(first, first + n, dtype=np.int64))
    od.setflags(write=False)
    bounds = (np.flatnonzero(np.diff(od_size)) + 1).tolist()
    starts, stops = [0, *bounds], [*bounds, n]
    return od, tuple((a, b, int(od_size[a])) for a, b in zip(starts, stops, strict=True))


def _varint_bytes(value: int) -> bytes:
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def finish_batch(
    out: bytearray,
    count: int,
    *,
    timestamp_ms: int,
    producer_id: int = _NO_PRODUCER,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
) -> bytearray:
    """A complete v2 batch (base offset 0, assigned by the broker): the header is written in
    place into the first :data:`HEADER_SIZE` bytes of ``out``, which holds the records after
    them (``build_records(..., head_room=HEADER_SIZE)``)."""
    _HEADER.pack_into(
        out,
        0,
        0,  # base offset: the broker assigns it
        len(out) - 12,  # batch length: everything after base offset and this field
        -1,  # partition leader epoch: set by the broker
        2,  # magic
        0,  # crc, below
        _TRANSACTIONAL if transactional else 0,  # no compression, create time
        count - 1,  # last offset delta
        timestamp_ms,
        timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    # the CRC covers the header from the attributes on, then the records
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[_CRC_FROM:]))
    return out


# ---------------------------------------------------------------------------------- read


@dataclass(frozen=True, slots=True)
class FetchedRecords:
    """Records of one partition fetch, in offset order, as positions into ``buffer``.

    A key or value length of -1 is null (a ``None`` value is a tombstone).
    """

    buffer: U8
    offset: I64
    key_at: I64
    key_len: I64
    value_at: I64
    value_len: I64
    #: The offset to fetch next: past the last complete batch (control and aborted included).
    next_offset: int

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def key(self, i: int) -> bytes | None:
        return _slice(self.buffer, int(self.key_at[i]), int(self.key_len[i]))

    def value(self, i: int) -> bytes | None:
        return _slice(self.buffer, int(self.value_at[i]), int(self.value_len[i]))

    def pairs(self) -> list[tuple[bytes | None, bytes | None]]:
        """``(key, value)`` per record (Python objects: for tests and small reads)."""
        return [(self.key(i), self.value(i)) for i in range(len(self))]

    @staticmethod
    def from_pairs(
        pairs: list[tuple[bytes | None, bytes | None]], offsets: list[int] | None = None
    ) -> FetchedRecords:
        """Records held as Python pairs, laid out the same way (the general path's input)."""
        n = len(pairs)
        blobs: list[bytes] = []
        lens = np.empty(2 * n, dtype=np.int64)
        for i, (k, v) in enumerate(pairs):
            lens[2 * i] = -1 if k is None else len(k)
            lens[2 * i + 1] = -1 if v is None else len(v)
            blobs.append(k or b"")
            blobs.append(v or b"")
        at = np.zeros(2 * n, dtype=np.int64)
        if n:
            np.cumsum(np.maximum(lens, 0)[:-1], out=at[1:])
        buffer = np.frombuffer(b"".join(blobs) + bytes(16), dtype=np.uint8)
        return FetchedRecords(
            buffer=buffer,
            offset=np.arange(n, dtype=np.int64)
            if offsets is None
            else np.array(offsets, dtype=np.int64),
            key_at=at[0::2].copy(),
            key_len=lens[0::2].copy(),
            value_at=at[1::2].copy(),
            value_len=lens[1::2].copy(),
            next_offset=(offsets[-1] + 1 if offsets else n),
        )


def _slice(buffer: U8, at: int, length: int) -> bytes | None:
    return None if length < 0 else buffer[at : at + length].tobytes()


class _Parts:
    """Record sections (raw or decompressed) and per-record fields, collected batch by batch."""

    def __init__(self) -> None:
        self.sections: list[bytes | memoryview] = []
        self.size = 0
        self.starts: list[I64] = []  # record starts, in concatenated-section coordinates
        self.bases: list[I64] = []  # base offset of each record's batch
        self.min_offset: list[I64] = []
        # records read by aiokafka's reader: (offset, key, value)
        self.loose: list[tuple[int, bytes | None, bytes | None]] = []

    def add_section(self, section: bytes | memoryview) -> int:
        at = self.size
        self.sections.append(section)
        self.size += len(section)
        return at


def read_partition(
    data: bytes,
    fetch_offset: int,
    *,
    aborted: list[tuple[int, int]] | None = None,
    read_committed: bool = True,
    check_crcs: bool = True,
) -> FetchedRecords:
    """The records a consumer at ``fetch_offset`` reads from one partition's fetched bytes.

    ``aborted`` is the fetch response's ``(producer_id, first_offset)`` list. An incomplete
    trailing batch (cut by the fetch size) is left for the next fetch.
    """
    view = memoryview(data)
    parts = _Parts()
    pending_aborts = sorted(aborted or [], key=lambda a: a[1])
    aborted_producers: set[int] = set()
    next_offset = fetch_offset
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        base, length, _, magic = struct.unpack_from(">qiiB", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        if magic < 2:
            _read_legacy(view[pos:end], fetch_offset, parts)
            next_offset = max(next_offset, _legacy_next(view[pos:end], next_offset))
            pos = end
            continue
        (
            _,
            _,
            _,
            _,
            crc,
            attributes,
            last_delta,
            _,
            _,
            producer_id,
            _,
            _,
            count,
        ) = _HEADER.unpack_from(data, pos)
        batch = view[pos:end]
        if check_crcs and crc32c(batch[_CRC_FROM:]) != crc:
            raise CorruptBatch(f"invalid CRC in the batch at offset {base}")
        pos = end
        batch_next = base + last_delta + 1
        control = bool(attributes & _CONTROL)
        if read_committed and producer_id != _NO_PRODUCER:
            while pending_aborts and pending_aborts[0][1] <= base:
                aborted_producers.add(pending_aborts.pop(0)[0])
            if control and _is_abort_marker(batch):
                aborted_producers.discard(producer_id)
            if attributes & _TRANSACTIONAL and producer_id in aborted_producers:
                next_offset = max(next_offset, batch_next)
                continue
        next_offset = max(next_offset, batch_next)
        if control or count == 0:
            continue
        codec_id = attributes & _CODEC_MASK
        records = batch[HEADER_SIZE:] if codec_id == 0 else _decompress(codec_id, batch)
        if not _read_runs(records, base, count, fetch_offset, parts):
            _read_with_aiokafka(bytes(batch), fetch_offset, parts)
    return _assemble(parts, next_offset)


def _decompress(codec_id: int, batch: memoryview) -> bytes:
    payload = batch[HEADER_SIZE:]
    if codec_id == 1:
        return bytes(codec.gzip_decode(payload))
    if codec_id == 2:
        return bytes(codec.snappy_decode(payload))
    if codec_id == 3:
        return bytes(codec.lz4_decode(payload))
    if codec_id == 4:
        return bytes(codec.zstd_decode(payload))
    raise CorruptBatch(f"unknown compression codec {codec_id}")


def _is_abort_marker(batch: memoryview) -> bool:
    # a control record's key is (version int16, type int16); type 0 is ABORT
    record = next(iter(DefaultRecordBatch(bytes(batch))), None)
    if record is None or record.key is None or len(record.key) < 4:
        return False
    return bool(struct.unpack_from(">h", record.key, 2)[0] == 0)


def _read_runs(
    records: memoryview | bytes, base: int, count: int, fetch_offset: int, parts: _Parts
) -> bool:
    """Record starts of one batch found run by run; False if the runs are too short."""
    buf = np.frombuffer(records, dtype=np.uint8)
    n_bytes = buf.shape[0]
    starts: list[I64] = []
    pos, seen, runs = 0, 0, 0
    while seen < count:
        if pos >= n_bytes:
            raise CorruptBatch(f"batch at offset {base} ends before its {count} records")
        body, size = _varint_at(buf, pos)
        step = size + body
        if body <= 0 or pos + step > n_bytes:
            raise CorruptBatch(f"bad record length in the batch at offset {base}")
        room = min(count - seen, (n_bytes - pos) // step)
        run = 1
        if room > 1:
            cand = pos + step * np.arange(1, room, dtype=np.int64)
            same = np.ones(room - 1, dtype=np.bool_)
            for t in range(size):
                same &= buf[cand + t] == buf[pos + t]
            run = room if same.all() else 1 + int(np.argmin(same))
        starts.append(pos + step * np.arange(run, dtype=np.int64))
        pos += step * run
        seen += run
        runs += 1
        if runs > 2 and seen < _MIN_RUN * runs:
            return False
    if pos != n_bytes:
        raise CorruptBatch(f"records of the batch at offset {base} do not fill it")
    at = parts.add_section(records)
    all_starts = np.concatenate(starts) + at
    parts.starts.append(all_starts)
    parts.bases.append(np.full(all_starts.shape[0], base, dtype=np.int64))
    parts.min_offset.append(np.full(all_starts.shape[0], fetch_offset, dtype=np.int64))
    return True


def _varint_at(buf: U8, pos: int) -> tuple[int, int]:
    raw, shift, i = 0, 0, 0
    while True:
        if pos + i >= buf.shape[0] or i >= 10:
            raise CorruptBatch("truncated varint")
        b = int(buf[pos + i])
        raw |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), i


def _read_with_aiokafka(batch: bytes, fetch_offset: int, parts: _Parts) -> None:
    for record in DefaultRecordBatch(batch):
        if record.offset >= fetch_offset:
            parts.loose.append((record.offset, record.key, record.value))


def _read_legacy(batch: memoryview, fetch_offset: int, parts: _Parts) -> None:
    records = MemoryRecords(bytes(batch))
    while records.has_next():
        legacy = records.next_batch()
        assert legacy is not None
        for record in legacy:
            if record.offset >= fetch_offset:
                parts.loose.append((record.offset, record.key, record.value))


def _legacy_next(batch: memoryview, current: int) -> int:
    records = MemoryRecords(bytes(batch))
    out = current
    while records.has_next():
        legacy = records.next_batch()
        assert legacy is not None
        out = max(out, legacy.next_offset)
    return out


def _assemble(parts: _Parts, next_offset: int) -> FetchedRecords:
    # 16 spare bytes: varint reads look up to 10 bytes ahead without bounds checks
    loose_bytes = [b for _, k, v in parts.loose for b in (k or b"", v or b"")]
    buffer = np.frombuffer(b"".join([*parts.sections, *loose_bytes, bytes(16)]), dtype=np.uint8)
    if parts.starts:
        starts = np.concatenate(parts.starts)
        bases = np.concatenate(parts.bases)
        floor = np.concatenate(parts.min_offset)
        body, size = varints(buffer, starts)
        end = starts + size + body
        at = starts + size + 1  # attributes
        _, s = varints(buffer, at)
        at += s  # timestampDelta
        delta, s = varints(buffer, at)
        at += s
        key_len, s = varints(buffer, at)
        at += s
        key_at = at.copy()
        at += np.maximum(key_len, 0)
        value_len, s = varints(buffer, at)
        at += s
        value_at = at.copy()
        at += np.maximum(value_len, 0)
        if (size == 0).any() or (at >= end).any() or (key_len < -1).any() or (value_len < -1).any():
            raise CorruptBatch("a record's fields overrun its length")
        offset = bases + delta
        keep = offset >= floor  # the first batch may start before the fetch offset
        cols = [offset[keep], key_at[keep], key_len[keep], value_at[keep], value_len[keep]]
    else:
        cols = [np.empty(0, dtype=np.int64) for _ in range(5)]
    if parts.loose:
        n = len(parts.loose)
        lens = np.array(
            [-1 if x is None else len(x) for _, k, v in parts.loose for x in (k, v)],
            dtype=np.int64,
        )
        at = np.empty(2 * n, dtype=np.int64)
        at[0] = parts.size
        np.cumsum(np.maximum(lens, 0)[:-1], out=at[1:])
        at[1:] += parts.size
        extra = [
            np.array([o for o, _, _ in parts.loose], dtype=np.int64),
            at[0::2],
            lens[0::2],
            at[1::2],
            lens[1::2],
        ]
        cols = [np.concatenate([c, e]) for c, e in zip(cols, extra, strict=True)]
        order = np.argsort(cols[0], kind="stable")
        cols = [c[order] for c in cols]
    offset, key_at, key_len, value_at, value_len = cols
    return FetchedRecords(buffer, offset, key_at, key_len, value_at, value_len, next_offset)
