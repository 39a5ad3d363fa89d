"""The gateway's pure rules and its API document (no broker)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from streams.gateway import Gateway, check_settings
from streams.gateway.decisions import decision_of
from streams.gateway.policy import TokenBuckets, decision_answer, pending_answer, status_path
from streams.gateway.server import openapi_path
from streams.settings.load import load_settings
from streams.settings.model import Settings

SETTINGS = Settings()


def test_openapi_document_lists_exactly_the_gateways_routes() -> None:
    doc = yaml.safe_load(openapi_path().read_text())
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in Gateway(SETTINGS).app().router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method != "HEAD":
            served.add((path.replace("{alert_id:.+}", "{alert_id}"), route.method))
    assert served == documented


def test_openapi_answers_cover_every_status_the_post_route_gives() -> None:
    doc = yaml.safe_load(openapi_path().read_text())
    statuses = set(doc["paths"]["/v1/alerts"]["post"]["responses"])
    assert {"200", "201", "202", "408", "413", "415", "422", "429", "503"} <= statuses


def test_a_bucket_allows_its_burst_then_refuses_until_tokens_come_back() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("b", 0.0) == 0.0  # agencies do not share a bucket
    assert buckets.take("a", 0.5) == 0.0


def test_buckets_keep_a_bounded_number_of_agencies() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for n in range(1000):
        buckets.take(f"made-up-{n}", 0.0)
    assert len(buckets._buckets) == 100


def test_decisions_map_to_status_codes_with_the_ingest_fields() -> None:
    accepted: dict[str, Any] = {
        "alert_id": "a.vn/X",
        "message_id": "a.vn/X",
        "version": 1,
        "priority": "extreme",
    }
    answer = decision_answer("accepted", accepted, 7)
    assert answer.status == 201 and answer.headers["Location"] == "/v1/alerts/a.vn%2FX"
    dup = decision_answer("duplicate", {"sender": "a.vn", "identifier": "X", "message": "m"}, 8)
    assert (dup.status, dup.body["message_id"]) == (200, "a.vn/X")
    rejected = {"code": "schema", "pointer": "/alert/status", "message": "m", "sender": None}
    answer = decision_answer("rejected", rejected, 9)
    assert answer.status == 422
    assert (answer.body["code"], answer.body["pointer"]) == ("schema", "/alert/status")
    pending = pending_answer(10, "a.vn/X")
    assert pending.status == 202
    assert (
        pending.body["status_url"]
        == status_path("a.vn/X", 10)
        == ("/v1/alerts/a.vn%2FX?inbound_offset=10")
    )


def test_decision_records_are_found_by_inbound_offset() -> None:
    s = SETTINGS
    assert decision_of(s, s.accepted_topic, b'{"inbound_offset": 4}') == (
        4,
        ("accepted", {"inbound_offset": 4}),
    )
    rejection = b'{"code": "duplicate", "source": {"topic": "loa.alerts.inbound", "offset": 5}}'
    assert decision_of(s, s.rejected_topic, rejection)[0:1] == (5,)  # type: ignore[index]
    assert decision_of(s, s.rejected_topic, b"not json") is None
    other = b'{"code": "schema", "source": {"topic": "other", "offset": 5}}'
    assert decision_of(s, s.rejected_topic, other) is None


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"gateway_host": "0.0.0.0"}, "not loopback"),
        ({"gateway_tls_cert": "cert.pem"}, "go together"),
        ({"gateway_tls_client_ca": "ca.pem"}, "mutual TLS"),
        ({"gateway_rate": 0.0}, "LOA_GATEWAY_RATE"),
    ],
)
def test_insecure_or_incomplete_gateway_settings_stop_with_an_error(
    changes: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        check_settings(dataclasses.replace(SETTINGS, **changes))


def test_gateway_settings_are_read_from_the_environment() -> None:
    env = {"LOA_GATEWAY_PORT": "19651", "LOA_GATEWAY_RATE": "0.5", "LOA_GATEWAY_BURST": "4"}
    settings = load_settings(env)
    assert (settings.gateway_port, settings.gateway_rate, settings.gateway_burst) == (19651, 0.5, 4)


def test_access_log_tokens_carry_no_whitespace_from_an_untrusted_sender() -> None:
    from streams.gateway.server import _token

    assert _token("evil.vn\nlevel=ERROR fake") == "evil.vn?level=ERROR?fake"
    assert _token("") == "-"
    assert len(_token("x" * 1000)) == 128
