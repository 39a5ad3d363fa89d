"""The console's pure parts: approval policy, sessions and CSRF, the login limiter, drafts and
the mapping of ingest's pointers to draft fields, the security headers, the ETA."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.console.audience import eta_s
from streams.console.drafts import DraftProblems, build_alert, field_of, parse_draft
from streams.console.policy import parse_policy
from streams.console.sessions import LoginLimiter, Sessions
from streams.console.users import Role, User, decode_user, hash_password, verify_login
from streams.console.web import content_security_policy
from streams.ingest import Accepted, decide
from streams.regions import registry

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REGIONS = registry()


# --- approval policy -------------------------------------------------------------------------


def test_without_rules_actual_needs_a_second_person_and_exercise_and_test_do_not() -> None:
    policy = parse_policy("")
    assert policy.needs_second("a.vn", "Actual", "Minor")
    assert not policy.needs_second("a.vn", "Exercise", "Extreme")
    assert not policy.needs_second("a.vn", "Test", "Extreme")


def test_the_most_specific_rule_wins() -> None:
    policy = parse_policy(
        "*:Exercise=second; a.vn:Actual/Minor=none, Test=second; b.vn:Exercise/Minor=none"
    )
    assert not policy.needs_second("a.vn", "Actual", "Minor")
    assert policy.needs_second("a.vn", "Actual", "Severe")
    assert policy.needs_second("a.vn", "Test", "Unknown")
    assert policy.needs_second("a.vn", "Exercise", "Minor")
    assert not policy.needs_second("b.vn", "Exercise", "Minor")
    assert policy.needs_second("b.vn", "Exercise", "Severe")
    assert policy.agencies() == {"a.vn", "b.vn"}


@pytest.mark.parametrize(
    "text",
    [
        "a.vn",
        "a.vn:Actual",
        "a.vn:Actual=maybe",
        "a.vn:Draft=none",
        "a.vn:Actual/Catastrophic=none",
        ":Actual=none",
        "a.vn:Actual=none,Actual=second",
    ],
)
def test_an_unusable_policy_is_refused_naming_the_rule(text: str) -> None:
    with pytest.raises(ValueError, match="LOA_CONSOLE_APPROVAL"):
        parse_policy(text)


def test_a_rule_for_an_agency_the_registry_does_not_know_stops_the_console() -> None:
    policy = parse_policy("ghost.vn:Actual/Minor=none")
    with pytest.raises(ValueError, match=r"ghost\.vn"):
        policy.check_agencies(["a.vn"])
    policy.check_agencies(["ghost.vn"])


# --- sessions, CSRF, login limit --------------------------------------------------------------


def test_a_session_ends_after_its_idle_time_and_each_request_restarts_it() -> None:
    sessions = Sessions(idle_s=60)
    s = sessions.open("u", "a.vn", now=0)
    assert len(s.id) >= 43 and s.id != s.csrf  # 256 random bits, URL-safe base64
    assert sessions.get(s.id, now=50) is not None
    assert sessions.get(s.id, now=100) is not None
    assert sessions.get(s.id, now=161) is None
    assert sessions.get("made-up", now=0) is None


def test_csrf_token_must_match_its_session() -> None:
    sessions = Sessions(idle_s=60)
    s, t = sessions.open("u", "a.vn", 0), sessions.open("v", "a.vn", 0)
    assert Sessions.csrf_ok(s, s.csrf)
    assert not Sessions.csrf_ok(s, t.csrf)
    assert not Sessions.csrf_ok(s, None)
    assert not Sessions.csrf_ok(s, "")


def test_closing_a_users_sessions_leaves_the_others() -> None:
    sessions = Sessions(idle_s=60)
    a, b = sessions.open("u", "a.vn", 0), sessions.open("v", "a.vn", 0)
    sessions.close_user("u")
    assert sessions.get(a.id, 1) is None and sessions.get(b.id, 1) is not None


def test_failed_logins_per_user_are_limited_within_the_window() -> None:
    limiter = LoginLimiter(per_user=3, per_address=100, window_s=60)
    for t in range(3):
        assert limiter.wait("Alice", "1.1.1.1", t) == 0
        limiter.failed("Alice", "1.1.1.1", t)
    assert limiter.wait("alice", "2.2.2.2", 3) == pytest.approx(57)  # names fold case
    assert limiter.wait("bob", "1.1.1.1", 3) == 0
    assert limiter.wait("alice", "2.2.2.2", 60) == 0  # the first failure left the window


def test_failed_logins_per_address_are_limited_across_names() -> None:
    limiter = LoginLimiter(per_user=100, per_address=2, window_s=10)
    limiter.failed("a", "1.1.1.1", 0)
    limiter.failed("b", "1.1.1.1", 1)
    assert limiter.wait("c", "1.1.1.1", 2) == pytest.approx(8)
    assert limiter.wait("c", "9.9.9.9", 2) == 0


def test_a_good_password_clears_the_users_count_but_not_the_addresss() -> None:
    limiter = LoginLimiter(per_user=2, per_address=2, window_s=10)
    limiter.failed("a", "1.1.1.1", 0)
    limiter.failed("a", "1.1.1.1", 0)
    limiter.succeeded("a")
    assert limiter.wait("a", "2.2.2.2", 1) == 0
    assert limiter.wait("a", "1.1.1.1", 1) > 0


# --- users -------------------------------------------------------------------------------------


def test_a_password_is_stored_as_argon2id_and_one_answer_covers_every_refusal() -> None:
    digest = hash_password("correct horse battery")
    assert digest.startswith("$argon2id$")
    user = User("u", "a.vn", (Role.AUTHOR,), digest)
    disabled = User("d", "a.vn", (Role.AUTHOR,), digest, disabled=True)
    users = {"u": user, "d": disabled}
    assert verify_login(users, "u", "correct horse battery") == user
    assert verify_login(users, "u", "wrong") is None
    assert verify_login(users, "nobody", "correct horse battery") is None
    assert verify_login(users, "d", "correct horse battery") is None
    assert verify_login(users, "bad name with spaces", "x") is None
    with pytest.raises(ValueError):
        hash_password("short")


def test_a_users_record_round_trips_and_a_foreign_one_is_refused() -> None:
    user = User("u", "a.vn", (Role.AUTHOR, Role.APPROVER), hash_password("correct horse battery"))
    back = decode_user(b"u", user.to_json())
    assert (back.name, back.agency, back.roles) == ("u", "a.vn", user.roles)
    assert "hash" not in back.public()
    with pytest.raises(ValueError):
        decode_user(b"v", user.to_json())
    with pytest.raises(ValueError):
        decode_user(b"u", orjson.dumps({**orjson.loads(user.to_json()), "hash": "plain"}))


# --- drafts --------------------------------------------------------------------------------------


def _draft(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Lũ quét",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Likely",
        "category": ["Met"],
        "expires": (NOW + timedelta(hours=6)).isoformat(),
        "infos": [
            {
                "language": "vi-VN",
                "headline": "Cảnh báo lũ quét",
                "description": "Mưa lớn.\nNước lên nhanh.",
            }
        ],
        "areas": {
            "regions": ["VN-51-21028"],
            "polygons": [[[15.1, 108.8], [15.2, 108.8], [15.2, 108.9]]],
            "circles": [{"lat": 15.1, "lon": 108.8, "radius_km": 5}],
        },
    }
    doc.update(changes)
    return doc


def test_a_draft_makes_an_alert_that_ingest_accepts() -> None:
    draft = parse_draft(_draft(), REGIONS, NOW)
    doc = build_alert(
        draft, identifier="console.d-1", sender="pctt.quangngai.gov.vn", sent=NOW, regions=REGIONS
    )
    assert doc["sent"] == "2026-12-06T19:00:00+07:00" and doc["scope"] == "Public"
    area = doc["info"][0]["area"][0]
    assert area["polygon"][0].split()[0] == area["polygon"][0].split()[-1]  # closed ring
    assert area["circle"] == ["15.100000,108.800000 5"]
    decision = decide(orjson.dumps(doc), regions=REGIONS, partitions=2, max_bytes=1 << 20, now=NOW)
    assert isinstance(decision, Accepted), decision


def test_every_problem_of_a_draft_is_reported_at_its_field() -> None:
    bad = _draft(
        event="",
        severity="Big",
        infos=[{"language": "vi-VN", "headline": "<b>x</b>"}],
        expires="2020-01-01T00:00:00+07:00",
        areas={"regions": ["VN-99"], "circles": [{"lat": 1, "lon": 2, "radius_km": 0}]},
    )
    with pytest.raises(DraftProblems) as caught:
        parse_draft(bad, REGIONS, NOW)
    named = [f for f, _ in caught.value.problems]
    assert named == [
        "event",
        "severity",
        "expires",
        "infos[0].headline",
        "areas.regions[0]",
        "areas.circles[0].radius_km",
    ]


def test_an_update_keeps_the_references_the_server_gives_not_the_browsers() -> None:
    refs = ["pctt.quangngai.gov.vn,console.d-1,2026-12-06T19:00:00+07:00"]
    draft = parse_draft(
        _draft(msg_type="Update", references=["x,y,z"]), REGIONS, NOW, references=refs
    )
    assert draft.references == tuple(refs)
    with pytest.raises(DraftProblems, match="msg_type"):
        parse_draft(_draft(msg_type="Update"), REGIONS, NOW)


@pytest.mark.parametrize(
    ("pointer", "field"),
    [
        ("/info/0/headline", "infos[0].headline"),
        ("/info/1/instruction", "infos[1].instruction"),
        ("/info/0/severity", "severity"),
        ("/info/1/category/0", "category"),
        ("/info/0/expires", "expires"),
        ("/info/0/area/0/regions/2", "areas.regions[2]"),
        ("/info/0/area/0/polygon/0", "areas.polygons[0]"),
        ("/info/1/area/0/circle/1", "areas.circles[1]"),
        ("/info/0/area/0", "areas"),
        ("/info", "areas"),  # the cells of every shape, checked together
        ("/status", "status"),
        ("/msgType", "msg_type"),
        ("/references", "references"),
        ("/sender", ""),
        ("", ""),
    ],
)
def test_ingests_pointers_map_to_draft_fields(pointer: str, field: str) -> None:
    assert field_of(pointer) == field


# --- headers, eta --------------------------------------------------------------------------------


def test_the_csp_allows_only_the_pages_own_origin_and_a_tile_servers_images() -> None:
    csp = content_security_policy("")
    assert "script-src 'self';" in csp and "unsafe" not in csp and "img-src 'self' data:;" in csp
    tiles = content_security_policy("https://tiles.example.vn/{z}/{x}/{y}.png")
    assert "img-src 'self' data: https://tiles.example.vn;" in tiles
    assert "connect-src 'self';" in tiles


def test_eta_is_set_by_the_slowest_limited_channel() -> None:
    assert eta_s({"zalo": 1000, "sms": 50}, {"zalo": 100.0, "sms": 10.0}) == 10.0
    assert eta_s({"zalo": 1000}, {"zalo": None}) is None
    assert eta_s({"zalo": 1000}, {"zalo": 0.0}) is None
    assert eta_s({"zalo": 0}, {"zalo": 1.0}) is None


# --- settings -------------------------------------------------------------------------------------


def test_the_console_refuses_plain_http_off_loopback_and_an_unusable_policy() -> None:
    from streams.console import check_settings
    from streams.settings.model import Settings

    check_settings(Settings())
    with pytest.raises(ValueError, match="not loopback"):
        check_settings(Settings(console_host="0.0.0.0"))
    with pytest.raises(ValueError, match="go together"):
        check_settings(Settings(gateway_tls_cert="/x.pem"))
    with pytest.raises(ValueError, match="LOA_CONSOLE_APPROVAL"):
        check_settings(Settings(console_approval="a.vn:Actual=perhaps"))
    check_settings(Settings(console_host="0.0.0.0", gateway_tls_cert="c", gateway_tls_key="k"))


# --- the preview's count, against a brute-force count of the same subscribers ---------------------


@pytest.mark.parametrize("test_only", [False, True])
def test_the_census_preview_counts_what_a_scan_of_every_subscriber_counts(test_only: bool) -> None:
    import time

    import h3
    import numpy as np

    from streams.console.audience import MAP_RESOLUTION, census_audience
    from streams.directory.cells import CellSet, to_resolution
    from streams.directory.census import build_census
    from streams.directory.index import FLAG_TEST, ChangeBatch, DirectoryPartition
    from streams.directory.synthetic import location_pool, synthetic_subscribers
    from streams.records import CHANNELS
    from streams.regions import circle_cells

    subs = synthetic_subscribers(30_000, 7, REGIONS)
    half = len(subs) // 2
    censuses = {}
    for p, rows in enumerate((slice(0, half), slice(half, None))):
        index = DirectoryPartition()
        index.apply(ChangeBatch(**{f.name: getattr(subs, f.name)[rows] for f in fields(subs)}))
        censuses[p] = build_census(
            index.columns(),
            partition=p,
            offset=0,
            made_at=time.time(),
            regions=REGIONS,
            h3_resolution=7,
        )
    lat, lon = h3.cell_to_latlng(f"{int(location_pool(7)[0]):x}")
    cells = list(h3.compact_cells(circle_cells(lat, lon, 10.0, 7)))
    got = census_audience(
        censuses, REGIONS, targets=["VN-51"], cells=cells, test_only=test_only, partitions=2
    )
    # the scan: home ward under VN-51, or location inside the circle's cells
    in_ward = np.isin(
        np.arange(REGIONS.n_wards),
        [REGIONS.ward_index(c) for c in REGIONS.ward_codes if c.startswith("VN-51-")],
    )[subs.ward]
    area = CellSet.of(int(c, 16) for c in cells)
    inside = area.contains(subs.cell)
    hit = in_ward | inside
    if test_only:
        hit &= (subs.flags & FLAG_TEST) != 0
    assert inside.any() and (inside & ~in_ward).any()  # the shape path is exercised
    assert got["reached"] == int(hit.sum())
    by_channel = np.bincount(subs.channel[hit], minlength=len(CHANNELS))
    assert got["by_channel"] == {c: int(n) for c, n in zip(CHANNELS, by_channel, strict=True)}
    provinces = REGIONS.ward_province[subs.ward[hit]]
    want = {REGIONS.province_codes[p]: int(n) for p, n in enumerate(np.bincount(provinces)) if n}
    assert got["by_province"] == want
    located = hit & (subs.cell != 0)
    coarse = to_resolution(subs.cell[located], MAP_RESOLUTION)
    unique, counts = np.unique(coarse, return_counts=True)
    assert {c["h3"]: c["n"] for c in got["cells"]} == {
        f"{int(c):x}": int(n) for c, n in zip(unique, counts, strict=True)
    }
    assert got["directory"] == len(subs) and got["partitions_counted"] == 2


def test_the_limiter_forgets_names_whose_failures_left_the_window() -> None:
    limiter = LoginLimiter(per_user=3, per_address=10**9, window_s=10)
    for i in range(10_000):
        limiter.failed(f"name-{i}", "1.1.1.1", 0)
    limiter.failed("late", "1.1.1.1", 20)
    assert len(limiter._failures) <= 3  # the late name, the address, nothing stale
