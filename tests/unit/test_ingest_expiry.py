"""The expiry of an alert whose info blocks expire at different times (``decide``, pure).

The latest block wins: the accepted alert and every order carry the latest ``expires`` (by
instant, not by the text: offsets differ), and an alert is refused as expired only when every
block has expired, an expiry at the arrival instant counting as expired.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import RejectionCode
from streams.ingest import Accepted, Rejected, decide
from streams.regions import registry

NOW = datetime(2026, 9, 6, 1, 0, tzinfo=UTC)
PAST = "2026-09-06T07:00:00+07:00"  # 00:00Z: an hour before NOW
AT_NOW = "2026-09-06T08:00:00+07:00"  # 01:00Z: NOW itself
# 03:00Z written late in the day at +07:00, and 04:00Z written early at +00:00: as text the
# first sorts last, as instants the second is the latest
SOON = "2026-09-06T10:00:00+07:00"
LATEST = "2026-09-06T04:00:00+00:00"


def _alert(*expires: str | None) -> dict[str, Any]:
    blocks = []
    for i, e in enumerate(expires):
        block: dict[str, Any] = {
            "category": ["Met"],
            "event": "Lũ",
            "urgency": "Expected",
            "severity": "Severe",
            "certainty": "Likely",
            "headline": f"khối {i}",
            "area": [{"areaDesc": "ven biển", "regions": ["VN-22"]}],
        }
        if e is not None:
            block["expires"] = e
        blocks.append(block)
    return {
        "identifier": "E-1",
        "sender": "qn.gov.vn",
        "sent": "2026-09-06T07:30:00+07:00",
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": blocks,
    }


def _decide(doc: dict[str, Any]) -> Accepted | Rejected:
    decision = decide(
        orjson.dumps(doc), regions=registry(), partitions=3, max_bytes=1 << 16, now=NOW
    )
    assert isinstance(decision, Accepted | Rejected)
    return decision


def _expires(decision: Accepted | Rejected) -> datetime:
    assert isinstance(decision, Accepted), decision
    expires = {o.expires for o in decision.orders}
    assert expires == {decision.alert.expires}  # every order stops when the alert does
    assert decision.alert.expires is not None
    return datetime.fromisoformat(decision.alert.expires)


def test_the_latest_expiry_of_the_blocks_wins_whatever_their_order() -> None:
    latest = datetime.fromisoformat(LATEST)
    assert _expires(_decide(_alert(SOON, LATEST))) == latest
    assert _expires(_decide(_alert(LATEST, SOON))) == latest
    assert _expires(_decide(_alert(PAST, SOON, LATEST))) == latest


def test_an_alert_with_one_block_still_in_force_is_accepted() -> None:
    decision = _decide(_alert(PAST, SOON))
    assert _expires(decision) == datetime.fromisoformat(SOON)
    assert len(decision.orders) == 3  # type: ignore[union-attr]
    assert _expires(_decide(_alert(SOON, PAST))) == datetime.fromisoformat(SOON)


def test_an_alert_is_expired_only_when_every_block_expired() -> None:
    for doc in (_alert(PAST, PAST), _alert(PAST, AT_NOW), _alert(AT_NOW)):
        decision = _decide(doc)
        assert isinstance(decision, Rejected), doc
        assert decision.code is RejectionCode.EXPIRED
        assert decision.pointer == "/info"


def test_an_alert_without_any_expiry_never_ends_by_expiry() -> None:
    unbounded = _decide(_alert(None, None))
    assert isinstance(unbounded, Accepted)
    assert unbounded.alert.expires is None
    assert {o.expires for o in unbounded.orders} == {None}


def test_a_block_without_expiry_keeps_the_alert_in_force() -> None:
    decision = _decide(_alert(None, PAST))
    assert isinstance(decision, Accepted)
    assert decision.alert.expires is None
