from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streams.directory.index import COLUMNS, DirectoryPartition
from streams.directory.snapshot import (
    ABANDONED_S,
    KEEP,
    SnapshotKey,
    SnapshotUnusable,
    load_snapshot,
    partition_dir,
    region_fingerprint,
    write_snapshot,
)
from streams.directory.synthetic import synthetic_subscribers
from streams.regions import registry
from streams.settings.load import load_settings

ALL = ("ids", *COLUMNS)


@pytest.fixture(scope="module")
def key() -> SnapshotKey:
    return SnapshotKey(
        cluster_id="c1",
        topic="loa.directory.changes",
        partition=3,
        partitions=8,
        h3_resolution=7,
        regions=region_fingerprint(registry()),
    )


def _index(n: int = 5000, seed: int = 1) -> DirectoryPartition:
    index = DirectoryPartition()
    index.apply(synthetic_subscribers(n, seed, registry(), optout_share=0.1))
    index.compact()
    return index


def _same(a: DirectoryPartition, b: DirectoryPartition) -> bool:
    return all(np.array_equal(getattr(a, c), getattr(b, c)) for c in ALL)


def test_snapshot_loads_back_the_same_columns_and_offset(tmp_path: Path, key: SnapshotKey) -> None:
    index = _index()
    path = write_snapshot(tmp_path, key, 1234, index.columns())
    assert path is not None
    loaded = load_snapshot(tmp_path, key, log_start=0, log_end=2000)
    assert loaded.offset == 1234
    assert _same(loaded.index, index)


def test_loaded_index_takes_changes_without_touching_the_files(
    tmp_path: Path, key: SnapshotKey
) -> None:
    index = _index()
    write_snapshot(tmp_path, key, 10, index.columns())
    first = load_snapshot(tmp_path, key, log_start=0, log_end=10).index
    update = synthetic_subscribers(100, 9, registry(), id_base=0)  # same ids, new values
    first.apply(update)
    first.compact()
    again = load_snapshot(tmp_path, key, log_start=0, log_end=10).index
    assert _same(again, index)
    assert not _same(first, index)


def test_changes_after_columns_are_handed_out_do_not_alter_them(key: SnapshotKey) -> None:
    index = _index()
    handed = {name: column.copy() for name, column in index.columns().items()}
    columns = index.columns()
    index.apply(synthetic_subscribers(100, 9, registry(), id_base=0))
    index.compact()
    assert all(np.array_equal(columns[c], handed[c]) for c in ALL)


def test_empty_partition_round_trips(tmp_path: Path, key: SnapshotKey) -> None:
    write_snapshot(tmp_path, key, 0, DirectoryPartition().columns())
    loaded = load_snapshot(tmp_path, key, log_start=0, log_end=0)
    assert len(loaded.index) == 0 and loaded.offset == 0


