"""The agency registry on the real broker: loaded with the CLI's function, replayed by every
worker's service, and changed (key rotation, jurisdiction, removal) without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from streams.errors import (
    AgenciesNotReady,
    BadSignature,
    InvalidAgency,
    OutOfJurisdiction,
    UnknownSender,
)
from streams.ingest.agencies import Agency, AgencyRegistry
from streams.ingest.agency_service import (
    AgencyRegistryService,
    ensure_local_key,
    load_agencies,
    read_agencies,
    remove_agencies,
)
from streams.ingest.authority import authorize
from streams.ingest.signatures import (
    new_key_pair,
    signature_headers,
    verify_headers,
    write_key_pair,
)
from streams.kafkaio.clients import create_topics, make_producer, read_to_end
from streams.settings.model import Settings
from tests.integration.conftest import run_loa

pytestmark = pytest.mark.integration

RAW = b'{"sender": "ubnd.quangninh.gov.vn", "identifier": "QN-1"}'
AGENCY = "ubnd.quangninh.gov.vn"
AGENCIES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "agencies"
SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "typhoon.json"


def _agency_file(path: Path, *, jurisdiction: list[str], keys: dict[str, str]) -> Path:
    path.write_bytes(
        orjson.dumps(
            {
                "id": AGENCY,
                "name": "UBND tỉnh Quảng Ninh",
                "keys": keys,
                "jurisdiction": jurisdiction,
                "allowed_statuses": ["Actual", "Exercise", "Test"],
                "max_severity": "Severe",
            }
        )
    )
    return path


def _in(agency: Agency, code: str) -> bool:
    try:
        authorize(agency, status=("/status", "Actual"), severities=(), region_codes=[("/r", code)])
    except OutOfJurisdiction:
        return False
    return True


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> AsyncIterator[Settings]:
    s = make_settings()
    await create_topics(s)
    yield s


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[AgencyRegistryService]:
    svc = AgencyRegistryService(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_registry_follows_load_rotation_and_removal_without_restart(
    settings: Settings, service: AgencyRegistryService, tmp_path: Path
) -> None:
    first = new_key_pair(AGENCY, "qn/1")
    second = new_key_pair(AGENCY, "qn/2")
    _, second_pub = write_key_pair(second, tmp_path / "keys")
    file = _agency_file(
        tmp_path / "qn.json", jurisdiction=["VN-22"], keys={"qn/1": first.public_key_b64}
    )

    # Empty topic: ready at once, nobody registered.
    assert len(await service.ready(timeout_s=30)) == 0

    await load_agencies(settings, file)
    registry = await service.ready(timeout_s=30)
    agency = verify_headers(registry, AGENCY, RAW, signature_headers(first, RAW))
    assert agency.jurisdiction == ("VN-22",)
    with pytest.raises(BadSignature):
        verify_headers(registry, AGENCY, RAW, signature_headers(second, RAW))

    # Rotation and a new jurisdiction: the file drops key 1, the CLI's --key adds key 2.
    _agency_file(file, jurisdiction=["VN-22-06733"], keys={})
    await load_agencies(settings, file, key_files=[second_pub])
    registry = await service.ready(timeout_s=30)
    agency = verify_headers(registry, AGENCY, RAW, signature_headers(second, RAW))
    with pytest.raises(BadSignature):
        verify_headers(registry, AGENCY, RAW, signature_headers(first, RAW))
    assert _in(agency, "VN-22-06733")
    assert not _in(agency, "VN-22")

    # A tombstone removes the agency.
    await remove_agencies(settings, [AGENCY])
    registry = await service.ready(timeout_s=30)
    with pytest.raises(UnknownSender):
        verify_headers(registry, AGENCY, RAW, signature_headers(second, RAW))
    assert (await read_agencies(settings)).agencies == {}


async def test_invalid_record_removes_its_agency_and_is_quoted(
    settings: Settings, service: AgencyRegistryService, tmp_path: Path
) -> None:
    key = new_key_pair(AGENCY, "qn/1")
    file = _agency_file(
        tmp_path / "qn.json", jurisdiction=["VN-22"], keys={"qn/1": key.public_key_b64}
    )
    await load_agencies(settings, file)
    assert AGENCY in await service.ready(timeout_s=30)

    # Written around the CLI (which validates): fail closed, the old grant is not kept.
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.agencies_topic, b'{"id": "ubnd.quangninh.gov.vn"}', key=AGENCY.encode()
        )
    finally:
        await producer.stop()
    registry = await service.ready(timeout_s=30)
    assert AGENCY not in registry
    with pytest.raises(UnknownSender, match="registry record is invalid"):
        verify_headers(registry, AGENCY, RAW, signature_headers(key, RAW))
    assert service.bad_records == 1


async def test_a_new_worker_replays_the_registry_and_ready_times_out_retriably(
    settings: Settings, tmp_path: Path
) -> None:
    key = new_key_pair(AGENCY, "qn/1")
    file = _agency_file(
        tmp_path / "qn.json", jurisdiction=["VN-22"], keys={"qn/1": key.public_key_b64}
    )
    await load_agencies(settings, file)
    await load_agencies(settings, file)  # a second load replaces, never duplicates

    late = AgencyRegistryService(settings)
    await late.start()
    try:
        with pytest.raises(AgenciesNotReady):
            await late.ready(timeout_s=0)
        registry = await late.ready(timeout_s=30)
        assert set(registry.agencies) == {AGENCY}
        assert verify_headers(registry, AGENCY, RAW, signature_headers(key, RAW)).id == AGENCY
    finally:
        await late.stop()


async def test_cli_makes_a_key_registers_it_and_lists_it(
    settings: Settings, tmp_path: Path
) -> None:
    async def loa(*args: str) -> str:
        code, out, err = await run_loa(settings, *args)
        assert code == 0, out + err
        return out + err

    keys = tmp_path / "keys"
    created = await loa(
        "keys", "new", "--agency", "nchmf.gov.vn", "--out", str(keys), "--key-id", "nchmf/demo"
    )
    assert "nchmf/demo" in created
    loaded = await loa(
        "agencies", "load", str(AGENCIES_DIR), "--key", str(keys / "nchmf_demo.pub.json")
    )
    assert "nchmf.gov.vn (1 keys)" in loaded
    listed = await loa("agencies", "list")
    assert "nchmf.gov.vn  jurisdiction=VN " in listed and "keys=nchmf/demo" in listed
    assert "amends=Update/Cancel of any agency within its jurisdiction" in listed
    assert "ubnd.quangninh.gov.vn  jurisdiction=VN-22 " in listed
    assert listed.count("amends=own lineages only") == 2
    registry: AgencyRegistry = await read_agencies(settings)
    assert set(registry.agencies) == {f.stem for f in AGENCIES_DIR.glob("*.json")}

    # What `loa publish --key` sends verifies against what `loa agencies load` registered:
    # the headers survive the broker and the signature covers the file bytes exactly.
    sent = await loa("publish", str(SAMPLE), "--key", str(keys / "nchmf_demo.key"), "--no-wait")
    assert "warning" not in sent
    records = [r async for r in read_to_end(settings, settings.inbound_topic)]
    assert [r.value for r in records] == [SAMPLE.read_bytes()]
    agency = verify_headers(registry, "nchmf.gov.vn", records[0].value, records[0].headers)
    assert agency.id == "nchmf.gov.vn"


async def test_local_key_is_made_once_and_registered_for_the_test_agency(
    settings: Settings, service: AgencyRegistryService, tmp_path: Path
) -> None:
    testing = AGENCIES_DIR / "testing"
    first = await ensure_local_key(settings, "test.agency.vn", tmp_path, agencies_path=testing)
    again = await ensure_local_key(settings, "test.agency.vn", tmp_path, agencies_path=testing)
    assert again.public_key == first.public_key
    province = await ensure_local_key(settings, AGENCY, tmp_path, agencies_path=AGENCIES_DIR)
    with pytest.raises(InvalidAgency, match="has no agency"):
        await ensure_local_key(settings, "test.agency.vn", tmp_path, agencies_path=AGENCIES_DIR)
    registry = await service.ready(timeout_s=30)
    assert set(registry.agencies) == {"test.agency.vn", AGENCY}  # one record per call
    assert verify_headers(registry, "test.agency.vn", RAW, signature_headers(again, RAW))
    assert verify_headers(registry, AGENCY, RAW, signature_headers(province, RAW))
