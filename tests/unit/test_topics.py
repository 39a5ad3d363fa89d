"""Replication defaults and topic mismatches (pure)."""

from __future__ import annotations

import re

import pytest

from streams.settings.model import Settings
from streams.topics import (
    Replication,
    TopicLayoutError,
    TopicShape,
    mismatches,
    partition_mismatches,
    replication,
)


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Replication(1, 1)),
        (2, Replication(1, 1)),
        (3, Replication(3, 2)),
        (5, Replication(3, 2)),
    ],
)
def test_replication_defaults_follow_the_cluster_size(brokers: int, expected: Replication) -> None:
    assert replication(Settings(), brokers) == expected


def test_explicit_replication_settings_win() -> None:
    settings = Settings(replication_factor=2, min_insync_replicas=2)
    assert replication(settings, 3) == Replication(2, 2)
    assert replication(Settings(replication_factor=2), 2) == Replication(2, 1)


def test_replication_larger_than_the_cluster_is_a_clear_error() -> None:
    with pytest.raises(TopicLayoutError, match="LOA_REPLICATION_FACTOR=3 but the cluster has 1"):
        replication(Settings(replication_factor=3), 1)
    with pytest.raises(TopicLayoutError, match="LOA_MIN_INSYNC_REPLICAS=4 exceeds"):
        replication(Settings(min_insync_replicas=4), 3)


def test_existing_topics_that_differ_are_reported_line_by_line() -> None:
    wanted = [TopicShape("a", 8, 3), TopicShape("b", 8, 3), TopicShape("c", 1, 3)]
    existing = {"a": TopicShape("a", 4, 3), "b": TopicShape("b", 8, 1), "c": TopicShape("c", 1, 3)}
    assert mismatches(wanted, existing) == [
        "a: 4 partitions, settings want 8",
        "b: replication factor 1, settings want 3",
    ]


def test_worker_check_names_missing_topics_and_partition_counts_only() -> None:
    wanted = [TopicShape("a", 8, 3), TopicShape("b", 8, 3), TopicShape("c", 8, 3)]
    existing = {"a": TopicShape("a", 4, 3), "b": TopicShape("b", 8, 1)}
    assert partition_mismatches(wanted, existing) == [
        "a: 4 partitions, LOA_PARTITIONS wants 8",
        "c: missing (run `loa topics create`)",
    ]


def test_decision_topic_is_the_sender_when_kafka_allows_it_and_a_hashed_spelling_otherwise() -> (
    None
):
    s = Settings(topic_prefix="loa")
    assert s.decisions_topic("nchmf.gov.vn") == "loa.decisions.nchmf.gov.vn"
    odd = s.decisions_topic("UBND Tỉnh Quảng Ngãi")
    assert odd.startswith("loa.decisions.UBND_T_nh_Qu_ng_Ng_i-") and len(odd.rsplit("-")[-1]) == 8
    # two senders spelled alike are still two topics; every name is one Kafka accepts
    names = {s.decisions_topic(x) for x in ("a@b", "a#b", "a_b", "a" * 300, "a" * 301)}
    assert len(names) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,249}", n) for n in names)


def test_directory_topic_leaves_a_fresh_load_uncompacted_for_an_hour_and_others_at_once() -> None:
    from streams.kafkaio.clients import DIRECTORY_COMPACTION_LAG_MS, topic_specs

    s = Settings()
    configs = {t.name: t.topic_configs or {} for t in topic_specs(s)}
    directory = configs[s.directory_topic]
    assert directory["cleanup.policy"] == "compact"
    assert directory["min.compaction.lag.ms"] == str(DIRECTORY_COMPACTION_LAG_MS) == "3600000"
    # the other compacted topics (progress, accepted, agencies...) are compacted as before
    others = [c for name, c in configs.items() if name != s.directory_topic]
    assert all("min.compaction.lag.ms" not in c for c in others)
