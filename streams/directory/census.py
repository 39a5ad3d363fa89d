"""The directory census: how many subscribers one partition holds, by where and how reachable,
small enough for every worker to hold every partition's (pure numpy, no Kafka).

Where it sits: beside the directory. Ingest runs on whichever worker owns the inbound
partition, but the subscriber directory is spread over the workers by partition, so ingest
cannot select an alert's audience itself. Each :class:`~streams.directory.service.
DirectoryService` therefore publishes a :class:`Census` of every partition it owns to the
compacted topic ``<prefix>.directory.census`` (key = partition number), and ingest counts an
alert's reach from the latest census of every partition (:func:`reach`, :func:`audience_reach`,
:class:`streams.directory.census_replica.CensusReplica`) before it decides.

A census holds, for one partition at one changes-topic offset:

* ``ward_counts[ward, channel, test]`` (``uint32``): subscribers by home ward, first channel
  and test-audience flag. Region codes target wards, so this alone counts a region alert.
* the *located* table: for subscribers with a location cell, one row per distinct
  ``(cell, ward, channel, test)`` with its count. A polygon or circle reaches the rows whose
  cell lies inside it; the rows whose home ward the alert's codes already target are counted
  once, through their ward.

:func:`reach` counts exactly what :func:`streams.fanout.plan.audience_rows` selects *before*
category opt-outs, frequency caps and lineage dedup (it models none of them), by first channel.
A census is as fresh as its ``offset`` and ``made_at`` say (the service writes one after a
partition is restored and then at most every ``LOA_CENSUS_INTERVAL_S`` while it changes).

Wire form (:func:`encode_census`, :func:`decode_census`): a magic, a format version, a JSON
header (partition, offset, time, what the ward and channel indexes mean, array lengths) and a
zlib-compressed body of little-endian numpy arrays. The decoder checks every length, index and
order and refuses anything else with :class:`CensusUnusable`; it never crashes its reader and
never decompresses more than the header announced.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streams.directory.cells import CellSet, cell_resolution
from streams.directory.index import FLAG_TEST
from streams.directory.snapshot import region_fingerprint
from streams.records import CHANNELS
from streams.regions import RegionRegistry
from streams.topics import CENSUS_MAX_MESSAGE_BYTES

__all__ = [
    "CENSUS_VERSION",
    "Census",
    "CensusUnusable",
    "Reach",
    "audience_reach",
    "build_census",
    "decode_census",
    "encode_census",
    "reach",
]

#: Format version of the wire form; a reader refuses any other.
CENSUS_VERSION = 1
_MAGIC = b"LOA-CENSUS"
_PREFIX = struct.Struct(">10sHI")  # magic, version, header length
_MAX_HEADER = 64 * 1024
#: Largest body a reader inflates (and a writer writes): bounds what a forged header costs.
_MAX_BODY = 4 * CENSUS_MAX_MESSAGE_BYTES
#: Rows per ``bincount`` call while building a census (about 3 ms each).
_PIECE = 1 << 20
#: Room left in the topic's ``max.message.bytes`` for the record and batch headers.
_RECORD_ROOM = 64 * 1024

U32 = npt.NDArray[np.uint32]


class CensusUnusable(ValueError):
    """A census record that cannot be counted (the message says why): garbage, another format
    version, another region registry or channel list, inconsistent arrays. Poison: the same
    bytes never become usable; the reader leaves that partition out of its counts (a partial
    :class:`Reach`) until the partition's owner writes a good one."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Census:
    """One directory partition's subscribers counted by (ward, first channel, test flag), and
    its located subscribers by (cell, ward, first channel, test flag)."""

    #: The directory partition.
    partition: int
    #: The next offset of the changes topic: the census includes every change before it.
    offset: int
    #: When the census was made (Unix seconds).
    made_at: float
    #: :func:`streams.directory.snapshot.region_fingerprint` of the registry ``ward`` indexes.
    regions: str
    #: What the channel indexes mean (``streams.records.CHANNELS`` of the writer).
    channels: tuple[str, ...]
    #: H3 resolution of the directory's location cells (informational).
    h3_resolution: int
    #: ``(wards, channels, 2)``: subscribers by home ward, first channel, test flag (0/1).
    ward_counts: U32
    #: Distinct location cells of the located table, sorted.
    cells: npt.NDArray[np.uint64]
    #: Located rows per cell of ``cells`` (>= 1): the rows are sorted by (cell, ward, kind),
    #: distinct, so cell ``i`` owns the ``runs[i]`` rows after those of cells ``0 .. i-1``.
    runs: U32
    #: Per located row: home ward.
    ward: npt.NDArray[np.uint16]
    #: Per located row: ``first channel * 2 + test flag``.
    kind: npt.NDArray[np.uint8]
    #: Per located row: how many subscribers it stands for (>= 1).
    count: U32

    @property
    def n_wards(self) -> int:
        return int(self.ward_counts.shape[0])

    @property
    def subscribers(self) -> int:
        return int(self.ward_counts.sum(dtype=np.uint64))

    @property
    def located(self) -> int:
        return int(self.count.sum(dtype=np.uint64))


