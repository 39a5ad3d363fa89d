"""Docs are tests (ingest half): every sample file and every alert example of the docs gets the
ingest decision its document states, with the real agency registry of ``deploy/agencies/``."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from streams.ingest import Accepted, Duplicate, Rejected, decide
from streams.ingest.agencies import AgencyRegistry, load_agency_files, with_key
from streams.ingest.cap import detect_format, parse_cap
from streams.ingest.signatures import KeyPair, new_key_pair, signature_headers
from streams.regions import registry
from tests.tools.documented import ROOT, Example, examples, sample_files, unmarked_alert_examples

EXAMPLES = examples()
LIMIT = 256 * 1024


def _registry() -> tuple[AgencyRegistry, dict[str, KeyPair]]:
    """``deploy/agencies/`` as a worker loads it, each agency with a fresh key to sign with."""
    keys: dict[str, KeyPair] = {}
    agencies = []
    for agency in load_agency_files(ROOT / "deploy" / "agencies"):
        keys[agency.id] = new_key_pair(agency.id, f"{agency.id}/docs")
        agencies.append(with_key(agency, keys[agency.id].key_id, keys[agency.id].public_key))
    return AgencyRegistry.of(*agencies), keys


def outcome(decision: Accepted | Duplicate | Rejected) -> str:
    """A decision as the docs write it: ``accepted <priority>`` or ``rejected <code> <pointer>``."""
    if isinstance(decision, Accepted):
        return f"accepted {decision.alert.priority.value}"
    if isinstance(decision, Duplicate):
        return "duplicate"
    return f"rejected {decision.code.value} {decision.pointer or '-'}"


def _sender_and_sent(raw: bytes) -> tuple[str | None, datetime | None]:
    try:
        xml = detect_format(raw) == "xml"
        doc = parse_cap(raw, max_bytes=LIMIT) if xml else orjson.loads(raw)
        return doc.get("sender"), datetime.fromisoformat(doc["sent"])
    except Exception:  # hostile or incomplete: no sender to sign for, judged now
        return None, None


def test_every_sample_file_is_in_its_folders_table() -> None:
    listed = {e.path for e in EXAMPLES if e.path is not None}
    assert listed == sample_files()


def test_every_alert_example_in_the_docs_states_its_outcome() -> None:
    assert unmarked_alert_examples() == []
    assert sum(e.path is None for e in EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_documented_example_gets_the_documented_ingest_decision(example: Example) -> None:
    agencies, keys = _registry()
    sender, sent = _sender_and_sent(example.raw)
    key = keys.get(sender) if sender else None
    decision = decide(
        example.raw,
        regions=registry(),
        partitions=4,
        max_bytes=LIMIT,
        agencies=agencies,
        headers=list(signature_headers(key, example.raw)) if key else None,
        now=sent,  # judged when it was sent, so a sample's expiry does not date the docs
    )
    assert outcome(decision) == example.ingest
