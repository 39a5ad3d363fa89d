"""The real worker against the lifecycle reference model (``tests/model/lifecycle.py``).

The same random stories as the unit model test (Alerts, Updates, Cancels, Acks and re-publishes
from four registered agencies, mixed statuses, right and wrong reference triples), published
signed on the inbound topic of a running worker: each decision the worker writes must be the
model's, and after each story the lineages as the accepted records show them (owner, status,
latest version, cancelled) must equal the model's. Bounded here (``LOA_MODEL_EXAMPLES`` stories,
default 3); ``make model`` runs more.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from streams.kafkaio.clients import read_to_end
from tests.integration.conftest import LiveLoa, live_loa
from tests.model.drive import AGENCIES, Step, play, render, sequences
from tests.model.lifecycle import Message, Model, Outcome

pytestmark = pytest.mark.integration

STORIES = int(os.environ.get("LOA_MODEL_WORKER_EXAMPLES", "3"))


@pytest.fixture(scope="module")
async def small(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveLoa]:
    async with live_loa(kafka_bootstrap, tmp_path_factory, subscribers=2_000) as loa:
        yield loa


async def worker_decides(live: LiveLoa, m: Message) -> Outcome:
    offset = await live.publish(orjson.dumps(render(m)), signed_by=m.sender)
    outcome, record = await live.decision(m.sender, m.identifier, offset=offset)
    if outcome == "accepted":
        return Outcome("accepted", record["alert_id"], record["version"])
    if outcome == "duplicate":
        return Outcome("duplicate")
    return Outcome(record["code"])


async def lineages(live: LiveLoa, tag: str) -> dict[str, tuple[str, str, int, bool]]:
    """Lineages of one story as the worker's accepted records show them."""
    out: dict[str, tuple[str, str, int, bool]] = {}
    async for record in read_to_end(live.settings, live.settings.accepted_topic):
        doc = orjson.loads(record.value)
        if not doc["identifier"].startswith(f"{tag}-"):
            continue
        owner, status, version, cancelled = out.get(
            doc["alert_id"], (doc["owner"], doc["status"], 0, False)
        )
        out[doc["alert_id"]] = (
            owner,
            status,
            max(version, doc["version"]),
            cancelled or doc["msg_type"] == "Cancel",
        )
    return out


@settings(
    max_examples=STORIES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(story=sequences(min_size=12, max_size=16))
async def test_the_worker_decides_every_story_as_the_model_does(
    small: LiveLoa, story: list[Step]
) -> None:
    tag = uuid.uuid4().hex[:6]
    model = Model(dict(AGENCIES))
    for m, expected in play(story, model, tag):
        got = await worker_decides(small, m)
        if expected.code == "duplicate":
            expected = Outcome("duplicate")  # the duplicate record names no version field
        assert got == expected, (m, expected)
    assert await lineages(small, tag) == model.state()
