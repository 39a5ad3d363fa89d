"""The bench's verdicts (pure): what counts as exact, and whom Loa is compared with."""

from __future__ import annotations

from typing import Any

from benchmarks.report import check, summary


def _peer(name: str, per_s: float, tasks: int = 100) -> dict[str, Any]:
    return {
        "peer": name,
        "records": 100,
        "per_s": per_s,
        "own_per_s": per_s,
        "exact": tasks == 100,
        "broker": {"tasks": tasks},
    }


def _fanout(label: str, per_s: float, exact: bool = True) -> dict[str, Any]:
    return {
        "label": label,
        "subscribers": 1000,
        "workers": 1,
        "per_s": per_s,
        "exact": exact,
        "loa_own": {"per_s": per_s * 2},
    }


def test_ratio_is_to_the_best_peer_other_than_the_naive_faust_agent() -> None:
    result = {
        "peers": [_peer("java", 50.0), _peer("aiokafka", 100.0), _peer("faust", 1e9)],
        "fanout": [_fanout("loa", 150.0)],
    }
    rows = {r["system"]: r for r in summary(result)}
    assert rows["Loa loa (1,000)"]["ratio_to_best_peer"] == 1.5
    assert rows["Loa loa (1,000)"]["own_per_s"] == 300.0  # Loa's own figure shown, not used


def test_a_run_with_a_missing_task_or_a_short_peer_fails_the_check() -> None:
    result = {
        "peers": [_peer("java", 50.0, tasks=99)],
        "fanout": [_fanout("loa", 150.0, exact=False)],
    }
    problems = check(result)
    assert any("fan-out loa" in p for p in problems)
    assert any("peer java: 99 of 100" in p for p in problems)
    assert check({"peers": [_peer("java", 50.0)], "fanout": [_fanout("loa", 1.0)]}) == []
