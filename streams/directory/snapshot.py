"""Directory snapshots: a partition's index columns on local disk, with the offset they include.

Where it sits: beside the restore of :class:`streams.directory.service.DirectoryService`. A
worker periodically (``LOA_SNAPSHOT_INTERVAL_S``) writes each owned partition's columns under
``LOA_DATA_DIR``; a worker that takes a partition over loads the newest usable snapshot and
replays only the tail of ``loa.directory.changes`` from the snapshot's offset, instead of the
whole partition. Pure file I/O and numpy, no Kafka: the caller passes what the broker says
(cluster id, log start and end offsets).

Layout (one directory per snapshot, ``<data dir>/snapshots/<topic>/<partition>/``)::

    snap-<offset, 20 digits>/
        header.json    format version, what the columns depend on, offset, rows, CRC-32s
        ids.npy ward.npy cell.npy channel.npy ...   one .npy per column, memory-mappable

A snapshot is written into a temporary directory, every file and the directory fsynced, then
renamed into place (a rename is atomic), so a crash leaves either a whole snapshot or none (and
a temporary that the next writer removes once it is an hour old).
The two newest are kept: if the newest turns out unreadable the older one still saves a replay.

Guarantee: a snapshot is used only if it is *exactly* what a replay of its partition up to
its offset gives, as far as can be checked, else the caller replays the whole partition
(slower, never wrong). Refused with a reason (:class:`SnapshotUnusable`): another format
version, cluster, topic, partition or partition count, H3 resolution, region registry or
column layout; an offset past the partition's end (the topic was re-created or truncated) or
before its log start (records it did not see were deleted); a missing, truncated or corrupt
file (checksum, shape, dtype); ids not strictly increasing. Not detectable from offsets alone:
a topic deleted, re-created *and refilled past the snapshot's offset* in the same cluster
between the snapshot and the takeover (aiokafka 0.14 does not read Kafka's topic ids); after
re-creating the changes topic, delete ``<data dir>/snapshots`` (the README says so).

Loading maps the column files copy-on-write (``mmap_mode="c"``): pages are read as the CRC
check touches them, and a later in-place merge of changes never writes back to the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.directory.index import COLUMNS, DirectoryPartition
from streams.records import CATEGORIES, CHANNELS, LANGUAGES
from streams.regions import RegionRegistry

__all__ = [
    "FORMAT_VERSION",
    "LoadedSnapshot",
    "SnapshotKey",
    "SnapshotUnusable",
    "load_snapshot",
    "partition_dir",
    "region_fingerprint",
    "write_snapshot",
]

#: Bumped whenever the files or the meaning of a column change.
FORMAT_VERSION = 1
#: Snapshots kept per partition (the newest, and one to fall back on).
KEEP = 2
_HEADER = "header.json"
_TMP = ".tmp-"
#: A temporary directory untouched this long was left by a writer that died mid-write.
ABANDONED_S = 3600.0
_PREFIX = "snap-"
_ALL_COLUMNS: dict[str, type[np.unsignedinteger]] = {"ids": np.uint64, **COLUMNS}
#: The meaning of the small integer columns: an index into these tuples, or a bit of them.
_LAYOUT = hashlib.sha256(
    orjson.dumps(
        {
            "columns": {k: np.dtype(v).str for k, v in _ALL_COLUMNS.items()},
            "channels": CHANNELS,
            "languages": LANGUAGES,
            "categories": CATEGORIES,
        }
    )
).hexdigest()[:16]


class SnapshotUnusable(Exception):
    """The snapshot cannot stand for a replay (the message says why): replay the partition.

    Not a :class:`streams.errors.LoaError`: it never leaves the directory's restore, which
    answers it with a full replay (neither retried nor rejected).
    """


def region_fingerprint(regions: RegionRegistry) -> str:
    """Identifies the registry the ``ward`` column indexes (ward index = position in it)."""
    text = "\n".join((regions.country, *regions.ward_codes))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SnapshotKey:
    """Everything a snapshot's rows depend on besides the changes it has applied."""

    #: Kafka cluster id of the changes topic's cluster.
    cluster_id: str
    #: The changes topic.
    topic: str
    #: Its partition.
    partition: int
    #: ``LOA_PARTITIONS``: recipient id mod this gives the partition.
    partitions: int
    #: ``LOA_H3_RESOLUTION`` of the ``cell`` column.
    h3_resolution: int
    #: :func:`region_fingerprint` of the registry the ``ward`` column indexes.
    regions: str
    #: Column dtypes and the code tables behind the small columns.
    layout: str = _LAYOUT


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    #: The partition's index as of ``offset`` (columns mapped from the files, copy-on-write).
    index: DirectoryPartition
    #: The next offset to replay: the snapshot includes every record below it.
    offset: int
    #: The snapshot's directory.
    path: Path


def partition_dir(data_dir: str | Path, topic: str, partition: int) -> Path:
    return Path(data_dir) / "snapshots" / topic / str(partition)


