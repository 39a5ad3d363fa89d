"""The Java exact reader (benchmarks/exactreader.py) on the real broker: every figure it reports
matches what a transactional producer committed (aborted records never count, duplicates
across partitions and topics do), records written while it runs are counted, it agrees with
brokerclock.count_tasks on the same topics, and deleted records are reported as missed."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks import exactreader
from benchmarks.brokerclock import (
    client_config,
    count_tasks,
    create_log_append_topics,
    watermarks,
)
from streams.settings.model import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

Record = tuple[str, int, bytes, bytes]  # topic, partition, key, value


def value(alert_id: str, recipient: int) -> bytes:
    return b'{"alert_id":"%s","recipient":"%d","channel":"push"}' % (alert_id.encode(), recipient)


@dataclass
class Ledger:
    """What was committed, to compute the expected figures from."""

    records: list[Record] = field(default_factory=list)

    def expected(self) -> dict[str, dict[str, object]]:
        by_alert: dict[str, list[Record]] = defaultdict(list)
        for rec in self.records:
            v = rec[3]
            alert = v[13 : v.index(b'"', 13)].decode() if v.startswith(b'{"alert_id":"') else ""
            by_alert[alert].append(rec)
        out: dict[str, dict[str, object]] = {}
        for alert, recs in by_alert.items():
            per_topic: dict[str, Counter[int]] = defaultdict(Counter)
            per_partition: Counter[int] = Counter()
            for topic, p, _, _ in recs:
                per_topic[topic][p] += 1
                per_partition[p] += 1
            keys = {k for _, _, k, _ in recs}
            out[alert] = {
                "tasks": len(recs),
                "distinct": len(keys),
                "duplicates": len(recs) - len(keys),
                "per_partition": dict(sorted(per_partition.items())),
                "per_topic_partition": {t: dict(c) for t, c in per_topic.items()},
                "key_bytes": sum(len(k) for _, _, k, _ in recs) / len(recs),
                "value_bytes": sum(len(v) for _, _, _, v in recs) / len(recs),
            }
        return out


class Writer:
    """A transactional confluent-kafka producer writing to chosen partitions."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.ledger = ledger
        self.producer = Producer(
            {
                **client_config(settings),
                "transactional.id": f"{settings.topic_prefix}-writer",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        self.producer.init_transactions(60)

    def transaction(self, records: list[Record], *, commit: bool = True) -> None:
        self.producer.begin_transaction()
        for topic, p, key, val in records:
            self.producer.produce(topic, val, key, partition=p)
        self.producer.flush(60)
        if commit:
            self.producer.commit_transaction(60)
            self.ledger.records.extend(records)
        else:
            self.producer.abort_transaction(60)


@dataclass
class Topics:
    settings: Settings
    names: list[str]
    ledger: Ledger
    writer: Writer


@pytest.fixture
def topics(make_settings: Callable[..., Settings]) -> Iterator[Topics]:
    """Two LogAppendTime send topics (3 and 2 partitions) and a writer."""
    settings = make_settings()
    names = [settings.sends_topic("extreme"), settings.sends_topic("routine")]
    create_log_append_topics(settings, {names[0]: 3, names[1]: 2})
    ledger = Ledger()
    yield Topics(settings, names, ledger, Writer(settings, ledger))


def first_batch(t: Topics) -> list[Record]:
    """Alert A to 300 recipients over the first topic, B to 100 over the second."""
    x, r = t.names
    return [(x, i % 3, b"%d" % i, value("A", i)) for i in range(300)] + [
        (r, i % 2, b"%d" % i, value("B", i)) for i in range(100)
    ]


def second_batch(t: Topics) -> list[Record]:
    """Duplicates of A on another partition of the same topic and on the other topic, new A
    recipients, new B recipients with a key above 2^32 and a non-decimal key, and a record
    with no alert id."""
    x, r = t.names
    return (
        [(x, (i + 1) % 3, b"%d" % i, value("A", i)) for i in range(0, 50)]
        + [(r, i % 2, b"%d" % i, value("A", i)) for i in range(25, 75)]
        + [(x, i % 3, b"%d" % i, value("A", i)) for i in range(300, 400)]
        + [(r, i % 2, b"%d" % i, value("B", i)) for i in range(100, 150)]
        + [(r, 0, b"5000000000", value("B", 0)), (r, 1, b"5000000000", value("B", 0))]
        + [(r, 1, b"user-7", value("B", 7)), (x, 2, b"12", b'{"other":1}')]
    )


def aborted_batch(t: Topics) -> list[Record]:
    x, r = t.names
    return [(x, i % 3, b"%d" % i, value("A", i)) for i in range(1000, 1050)] + [
        (r, i % 2, b"%d" % i, value("C", i)) for i in range(10)
    ]


def assert_matches_ledger(counts: dict[str, exactreader.AlertCount], ledger: Ledger) -> None:
    expected = ledger.expected()
    assert set(counts) == set(expected)
    for alert, want in expected.items():
        got = counts[alert]
        assert {k: getattr(got, k) for k in want} == want, alert
        assert got.missed == 0


def test_reader_counts_each_committed_task_once_incl_those_written_while_it_runs(
    topics: Topics, tmp_path: Path
) -> None:
    before_ms = int(time.time() * 1000)
    topics.writer.transaction(first_batch(topics))
    topics.writer.transaction(aborted_batch(topics), commit=False)
    reader = exactreader.start(topics.settings, topics.names, tmp_path, from_="beginning")
    topics.writer.transaction(second_batch(topics))
    topics.writer.transaction(aborted_batch(topics), commit=False)
    after_ms = int(time.time() * 1000)

    counts = reader.stop(timeout=120)

    assert reader.result is not None and reader.result.exact
    assert reader.result.records == len(topics.ledger.records) == 654
    assert "C" not in counts  # only in aborted transactions
    assert_matches_ledger(counts, topics.ledger)
    assert counts["A"].tasks == 500 and counts["A"].distinct == 400
    assert counts["A"].duplicates == 100
    assert counts["B"].distinct == 150 + 2  # 5000000000 twice, and user-7
    for count in counts.values():
        assert before_ms - 1000 <= count.first_ms <= count.last_ms <= after_ms + 1000
    starts = {
        (p["topic"], p["partition"]): p["start_offset"] for p in reader.result.raw["partitions"]
    }
    assert set(starts.values()) == {0}


def test_reader_agrees_with_count_tasks_on_the_same_topics(topics: Topics, tmp_path: Path) -> None:
    topics.writer.transaction(first_batch(topics))
    topics.writer.transaction(aborted_batch(topics), commit=False)
    topics.writer.transaction(second_batch(topics))

    reader = exactreader.start(topics.settings, topics.names, tmp_path, from_="beginning")
    counts = reader.stop(timeout=120)
    theirs = count_tasks(topics.settings, topics.names, timeout_s=60)

    assert set(counts) == set(theirs) == {"A", "B", ""}
    for alert, them in theirs.items():
        ours = counts[alert]
        for name in (
            "tasks",
            "distinct",
            "duplicates",
            "first_ms",
            "last_ms",
            "per_partition",
            "key_bytes",
            "value_bytes",
        ):
            assert getattr(ours, name) == pytest.approx(getattr(them, name)), (alert, name)


def test_reader_from_end_counts_only_what_is_committed_after_it_started(
    topics: Topics, tmp_path: Path
) -> None:
    topics.writer.transaction(first_batch(topics))
    reader = exactreader.start(topics.settings, topics.names, tmp_path, from_="end")
    topics.ledger.records.clear()  # written before the start: not to be counted
    topics.writer.transaction(second_batch(topics))
    topics.writer.transaction(aborted_batch(topics), commit=False)

    counts = reader.stop(timeout=120)

    assert reader.result is not None and reader.result.exact
    assert_matches_ledger(counts, topics.ledger)


def test_reader_from_offsets_counts_from_the_marks_after_the_fact(
    topics: Topics, tmp_path: Path
) -> None:
    """How the bench counts one alert after it ran: from the end offsets noted before it,
    after the records below them were deleted (as the bench deletes what it counted)."""
    topics.writer.transaction(first_batch(topics))
    marks = watermarks(topics.settings, topics.names)
    admin = AdminClient(client_config(topics.settings))
    futures = admin.delete_records(
        [TopicPartition(t, p, o) for (t, p), o in marks.items() if o > 0], request_timeout=30
    )
    for future in futures.values():
        future.result(timeout=60)
    topics.ledger.records.clear()  # below the marks: not to be counted
    topics.writer.transaction(second_batch(topics))
    topics.writer.transaction(aborted_batch(topics), commit=False)

    reader = exactreader.start(topics.settings, topics.names, tmp_path, from_offsets=marks)
    counts = reader.stop(timeout=120)

    assert reader.result is not None and reader.result.exact  # nothing missed below the marks
    assert reader.result.raw["from"] == "offsets"
    assert_matches_ledger(counts, topics.ledger)


def test_records_deleted_before_they_are_read_are_reported_missed(
    topics: Topics, tmp_path: Path
) -> None:
    x = topics.names[0]
    topics.writer.transaction([(x, 0, b"%d" % i, value("A", i)) for i in range(100)])
    topics.writer.transaction([(x, 1, b"%d" % i, value("A", i)) for i in range(100, 110)])
    admin = AdminClient(client_config(topics.settings))
    # what retention does to the oldest segments: the log start moves past offsets 0..39
    futures = admin.delete_records([TopicPartition(x, 0, 40)], request_timeout=30)
    for future in futures.values():
        future.result(timeout=60)

    reader = exactreader.start(topics.settings, topics.names, tmp_path, from_="beginning")
    counts = reader.stop(timeout=120)

    assert reader.result is not None
    assert reader.result.missed == 40 and not reader.result.exact
    assert counts["A"].tasks == 70 and counts["A"].missed == 40
    missed = {(p["topic"], p["partition"]): p["missed"] for p in reader.result.raw["partitions"]}
    assert missed[(x, 0)] == 40 and sum(missed.values()) == 40


def test_records_deleted_while_the_reader_lags_are_reported_missed(
    topics: Topics, tmp_path: Path
) -> None:
    x = topics.names[0]
    with exactreader.start(topics.settings, topics.names, tmp_path, from_="end") as reader:
        # a reader slower than retention: stopped while the records come and go
        reader.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.5)  # a fetch in flight answers empty
            topics.writer.transaction([(x, 0, b"%d" % i, value("A", i)) for i in range(100)])
            admin = AdminClient(client_config(topics.settings))
            for future in admin.delete_records([TopicPartition(x, 0, 30)]).values():
                future.result(timeout=60)
            topics.writer.transaction([(x, 1, b"%d" % i, value("A", i)) for i in range(100, 105)])
        finally:
            reader.proc.send_signal(signal.SIGCONT)
        counts = reader.stop(timeout=120)

    assert reader.result is not None and reader.result.missed == 30
    assert not reader.result.exact
    assert counts["A"].tasks == 75 and counts["A"].distinct == 75


def test_sasl_settings_stop_the_reader_before_it_starts(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    with pytest.raises(exactreader.ExactReaderUnsupported, match="plaintext"):
        exactreader.start(settings, ["t"], tmp_path)
