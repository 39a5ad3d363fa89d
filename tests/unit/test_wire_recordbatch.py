"""Record batches built and read column-wise agree with aiokafka's own builder and reader.

aiokafka's ``DefaultRecordBatchBuilder`` and its consumer-side ``PartitionRecords`` (the code a
read_committed ``AIOKafkaConsumer`` runs on every fetched partition) are the oracle: whatever
mix of batches a partition holds, ``read_partition`` must return exactly the records, offsets
and next fetch offset that aiokafka's consumer would.
"""

from __future__ import annotations

import struct

import numpy as np
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.directory.synthetic import synthetic_subscribers
from streams.directory.wire import decode_changes, decode_fetched, encode_matrices
from streams.kafkaio.recordbatch import (
    HEADER_SIZE,
    BatchLayout,
    FetchedRecords,
    build_records,
    finish_batch,
    read_partition,
)
from streams.regions import registry

TP = TopicPartition("t", 0)


def _oracle(
    data: bytes, fetch_offset: int, aborted: list[tuple[int, int]]
) -> list[tuple[int, bytes | None, bytes | None]]:
    records = PartitionRecords(
        TP, MemoryRecords(data), aborted, fetch_offset, None, None, True, READ_COMMITTED
    )
    return [(r.offset, r.key, r.value) for r in records]


def _ours(fetched: FetchedRecords) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(int(o), k, v) for o, (k, v) in zip(fetched.offset, fetched.pairs(), strict=True)]


def _stamp(batch: bytes | bytearray, base: int) -> bytes:
    return struct.pack(">q", base) + bytes(batch[8:])


def _aiokafka_batch(
    base: int,
    records: list[tuple[int, bytes | None, bytes | None]],
    *,
    producer_id: int = -1,
    transactional: bool = False,
    codec: int = 0,
) -> bytes:
    """A batch from aiokafka's builder; ``records`` are ``(offset delta, key, value)``."""
    builder = DefaultRecordBatchBuilder(
        2, codec, int(transactional), producer_id, 0 if producer_id >= 0 else -1, 0, 1 << 24
    )
    for delta, key, value in records:
        assert builder.append(delta, timestamp=1_700_000_000_000, key=key, value=value, headers=[])
    return _stamp(builder.build(), base)


def _control(base: int, producer_id: int, *, abort: bool) -> bytes:
    """A transaction marker: a control batch whose one record's key says ABORT or COMMIT."""
    builder = DefaultRecordBatchBuilder(2, 0, 1, producer_id, 0, -1, 1 << 16)
    builder.append(
        0, timestamp=0, key=struct.pack(">hh", 0, 0 if abort else 1), value=b"\0" * 6, headers=[]
    )
    raw = bytearray(builder.build())
    attributes = struct.unpack_from(">h", raw, 21)[0] | 0x20
    struct.pack_into(">h", raw, 21, attributes)
    struct.pack_into(">I", raw, 17, calc_crc32c(raw[21:]))
    return _stamp(raw, base)


def test_built_batches_read_back_by_aiokafka_with_valid_crc() -> None:
    r = registry()
    fixed, _ = encode_matrices(synthetic_subscribers(3_000, 4, r), r)
    keys, values = fixed[-1]
    out, count = build_records(keys, values, head_room=HEADER_SIZE)
    batch = finish_batch(out, count, timestamp_ms=123, producer_id=7, producer_epoch=1)
    read = DefaultRecordBatch(bytes(batch))
    assert read.validate_crc()
    assert (read.producer_id, read.producer_epoch, read.next_offset) == (7, 1, count)
    got = [(x.offset, x.key, x.value, x.timestamp) for x in read]
    assert got == [(i, keys[i].tobytes(), values[i].tobytes(), 123) for i in range(keys.shape[0])]