def test_missing_snapshot_is_unusable(tmp_path: Path, key: SnapshotKey) -> None:
    with pytest.raises(SnapshotUnusable, match="no snapshot"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


@pytest.mark.parametrize(
    "field, value",
    [
        ("cluster_id", "another-cluster"),
        ("topic", "other.directory.changes"),
        ("partitions", 16),
        ("h3_resolution", 8),
        ("regions", "0000000000000000"),
        ("layout", "0000000000000000"),
    ],
)
def test_snapshot_of_other_settings_or_cluster_is_unusable(
    tmp_path: Path, key: SnapshotKey, field: str, value: object
) -> None:
    write_snapshot(tmp_path, replace(key, **{field: value}), 10, _index().columns())
    # the other topic's snapshot lives under its own name: copy it where this key looks
    other = partition_dir(tmp_path, value if field == "topic" else key.topic, key.partition)
    mine = partition_dir(tmp_path, key.topic, key.partition)
    if other != mine:
        mine.parent.mkdir(parents=True, exist_ok=True)
        other.rename(mine)
    with pytest.raises(SnapshotUnusable, match="taken for"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


def test_snapshot_past_the_partition_end_is_unusable(tmp_path: Path, key: SnapshotKey) -> None:
    write_snapshot(tmp_path, key, 500, _index().columns())
    with pytest.raises(SnapshotUnusable, match="past the partition's end"):
        load_snapshot(tmp_path, key, log_start=0, log_end=499)


def test_snapshot_before_the_log_start_is_unusable(tmp_path: Path, key: SnapshotKey) -> None:
    write_snapshot(tmp_path, key, 500, _index().columns())
    with pytest.raises(SnapshotUnusable, match="before the partition's log start"):
        load_snapshot(tmp_path, key, log_start=501, log_end=900)


def test_corrupted_column_fails_its_checksum(tmp_path: Path, key: SnapshotKey) -> None:
    path = write_snapshot(tmp_path, key, 10, _index().columns())
    assert path is not None
    ward = path / "ward.npy"
    data = bytearray(ward.read_bytes())
    data[-7] ^= 0x40  # one bit of one subscriber's ward
    ward.write_bytes(bytes(data))
    with pytest.raises(SnapshotUnusable, match=r"ward\.npy fails its CRC-32"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


@pytest.mark.parametrize("name", ["ids.npy", "optout.npy", "header.json"])
def test_truncated_file_is_unusable(tmp_path: Path, key: SnapshotKey, name: str) -> None:
    path = write_snapshot(tmp_path, key, 10, _index().columns())
    assert path is not None
    target = path / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(SnapshotUnusable):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


def test_deleted_column_file_is_unusable(tmp_path: Path, key: SnapshotKey) -> None:
    path = write_snapshot(tmp_path, key, 10, _index().columns())
    assert path is not None
    (path / "cell.npy").unlink()
    with pytest.raises(SnapshotUnusable, match=r"cell\.npy unreadable"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


def test_unsorted_ids_are_unusable_even_with_matching_checksums(
    tmp_path: Path, key: SnapshotKey
) -> None:
    columns = _index().columns()
    columns = {name: column[::-1].copy() for name, column in columns.items()}
    write_snapshot(tmp_path, key, 10, columns)
    with pytest.raises(SnapshotUnusable, match="strictly increasing"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)


def test_corrupt_newest_snapshot_falls_back_to_the_older_one(
    tmp_path: Path, key: SnapshotKey
) -> None:
    old = _index(seed=1)
    write_snapshot(tmp_path, key, 100, old.columns())
    newest = write_snapshot(tmp_path, key, 200, _index(seed=2).columns())
    assert newest is not None
    (newest / "ids.npy").write_bytes(b"garbage")
    loaded = load_snapshot(tmp_path, key, log_start=0, log_end=300)
    assert loaded.offset == 100 and _same(loaded.index, old)


def test_only_the_newest_snapshots_are_kept_and_no_temporary_is_left(
    tmp_path: Path, key: SnapshotKey
) -> None:
    index = _index()
    for offset in (10, 20, 30, 40):
        write_snapshot(tmp_path, key, offset, index.columns())
    names = sorted(p.name for p in partition_dir(tmp_path, key.topic, key.partition).iterdir())
    assert names == [f"snap-{o:020d}" for o in (30, 40)][-KEEP:]


def test_a_snapshot_at_an_offset_already_written_is_not_rewritten(
    tmp_path: Path, key: SnapshotKey
) -> None:
    index = _index()
    assert write_snapshot(tmp_path, key, 10, index.columns()) is not None
    assert write_snapshot(tmp_path, key, 10, index.columns()) is None


@pytest.mark.parametrize("raw", ["-1", "nan", "soon"])
def test_unusable_snapshot_interval_stops_with_a_clear_error(raw: str) -> None:
    with pytest.raises(ValueError, match="LOA_SNAPSHOT_INTERVAL_S"):
        load_settings({"LOA_SNAPSHOT_INTERVAL_S": raw})


def test_snapshots_are_on_by_default_and_zero_turns_them_off() -> None:
    assert load_settings({}).snapshot_interval_s > 0
    assert load_settings({"LOA_SNAPSHOT_INTERVAL_S": "0"}).snapshot_interval_s == 0


def test_a_writer_killed_mid_write_leaves_nothing_that_is_loaded_and_its_leftover_is_removed(
    tmp_path: Path, key: SnapshotKey
) -> None:
    parent = partition_dir(tmp_path, key.topic, key.partition)
    leftover = parent / ".tmp-dead-writer"
    leftover.mkdir(parents=True)
    (leftover / "ids.npy").write_bytes(b"half a column")
    with pytest.raises(SnapshotUnusable, match="no snapshot"):
        load_snapshot(tmp_path, key, log_start=0, log_end=10)
    hour_ago = time.time() - ABANDONED_S - 60
    os.utime(leftover, (hour_ago, hour_ago))
    write_snapshot(tmp_path, key, 10, _index().columns())
    assert [p.name for p in parent.iterdir()] == [f"snap-{10:020d}"]
