"""deploy/prometheus/rules/delivery.rules.yml: passes promtool, its unit tests (issue 19's
scenario among them) pass, it names only metrics Loa exports, and every alert has a runbook
section in docs/runbooks.md with the anchor its runbook_url names."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.test_deploy import METRIC, PROM, ROOT, _exported, _promtool

RULES = PROM / "rules" / "delivery.rules.yml"


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_delivery_rules_pass_promtool_check() -> None:
    command = [_promtool(), "check", "rules", str(RULES)]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_delivery_rules_pass_their_promtool_unit_tests() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", str(PROM / "tests" / "delivery.test.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_delivery_rules_name_only_exported_or_recorded_metrics() -> None:
    exported = _exported()
    recorded = {str(r["record"]) for r in _rules() if "record" in r}
    for rule in _rules():
        for name in METRIC.findall(str(rule["expr"])):
            assert name in exported or name in recorded, (name, rule["expr"])


def test_every_delivery_alert_has_a_runbook_section_at_its_url() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    sections = {m.lower() for m in re.findall(r"^## (\w+)$", runbooks, flags=re.MULTILINE)}
    alerts = [r for r in _rules() if "alert" in r]
    assert {"LoaDeliveryStalled", "LoaDeliveryWorkerAbsent"} <= {str(r["alert"]) for r in alerts}
    for rule in alerts:
        name = str(rule["alert"])
        url = str(rule["annotations"]["runbook_url"])  # type: ignore[index]
        assert url.endswith("#" + name.lower()), url
        assert name.lower() in sections, f"docs/runbooks.md has no section ## {name}"


def test_a_delivery_worker_absent_rule_exists_for_every_channel() -> None:
    from streams.records import CHANNELS

    absent = [r for r in _rules() if r.get("alert") == "LoaDeliveryWorkerAbsent"]
    assert sorted(str(r["labels"]["channel"]) for r in absent) == sorted(CHANNELS)  # type: ignore[index]
    for rule in absent:
        channel = rule["labels"]["channel"]  # type: ignore[index]
        assert f'channel="{channel}"' in str(rule["expr"])
