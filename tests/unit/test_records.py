"""The priority an alert goes out at (``streams.records``), alone and through ``decide``.

The enum's values sort alphabetically as extreme < routine < severe, so a ``min()`` over the
values instead of over the rank would send a Severe alert with a routine block as routine:
these tests mix exactly those blocks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import permutations
from typing import Any

import orjson
import pytest

from streams.ingest import Accepted, decide
from streams.records import Priority, most_urgent, priority_of
from streams.regions import registry

EXTREME, SEVERE, ROUTINE = Priority.EXTREME, Priority.SEVERE, Priority.ROUTINE
NOW = datetime(2026, 9, 6, 1, 0, tzinfo=UTC)
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("urgency", URGENCIES)
def test_priority_follows_the_readme_table(severity: str, urgency: str) -> None:
    if severity == "Extreme":
        expected = EXTREME
    elif severity == "Severe":
        expected = EXTREME if urgency == "Immediate" else SEVERE
    else:
        expected = ROUTINE
    assert priority_of(severity, urgency) is expected


@pytest.mark.parametrize(
    ("mix", "expected"),
    [
        ((SEVERE, ROUTINE), SEVERE),
        ((EXTREME, ROUTINE), EXTREME),
        ((EXTREME, SEVERE), EXTREME),
        ((EXTREME, SEVERE, ROUTINE), EXTREME),
        ((ROUTINE, ROUTINE), ROUTINE),
        ((SEVERE,), SEVERE),
    ],
)
def test_the_most_urgent_priority_wins_in_any_order(
    mix: tuple[Priority, ...], expected: Priority
) -> None:
    for order in permutations(mix):
        assert most_urgent(order) is expected
        assert most_urgent(iter(order)) is expected  # a generator, as ingest passes it


def _block(severity: str, urgency: str, **extra: Any) -> dict[str, Any]:
    return {
        "category": ["Met"],
        "event": "Bão",
        "urgency": urgency,
        "severity": severity,
        "certainty": "Likely",
        "headline": f"{severity} {urgency}",
        "area": [{"areaDesc": "ven biển", "regions": ["VN-22"]}],
        **extra,
    }


def _alert(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "identifier": "P-1",
        "sender": "qn.gov.vn",
        "sent": "2026-09-06T08:00:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": list(blocks),
    }


def _decide(doc: dict[str, Any]) -> Accepted:
    decision = decide(
        orjson.dumps(doc), regions=registry(), partitions=2, max_bytes=1 << 16, now=NOW
    )
    assert isinstance(decision, Accepted), decision
    return decision


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ((("Severe", "Expected"), ("Minor", "Immediate")), SEVERE),
        ((("Minor", "Immediate"), ("Severe", "Expected")), SEVERE),
        ((("Moderate", "Future"), ("Severe", "Immediate")), EXTREME),
        ((("Severe", "Immediate"), ("Moderate", "Future")), EXTREME),
        ((("Severe", "Expected"), ("Extreme", "Future"), ("Minor", "Past")), EXTREME),
    ],
)
def test_an_alert_goes_out_at_its_most_urgent_blocks_priority(
    blocks: tuple[tuple[str, str], ...], expected: Priority
) -> None:
    decision = _decide(_alert(*(_block(s, u) for s, u in blocks)))
    assert decision.alert.priority is expected
    assert {o.priority for o in decision.orders} == {expected}