key_st = st.one_of(st.none(), st.binary(max_size=12))
value_st = st.one_of(st.none(), st.binary(max_size=40))
batch_st = st.tuples(
    st.sampled_from(["plain", "same", "txn-commit", "txn-abort", "gzip"]),
    st.lists(st.tuples(st.integers(1, 3), key_st, value_st), min_size=1, max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(batch_st, min_size=1, max_size=8), st.integers(0, 30), st.integers(0, 200))
def test_read_partition_returns_what_a_read_committed_consumer_reads(
    batches: list[tuple[str, list[tuple[int, bytes | None, bytes | None]]]],
    skip: int,
    cut: int,
) -> None:
    data = b""
    aborted: list[tuple[int, int]] = []
    offset = 0
    first_last = 0
    for i, (kind, records) in enumerate(batches):
        # offset gaps as compaction leaves them
        deltas = np.cumsum([gap for gap, _, _ in records]).tolist()
        deltas = [d - deltas[0] for d in deltas]
        if kind == "same":  # equal-length records: the column-wise path
            recs = [(d, b"%06d" % d, b"v" * 20) for d in deltas]
        else:
            recs = [(d, k, v) for d, (_, k, v) in zip(deltas, records, strict=True)]
        pid = 100 + i
        if kind.startswith("txn"):
            data += _aiokafka_batch(offset, recs, producer_id=pid, transactional=True)
            if kind == "txn-abort":
                aborted.append((pid, offset))
            offset += deltas[-1] + 1
            data += _control(offset, pid, abort=kind == "txn-abort")
            offset += 1
        else:
            data += _aiokafka_batch(offset, recs, codec=1 if kind == "gzip" else 0)
            offset += deltas[-1] + 1
        if i == 0:
            first_last = offset - 1
    # the broker answers from the batch holding the fetch offset
    fetch_offset = min(skip, first_last)
    # a fetch may end inside the last batch: that batch waits for the next fetch
    data = data[: len(data) - cut] if cut < len(data) - HEADER_SIZE else data
    fetched = read_partition(data, fetch_offset, aborted=list(aborted))
    expected = _oracle(data, fetch_offset, list(aborted))
    assert _ours(fetched) == expected
    oracle = PartitionRecords(
        TP, MemoryRecords(data), list(aborted), fetch_offset, None, None, True, READ_COMMITTED
    )
    list(oracle)
    assert fetched.next_offset == oracle.next_fetch_offset


def test_fetched_directory_decodes_like_the_general_path_with_tombstones_and_foreign_json() -> None:
    r = registry()
    subs = synthetic_subscribers(5_000, 9, r, id_base=9_990, optout_share=0.1)
    fixed, other = encode_matrices(subs, r)
    data, offset = b"", 0
    for keys, values in fixed:
        out, count = build_records(keys, values, head_room=HEADER_SIZE)
        data += _stamp(finish_batch(out, count, timestamp_ms=0), offset)
        offset += count
    foreign = [
        (
            b"17",
            b'{"recipient_id": 17, "ward": "VN-01-00004", "channels": ["sms"], "language": "vi"}',
        ),
        (b"10000", None),  # a tombstone
        (b"18", b"not json"),
    ]
    extra = [(d, k, v) for d, (k, v) in enumerate([*other, *foreign])]
    data += _aiokafka_batch(offset, extra)
    fetched = read_partition(data, 0)
    assert len(fetched) == len(subs) + len(foreign)
    fast, fast_errors = decode_fetched(fetched, r)
    general, general_errors = decode_changes(fetched.pairs(), r, fast=False)
    assert fast_errors == general_errors and len(fast_errors) == 1
    for column in ("ids", "deleted", "ward", "cell", "channel", "channel2", "optout", "flags"):
        assert np.array_equal(getattr(fast, column), getattr(general, column)), column
    assert 10000 in fast.ids[fast.deleted].tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 9000),
    st.integers(1, 20),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_a_batch_layout_fills_the_records_build_records_writes(
    n: int, key_width: int, slot_widths: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # a value: literal bytes around each slot
    literal = [
        bytes(rng.integers(32, 127, int(rng.integers(0, 6)), dtype=np.uint8))
        for _ in range(len(slot_widths) + 1)
    ]
    template = bytearray(literal[0])
    slots = []
    for w, after in zip(slot_widths, literal[1:], strict=True):
        slots.append((len(template), len(template) + w))
        template += b"?" * w + after
    keys = rng.integers(0, 256, (n, key_width), dtype=np.uint8)
    pieces = [rng.integers(0, 256, (n, w), dtype=np.uint8) for w in slot_widths]
    values = np.broadcast_to(
        np.frombuffer(bytes(template), dtype=np.uint8), (n, len(template))
    ).copy()
    for (a, b), piece in zip(slots, pieces, strict=True):
        values[:, a:b] = piece

    want, count = build_records(keys, values, head_room=HEADER_SIZE)
    got = BatchLayout(key_width, bytes(template), slots, n, head_room=HEADER_SIZE).fill(
        keys, pieces
    )

    assert count == n
    assert got == want