@dataclass(frozen=True, slots=True)
class Reach:
    """An alert's targeted audience, counted from the directory census.

    Targeted as the fan-out selects (region codes, location cells, test audience), by first
    channel, *before* category opt-outs, frequency caps and lineage dedup. Ingest puts it in the
    decision (:mod:`streams.ingest.reach`).
    """

    #: Sum of ``by_channel``.
    total: int
    #: Subscribers by first channel (every name in ``streams.records.CHANNELS``).
    by_channel: dict[str, int]
    #: Reached through region codes (home ward targeted).
    by_region_codes: int
    #: Reached only through a polygon's or circle's cells (home ward not targeted).
    located_only: int
    #: Partitions whose census was counted ...
    partitions_counted: int
    #: ... of this many: fewer means the count is partial (a lower bound).
    partitions: int
    #: ``made_at`` of the oldest census counted (Unix seconds); None when none was.
    as_of: float | None

    @property
    def complete(self) -> bool:
        return self.partitions_counted >= self.partitions

    def to_doc(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_channel": dict(self.by_channel),
            "by_region_codes": self.by_region_codes,
            "located_only": self.located_only,
            "partitions_counted": self.partitions_counted,
            "partitions": self.partitions,
            "complete": self.complete,
            "as_of": self.as_of,
        }


def build_census(
    columns: Mapping[str, npt.NDArray[Any]],
    *,
    partition: int,
    offset: int,
    made_at: float,
    regions: RegionRegistry,
    h3_resolution: int,
) -> Census:
    """The census of a partition's columns (``DirectoryPartition.columns()``: ``ward``,
    ``cell``, ``channel``, ``flags`` are read, never written). One ``bincount`` over every
    row, one sort over the located rows; arithmetic in place, since at 10M rows each
    temporary column is tens of megabytes of fresh memory."""
    ward, channel = columns["ward"], columns["channel"]
    n_wards, n_channels = regions.n_wards, len(CHANNELS)
    if ward.size and (int(ward.max()) >= n_wards or int(channel.max()) >= n_channels):
        raise ValueError("a ward or channel index outside the registry or CHANNELS")
    kind = columns["flags"] & FLAG_TEST  # kind = channel * 2 + test flag
    np.minimum(kind, np.uint8(1), out=kind)
    kind += channel
    kind += channel
    slots = ward.astype(np.uint32)
    slots *= np.uint32(2 * n_channels)
    slots += kind
    ward_counts = np.zeros(n_wards * 2 * n_channels, dtype=np.int64)
    # bincount holds the GIL (30 ms at 10M rows): in pieces, the event loop beside it runs
    for at in range(0, slots.shape[0], _PIECE):
        ward_counts += np.bincount(slots[at : at + _PIECE], minlength=ward_counts.shape[0])
    del slots
    located = np.flatnonzero(columns["cell"])
    cells, runs, lward, lkind, count = _located_table(
        columns["cell"][located], ward[located], kind[located]
    )
    return Census(
        partition=partition,
        offset=offset,
        made_at=made_at,
        regions=region_fingerprint(regions),
        channels=CHANNELS,
        h3_resolution=h3_resolution,
        ward_counts=ward_counts.astype(np.uint32).reshape(n_wards, n_channels, 2),
        cells=cells,
        runs=runs,
        ward=lward,
        kind=lkind,
        count=count,
    )


