"""The aiokafka version check: raw record-batch paths only on the checked release."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import aiokafka
import pytest

from streams.kafkaio.internals import CHECKED_VERSION, check_version, internals_supported

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_pins_exactly_the_checked_aiokafka() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aiokafka=={CHECKED_VERSION}" in [d.split(";")[0].strip() for d in deps]


def test_installed_aiokafka_is_the_checked_one_and_raw_paths_are_on() -> None:
    assert aiokafka.__version__ == CHECKED_VERSION
    assert internals_supported() is True


def test_checked_version_passes_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "streams.kafkaio.internals"):
        assert check_version(CHECKED_VERSION) is True
    assert caplog.records == []


@pytest.mark.parametrize("other", ["0.14.1", "0.15.0", "0.13.0", "1.0.0"])
def test_another_aiokafka_turns_raw_paths_off_with_one_warning(
    other: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "streams.kafkaio.internals"):
        assert check_version(other) is False
    (record,) = caplog.records
    assert f"aiokafka {other} is not {CHECKED_VERSION}" in record.getMessage()
    assert "public API" in record.getMessage()


def test_missing_private_names_turn_raw_paths_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "streams.kafkaio.internals"):
        assert check_version(CHECKED_VERSION, "No module named 'aiokafka.record.util'") is False
    (record,) = caplog.records
    assert "cannot import them" in record.getMessage()
