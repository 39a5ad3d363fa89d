"""The real decision function against the reference model (``tests/model/lifecycle.py``).

Random sequences of Alerts, Updates, Cancels, Acks and re-publishes from four agencies of the
registry Loa ships (``deploy/agencies``), with mixed statuses, right and wrong reference
triples and areas, go through :func:`streams.ingest.decide` with a real registry, real
signatures and the lifecycle state the agent keeps; after every step the decision and every
lineage's state (owner, status, version, cancelled) must equal the model's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from hypothesis import given, settings

from streams.ingest import Accepted, Duplicate, decide
from streams.ingest.agencies import AgencyRegistry, load_agency_files, with_key
from streams.ingest.lifecycle import LifecycleState
from streams.ingest.signatures import new_key_pair, signature_headers
from streams.regions import registry
from tests.model.drive import AGENCIES, EXAMPLES, Step, play, render, sequences
from tests.model.lifecycle import Message, Model, Outcome

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
KEYS = {agency: new_key_pair(agency, "k1") for agency in AGENCIES}
REGISTRY = AgencyRegistry.of(
    *(
        with_key(agency, "k1", KEYS[agency.id].public_key)
        for agency in [
            *load_agency_files(ROOT / "deploy" / "agencies"),
            *load_agency_files(ROOT / "deploy" / "agencies" / "testing"),
        ]
        if agency.id in AGENCIES
    )
)


def system_decide(state: LifecycleState, m: Message) -> Outcome:
    raw = orjson.dumps(render(m))
    got = decide(
        raw,
        regions=registry(),
        partitions=2,
        max_bytes=1 << 16,
        state=state,
        agencies=REGISTRY,
        headers=signature_headers(KEYS[m.sender], raw),
        now=NOW,
    )
    if isinstance(got, Accepted):
        state.record(got.plan, got.alert.msg_type, got.alert)  # as the agent does
        return Outcome("accepted", got.alert.alert_id, got.alert.version)
    if isinstance(got, Duplicate):
        return Outcome("duplicate", got.plan.lineage, got.plan.version)
    return Outcome(got.code.value)


def system_state(state: LifecycleState) -> dict[str, tuple[str, str, int, bool]]:
    return {
        lineage: (s.owner, s.status, s.version, s.cancelled)
        for lineage, s in state.lineages.items()
    }


def test_the_registry_loa_ships_is_the_one_the_model_assumes() -> None:
    for agency_id, model in AGENCIES.items():
        real = REGISTRY.get(agency_id)
        assert real is not None
        assert real.jurisdiction == model.jurisdiction
        assert set(real.allowed_statuses) == model.statuses
        assert {(frozenset(g.of), frozenset(g.msg_types)) for g in real.amends} == set(model.grants)


@settings(max_examples=EXAMPLES or 300)
@given(sequences())
def test_every_decision_and_lineage_state_equals_the_model(story: list[Step]) -> None:
    tag = uuid.uuid4().hex[:6]
    model, state = Model(dict(AGENCIES)), LifecycleState()
    for m, expected in play(story, model, tag):
        assert system_decide(state, m) == expected, (m, expected)
        assert system_state(state) == model.state()