def _located_table(
    cell: npt.NDArray[np.uint64], ward: npt.NDArray[np.uint16], kind: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint64], U32, npt.NDArray[np.uint16], npt.NDArray[np.uint8], U32]:
    """Distinct (cell, ward, kind) rows with counts, sorted.

    One in-place sort of one ``uint64`` key per located row, ``(cell id, ward, kind)``
    packed. The cell id is the H3 index's base cell and digits (7 + 3 * resolution bits: 28
    at resolution 7) when every cell shares mode and resolution, which leaves room up to
    resolution 11; else the cell's rank among the distinct cells, which costs a second sort.
    """
    empty = np.empty(0, dtype=np.uint32)
    if cell.size == 0:
        return np.empty(0, np.uint64), empty, np.empty(0, np.uint16), np.empty(0, np.uint8), empty
    top = np.uint64(52)  # bits 52..63: mode, reserved bits and resolution
    res = int(cell_resolution(cell[:1])[0])
    tail = np.uint64(3 * (15 - res))  # the unused digits: all ones in a valid cell
    ones = np.uint64((1 << int(tail)) - 1)
    head = (cell[0] >> top) << top
    packable = (
        7 + 3 * res + 24 <= 64
        and bool(((cell >> top) == (head >> top)).all())
        and bool(((cell & ones) == ones).all())
    )
    distinct = cell[:0]
    if packable:
        key = cell >> tail
        key &= np.uint64((1 << (7 + 3 * res)) - 1)
    else:
        distinct, rank = np.unique(cell, return_inverse=True)
        key = rank.astype(np.uint64)
    key <<= np.uint64(16)
    key |= ward
    key <<= np.uint64(8)
    key |= kind
    key.sort()
    new = np.empty(key.shape[0], dtype=np.bool_)
    new[0] = True
    np.not_equal(key[1:], key[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    keys = key[starts]
    count = np.diff(starts, append=key.shape[0]).astype(np.uint32)
    ids = keys >> np.uint64(24)
    by_row = head | (ids << tail) | ones if packable else distinct[ids.astype(np.intp)]
    # keys are sorted by cell first, so each cell's rows are one run
    np.not_equal(by_row[1:], by_row[:-1], out=new[1 : by_row.shape[0]])
    cell_starts = np.flatnonzero(new[: by_row.shape[0]])
    return (
        by_row[cell_starts],
        np.diff(cell_starts, append=by_row.shape[0]).astype(np.uint32),
        ((keys >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.uint16),
        (keys & np.uint64(0xFF)).astype(np.uint8),
        count,
    )


# -- wire form

# body arrays in order: (name, dtype); lengths come from the header
_BODY = (
    ("ward_counts", "<u4"),
    ("cells", "<u8"),  # first cell, then differences to the previous one
    ("runs", "<u4"),  # located rows per cell
    ("ward", "<u2"),
    ("kind", "u1"),
    ("count", "<u4"),
)


def encode_census(census: Census, *, level: int = 1) -> bytes:
    """The census as bytes (header, then the zlib-compressed arrays); raises ``ValueError``
    when the result would not fit ``CENSUS_MAX_MESSAGE_BYTES`` (the census topic would refuse
    it) or its arrays exceed what a reader inflates (``4 * CENSUS_MAX_MESSAGE_BYTES``).
    zlib level 1: at 10M synthetic subscribers 4.4 MB in 0.13 s, where level 6 gives 2.9 MB
    in 0.7 s (docs/census.md); the writer's CPU matters more than the bytes."""
    cells = np.diff(census.cells, prepend=np.uint64(0)).astype("<u8")
    arrays = (
        census.ward_counts.reshape(-1),
        cells,
        census.runs,
        census.ward,
        census.kind,
        census.count,
    )
    body = b"".join(
        np.ascontiguousarray(a, dtype=dt).tobytes()
        for a, (_, dt) in zip(arrays, _BODY, strict=True)
    )
    header = orjson.dumps(
        {
            "partition": census.partition,
            "offset": census.offset,
            "made_at": census.made_at,
            "regions": census.regions,
            "channels": list(census.channels),
            "h3_resolution": census.h3_resolution,
            "wards": census.n_wards,
            "cells": int(census.cells.shape[0]),
            "rows": int(census.count.shape[0]),
            "body_bytes": len(body),
        }
    )
    out = _PREFIX.pack(_MAGIC, CENSUS_VERSION, len(header)) + header + zlib.compress(body, level)
    if len(out) > CENSUS_MAX_MESSAGE_BYTES - _RECORD_ROOM or len(body) > _MAX_BODY:
        raise ValueError(
            f"census of partition {census.partition} is {len(out)} bytes, over the census"
            f" topic's {CENSUS_MAX_MESSAGE_BYTES}"
        )
    return out


def decode_census(raw: bytes) -> Census:
    """The census ``raw`` holds; raises :class:`CensusUnusable` for anything else (never
    another exception, never more memory than the announced arrays)."""
    try:
        return _decode(raw)
    except CensusUnusable:
        raise
    except Exception as exc:  # whatever the bytes are, the reader gets one kind of refusal
        raise CensusUnusable(f"not a census: {type(exc).__name__}: {exc}") from None


def _decode(raw: bytes) -> Census:
    if len(raw) < _PREFIX.size or raw[: len(_MAGIC)] != _MAGIC:
        raise CensusUnusable("not a census (no census magic)")
    _, version, header_len = _PREFIX.unpack_from(raw)
    if version != CENSUS_VERSION:
        raise CensusUnusable(f"census format version {version}, this reader reads {CENSUS_VERSION}")
    if header_len > _MAX_HEADER or _PREFIX.size + header_len > len(raw):
        raise CensusUnusable("census header length out of bounds")
    h = orjson.loads(raw[_PREFIX.size : _PREFIX.size + header_len])
    if not isinstance(h, dict):
        raise CensusUnusable("census header is not an object")
    ints = ("partition", "offset", "h3_resolution", "wards", "cells", "rows", "body_bytes")
    for name in ints:
        if type(h.get(name)) is not int or h[name] < 0:
            raise CensusUnusable(f"census header field {name}: not a count")
    if not isinstance(h.get("made_at"), int | float) or not isinstance(h.get("regions"), str):
        raise CensusUnusable("census header: made_at or regions missing")
    channels = h.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise CensusUnusable("census header: channels is not a list of names")
    if not 0 < len(channels) <= 127 or h["wards"] > 1 << 16:
        raise CensusUnusable("census header: channel or ward count out of range")
    lengths = (h["wards"] * len(channels) * 2, h["cells"], h["cells"], *([h["rows"]] * 3))
    sizes = [n * np.dtype(dt).itemsize for n, (_, dt) in zip(lengths, _BODY, strict=True)]
    if sum(sizes) != h["body_bytes"] or h["body_bytes"] > _MAX_BODY:
        raise CensusUnusable("census header: array lengths and body size disagree")
    inflate = zlib.decompressobj()
    body = inflate.decompress(raw[_PREFIX.size + header_len :], h["body_bytes"])
    if len(body) != h["body_bytes"] or not inflate.eof or inflate.unconsumed_tail:
        raise CensusUnusable("census body is truncated, corrupt or longer than announced")
    arrays, at = [], 0
    for n, size, (_, dt) in zip(lengths, sizes, _BODY, strict=True):
        arrays.append(np.frombuffer(body, dtype=dt, count=n, offset=at))
        at += size
    flat_counts, deltas, runs, ward, kind, count = arrays
    cells = np.cumsum(deltas, dtype=np.uint64)
    _check_located(h, len(channels), cells, deltas, runs, ward, kind, count)
    return Census(
        partition=h["partition"],
        offset=h["offset"],
        made_at=float(h["made_at"]),
        regions=h["regions"],
        channels=tuple(channels),
        h3_resolution=h["h3_resolution"],
        ward_counts=flat_counts.astype(np.uint32).reshape(h["wards"], len(channels), 2),
        cells=cells,
        runs=runs.astype(np.uint32),
        ward=ward.astype(np.uint16),
        kind=kind.astype(np.uint8),
        count=count.astype(np.uint32),
    )


def _check_located(
    h: Mapping[str, Any],
    n_channels: int,
    cells: npt.NDArray[np.uint64],
    deltas: npt.NDArray[np.uint64],
    runs: npt.NDArray[np.uint32],
    ward: npt.NDArray[np.uint16],
    kind: npt.NDArray[np.uint8],
    count: npt.NDArray[np.uint32],
) -> None:
    """Refuse a located table that a correct writer cannot have made."""
    if cells.size and (cells[0] == 0 or bool((deltas[1:] == 0).any())):
        raise CensusUnusable("census cells are not distinct, increasing and non-zero")
    if cells.size and bool((cells[1:] < cells[:-1]).any()):
        raise CensusUnusable("census cells overflow")
    if bool((runs == 0).any()) or int(runs.sum(dtype=np.uint64)) != h["rows"]:
        raise CensusUnusable("census cell runs do not add up to its rows")
    if bool((count == 0).any()):
        raise CensusUnusable("census row with a zero count")
    if ward.size and (int(ward.max()) >= h["wards"] or int(kind.max()) >= 2 * n_channels):
        raise CensusUnusable("census row with a ward or channel outside its header")
    # distinct (ward, kind) within each cell: the packed key increases inside every run
    key = (ward.astype(np.uint32) << np.uint32(8)) | kind
    first = np.zeros(ward.shape[0], dtype=np.bool_)
    first[np.cumsum(runs[:-1], dtype=np.int64)] = True
    if ward.size > 1 and bool(((key[1:] <= key[:-1]) & ~first[1:]).any()):
        raise CensusUnusable("census rows of a cell are not distinct and sorted")


# -- counting


def reach(
    census_by_partition: Mapping[int, Census],
    *,
    ward_mask: npt.NDArray[np.bool_],
    cells: CellSet | None,
    test_only: bool,
    partitions: int,
) -> Reach:
    """The audience of (``ward_mask`` home wards, ``cells`` locations, test audience or not)
    over partitions ``0 .. partitions - 1``, as :func:`streams.fanout.plan.audience_rows`
    selects it before opt-outs. A missing partition, or a census whose ward count or channels
    do not fit, is left out and shows in ``partitions_counted``."""
    n_channels = len(CHANNELS)
    by_ward = np.zeros(n_channels, dtype=np.int64)
    located = np.zeros(n_channels, dtype=np.int64)
    tests = slice(1, 2) if test_only else slice(0, 2)
    counted: list[Census] = []
    for p in range(partitions):
        census = census_by_partition.get(p)
        if census is None or census.n_wards != ward_mask.shape[0] or census.channels != CHANNELS:
            continue
        counted.append(census)
        by_ward += census.ward_counts[ward_mask][:, :, tests].sum(axis=(0, 2), dtype=np.int64)
        if cells is not None and census.cells.size:
            located += _located_only(census, ward_mask, cells, test_only)
    by_channel = {name: int(by_ward[i] + located[i]) for i, name in enumerate(CHANNELS)}
    return Reach(
        by_channel=by_channel,
        total=sum(by_channel.values()),
        by_region_codes=int(by_ward.sum()),
        located_only=int(located.sum()),
        partitions_counted=len(counted),
        partitions=partitions,
        as_of=min((c.made_at for c in counted), default=None),
    )


def _located_only(
    census: Census, ward_mask: npt.NDArray[np.bool_], cells: CellSet, test_only: bool
) -> npt.NDArray[np.int64]:
    """By first channel: located rows inside ``cells`` whose home ward is not targeted."""
    inside = np.flatnonzero(cells.contains(census.cells))  # one test per distinct cell
    if inside.size == 0:
        return np.zeros(len(CHANNELS), dtype=np.int64)
    # the rows of the cells inside (each cell's rows are one run): a small shape reads few
    ends = np.cumsum(census.runs, dtype=np.int64)
    runs = census.runs[inside].astype(np.int64)
    before = np.cumsum(runs) - runs  # where each inside cell's rows start among those taken
    rows = np.arange(int(runs.sum()), dtype=np.int64) + np.repeat(
        ends[inside] - runs - before, runs
    )
    keep = ~ward_mask[census.ward[rows]]
    kind = census.kind[rows]
    if test_only:
        keep &= (kind & np.uint8(1)) != 0
    # float64 weights are exact up to 2**53 subscribers
    per_channel = np.bincount(
        kind[keep] >> np.uint8(1), weights=census.count[rows][keep], minlength=len(CHANNELS)
    )
    return np.rint(per_channel).astype(np.int64)


def audience_reach(
    census_by_partition: Mapping[int, Census],
    regions: RegionRegistry,
    *,
    targets: Sequence[str],
    cells: Sequence[str],
    test_only: bool,
    partitions: int,
) -> Reach:
    """:func:`reach` of an alert as its fan-out orders carry it: region ``targets`` codes,
    compacted H3 ``cells`` (hex), ``test_only``. A census of another region registry is not
    counted. Raises :class:`streams.errors.UnknownRegion` for a code not in ``regions``."""
    mask = regions.ward_mask((f"/targets/{i}", code) for i, code in enumerate(targets))
    area = CellSet.of(int(c, 16) for c in cells) if cells else None
    fingerprint = region_fingerprint(regions)
    fitting = {p: c for p, c in census_by_partition.items() if c.regions == fingerprint}
    return reach(fitting, ward_mask=mask, cells=area, test_only=test_only, partitions=partitions)
