"""Fast-takeover settings and the stop deadline (streams.settings.model, streams.runtime.shutdown),
no broker."""

from __future__ import annotations

import threading

import pytest

from streams.kafkaio.clients import faust_broker_options
from streams.kafkaio.internals import LeaveGroupV3
from streams.runtime.shutdown import EXIT_SHUTDOWN_TIMEOUT, Watchdog
from streams.settings.load import load_settings


def test_session_timeout_defaults_to_ten_seconds_for_emergencies() -> None:
    settings = load_settings({})
    assert settings.session_timeout_s == 10.0
    assert faust_broker_options(settings)["broker_session_timeout"] == 10.0


def test_default_instance_id_is_stable_for_one_data_dir_and_differs_between_them() -> None:
    a = load_settings({"LOA_DATA_DIR": "/srv/loa/a"})
    again = load_settings({"LOA_DATA_DIR": "/srv/loa/a"})
    b = load_settings({"LOA_DATA_DIR": "/srv/loa/b"})
    assert a.group_instance_id == again.group_instance_id != b.group_instance_id
    assert faust_broker_options(a)["consumer_group_instance_id"] == a.group_instance_id


def test_instance_id_can_be_set_or_turned_off() -> None:
    assert load_settings({"LOA_INSTANCE_ID": "worker-7"}).group_instance_id == "worker-7"
    assert load_settings({"LOA_INSTANCE_ID": "none"}).group_instance_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOA_SHUTDOWN_TIMEOUT_S", "0"),
        ("LOA_SHUTDOWN_TIMEOUT_S", "soon"),
        ("LOA_SESSION_TIMEOUT_S", "0"),
    ],
)
def test_unusable_stop_or_session_timeout_stops_with_a_clear_error(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_settings({name: value})


def test_watchdog_ends_the_process_when_the_stop_overruns() -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    watchdog = Watchdog(0.01, exit=fake_exit)
    watchdog.arm()
    watchdog.arm()  # a second signal does not start a second timer
    assert exited.wait(10)
    assert codes == [EXIT_SHUTDOWN_TIMEOUT]


def test_disarmed_watchdog_never_fires() -> None:
    codes: list[int] = []
    watchdog = Watchdog(0.05, exit=codes.append)
    watchdog.arm()
    watchdog.disarm()
    assert watchdog._timer is not None
    watchdog._timer.join(10)
    assert codes == []


def test_leave_group_v3_names_the_static_member_without_a_member_id() -> None:
    struct = LeaveGroupV3("loa", ["host-1"]).prepare({13: (0, 5)})
    assert struct.API_VERSION == 3
    assert struct.group == "loa" and struct.members == [("", "host-1")]
