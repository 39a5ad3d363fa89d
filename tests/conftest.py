"""Shared fixtures. The broker is real: started once per session from deploy/kafka/kafka.sh
(or taken from KAFKA_BOOTSTRAP_SERVERS). If it cannot start, the session fails loudly."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from streams.settings.model import Settings

# No deadlines: tests assert behaviour, not wall-clock time (the machines are shared). `make
# mutation` runs the unit tests once per mutant: fewer, reproducible examples there.
hypothesis_settings.register_profile("loa", deadline=None)
hypothesis_settings.register_profile("mutation", max_examples=20, derandomize=True, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "loa"))
if "MUTANT_UNDER_TEST" in os.environ and not hasattr(pytest.Function, "_nodeid"):
    # mutmut 3.4 (the last that installs beside faust's click<8.4) reads Item._nodeid, which
    # pytest 9 dropped for the public nodeid
    pytest.Function._nodeid = property(lambda self: self.nodeid)  # type: ignore[attr-defined]

# Workers and commands the tests start serve no /metrics unless a test gives them a port:
# the default 9470 may be held by another process on the machine (a user's worker, another
# test run), and a busy port stops a worker (exit 78) before what the test looks at.
os.environ.setdefault("LOA_METRICS_PORT", "0")

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"
TEST_PORT = os.environ.get("LOA_TEST_KAFKA_PORT", "19392")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    env = dict(os.environ)
    env["LOA_KAFKA_PORT"] = TEST_PORT
    env["LOA_KAFKA_DIR"] = str(tmp_path_factory.mktemp("kafka"))
    started = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.fail(
            f"the test broker did not start:\n{started.stdout}\n{started.stderr}", pytrace=False
        )
    try:
        yield f"127.0.0.1:{TEST_PORT}"
    finally:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True)


def drop_topics(bootstrap: str, prefixes: list[str]) -> None:
    """Delete the topics of test prefixes (``test-``/``it-``) once their test is done.

    A test session's broker would otherwise keep every test's topics, about 90 partitions a
    prefix with the delivery retry tiers, and this machine's open-files limit (20,000, hard)
    ends the broker at about 20,000 partitions.
    """
    from confluent_kafka.admin import AdminClient

    mine = tuple(f"{p}." for p in prefixes if p.startswith(("test-", "it-")))
    if not mine:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(mine)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result(timeout=60)
    except Exception as exc:  # cleaning up must not fail the test that passed
        print(f"could not delete test topics of {', '.join(mine)}: {exc}")


@pytest.fixture
def make_settings(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """Settings with topics and a consumer group of their own, so tests never see each other."""

    def make(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:10]
        values: dict[str, object] = {
            "bootstrap_servers": kafka_bootstrap,
            "topic_prefix": f"test-{tag}",
            "app_id": f"test-{tag}",
            "partitions": 4,
            "data_dir": str(tmp_path_factory.mktemp(f"data-{tag}")),
        }
        values.update(overrides)
        made.append(str(values["topic_prefix"]))
        return Settings(**values)  # type: ignore[arg-type]

    made: list[str] = []
    yield make
    drop_topics(kafka_bootstrap, made)