def write_snapshot(
    data_dir: str | Path,
    key: SnapshotKey,
    offset: int,
    columns: Mapping[str, np.ndarray[Any, Any]],
) -> Path | None:
    """Write ``columns`` (``ids`` plus every :data:`COLUMNS`, a compacted index) as the
    snapshot of ``key``'s partition at ``offset``; drop older ones beyond :data:`KEEP`.

    Returns the snapshot's directory, or None if one at this offset is already there (nothing
    has changed since). Raises ``OSError`` if the disk refuses (the caller logs it and goes
    on: a missing snapshot costs a replay, nothing else).
    """
    if set(columns) != set(_ALL_COLUMNS):
        raise ValueError(f"columns {sorted(columns)}, expected {sorted(_ALL_COLUMNS)}")
    rows = int(columns["ids"].shape[0])
    parent = partition_dir(data_dir, key.topic, key.partition)
    final = parent / f"{_PREFIX}{offset:020d}"
    if final.exists():
        return None
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(parent)
    tmp = parent / f"{_TMP}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        checksums = {}
        for name, dtype in _ALL_COLUMNS.items():
            column = np.ascontiguousarray(columns[name], dtype=dtype)
            if column.shape != (rows,):
                raise ValueError(f"column {name} has shape {column.shape}, ids ({rows},)")
            path = tmp / f"{name}.npy"
            with path.open("wb") as f:
                np.save(f, column, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            checksums[name] = _crc(column)
        header = {
            "format": FORMAT_VERSION,
            "key": asdict(key),
            "offset": offset,
            "rows": rows,
            "crc32": checksums,
        }
        with (tmp / _HEADER).open("wb") as f:
            f.write(orjson.dumps(header, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if final.exists():  # another writer got there first with the same offset
                return None
            raise
        _fsync_dir(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in _snapshots(parent)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_snapshot(
    data_dir: str | Path, key: SnapshotKey, *, log_start: int, log_end: int
) -> LoadedSnapshot:
    """The newest usable snapshot of ``key``'s partition, given the partition's current log
    start and end offsets; raises :class:`SnapshotUnusable` with every reason if none is."""
    parent = partition_dir(data_dir, key.topic, key.partition)
    found = _snapshots(parent)
    if not found:
        raise SnapshotUnusable(f"no snapshot in {parent}")
    reasons = []
    for path in found:
        try:
            return _load(path, key, log_start=log_start, log_end=log_end)
        except SnapshotUnusable as exc:
            reasons.append(f"{path.name}: {exc}")
    raise SnapshotUnusable("; ".join(reasons))


def _load(path: Path, key: SnapshotKey, *, log_start: int, log_end: int) -> LoadedSnapshot:
    try:
        header = orjson.loads((path / _HEADER).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SnapshotUnusable(f"unreadable header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise SnapshotUnusable(f"format {_get(header, 'format')!r}, expected {FORMAT_VERSION}")
    if header.get("key") != asdict(key):
        raise SnapshotUnusable(f"taken for {header.get('key')}, not {asdict(key)}")
    offset, rows, checksums = header.get("offset"), header.get("rows"), header.get("crc32")
    if type(offset) is not int or type(rows) is not int or not isinstance(checksums, dict):
        raise SnapshotUnusable("header lacks offset, rows or crc32")
    if offset > log_end:
        raise SnapshotUnusable(
            f"offset {offset} is past the partition's end {log_end} (topic re-created?)"
        )
    if offset < log_start:
        raise SnapshotUnusable(f"offset {offset} is before the partition's log start {log_start}")
    columns = {}
    for name, dtype in _ALL_COLUMNS.items():
        try:
            column = np.load(path / f"{name}.npy", mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SnapshotUnusable(f"{name}.npy unreadable: {exc}") from None
        if column.dtype != np.dtype(dtype) or column.shape != (rows,):
            raise SnapshotUnusable(
                f"{name}.npy is {column.dtype}{column.shape}, expected {np.dtype(dtype)}({rows},)"
            )
        if _crc(column) != checksums.get(name):
            raise SnapshotUnusable(f"{name}.npy fails its CRC-32")
        columns[name] = column
    ids = columns["ids"]
    if rows > 1 and not bool((ids[1:] > ids[:-1]).all()):
        raise SnapshotUnusable("ids are not strictly increasing")
    return LoadedSnapshot(index=DirectoryPartition(**columns), offset=offset, path=path)


def _get(header: object, name: str) -> object:
    return header.get(name) if isinstance(header, dict) else None


def _crc(column: np.ndarray[Any, Any]) -> int:
    return zlib.crc32(np.ascontiguousarray(column).data.cast("B")) if column.size else 0


def _snapshots(parent: Path) -> list[Path]:
    """Complete snapshots of a partition, newest (highest offset) first."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(
            (p for p in parent.iterdir() if p.name.startswith(_PREFIX) and p.is_dir()),
            reverse=True,
        )
    return []


def _remove_abandoned(parent: Path) -> None:
    """Remove temporaries of writers that died mid-write (kill -9, power loss): never read,
    they would only fill the disk. A live writer's temporary is younger than an hour."""
    now = time.time()
    for path in parent.glob(f"{_TMP}*"):
        with contextlib.suppress(FileNotFoundError):
            if now - path.stat().st_mtime > ABANDONED_S:
                shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
