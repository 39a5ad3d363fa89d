"""deploy/prometheus and deploy/grafana: rules pass promtool, the dashboard is valid and current,
and both name only metrics that streams.metrics really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.delivery.worker import DeliveryMetrics
from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent.parent
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "loa-dashboard.json"
METRIC = re.compile(r"\bloa_[a-z_]+\b")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # fail loudly: `make setup` installs it (deploy/prometheus/install.sh)
        pytest.fail("promtool not found: run deploy/prometheus/install.sh", pytrace=False)
    return path


def _exported() -> set[str]:
    names = set()
    families = [
        *Metrics(CollectorRegistry()).registry.collect(),
        *DeliveryMetrics(CollectorRegistry()).registry.collect(),
    ]
    for family in families:
        if family.type == "counter":
            names |= {family.name + "_total"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load((PROM / "rules" / "loa.rules.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_alert_rules_pass_promtool_check(tmp_path: Path) -> None:
    out = subprocess.run(
        [_promtool(), "check", "rules", str(PROM / "rules" / "loa.rules.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", str(PROM / "tests" / "loa.rules.test.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_scrape_config_is_valid() -> None:
    out = subprocess.run(
        [_promtool(), "check", "config", str(PROM / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    exported = _exported()
    recorded = {"loa:tasks_emitted:rate1m", "loa:inbound_rejected:ratio5m"}
    for expr in _rule_exprs() + _dashboard_exprs():
        for name in METRIC.findall(expr):
            assert name in exported or name in recorded, (name, expr)


def test_dashboard_is_valid_json_and_matches_its_generator() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert doc["uid"] == "loa-fanout"
    sys.path.insert(0, str(DASHBOARD.parent))
    try:
        import build_dashboard  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    assert build_dashboard.render() == DASHBOARD.read_text(encoding="utf-8"), (
        "run python deploy/grafana/build_dashboard.py"
    )


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: wrap every panel query in a recording rule
    rules = [
        {
            "record": f"dashboard:q{i}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$job", ".*"),
        }
        for i, expr in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _dashboard_lint() -> str:
    """loa-dashboard-lint, built by its install script (a no-op when cached, as after setup)."""
    out = subprocess.run(
        ["bash", str(DASHBOARD.parent / "lint" / "install.sh")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_dashboards_pass_grafanas_schema_and_dashboard_linter_rules() -> None:
    dashboards = sorted(str(p) for p in DASHBOARD.parent.glob("*.json"))
    out = subprocess.run([_dashboard_lint(), *dashboards], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda d: d["panels"][1].update(colour="red"), "[schema]"),  # unknown field
        (lambda d: d["panels"][1].update(description=""), "[panel-title-description-rule]"),
        (lambda d: d.update(editable=True), "[uneditable-dashboard]"),
        (lambda d: d["templating"]["list"].pop(), "[template-instance-rule]"),
        (
            lambda d: d["panels"][3]["targets"][0].update(expr="sum(loa_tasks_emitted_total)"),
            "[target-counter-agg-rule]",
        ),
        (
            lambda d: d["panels"][3]["targets"][0].update(
                expr='sum(rate(loa_tasks_emitted_total{job=~"$job",instance=~"$instance"}[1m]))'
            ),
            "[target-rate-interval-rule]",
        ),
        (
            lambda d: d["panels"][3]["targets"][0].update(
                expr='sum(rate(loa_tasks_emitted_total{instance=~"$instance"}[$__rate_interval]))'
            ),
            "[target-job-rule]",
        ),
        (lambda d: d["panels"][3]["targets"][0].update(expr="sum(rate("), "[target-promql-rule]"),
    ],
)
def test_dashboard_lint_rejects_what_grafana_and_its_linter_reject(
    tmp_path: Path, change: Any, rule: str
) -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    change(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run([_dashboard_lint(), str(path)], capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert rule in out.stdout, out.stdout


def test_install_script_is_a_quick_no_op_when_prometheus_is_there() -> None:
    _promtool()
    out = subprocess.run(
        ["bash", str(PROM / "install.sh")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "apt-get" not in out.stdout + out.stderr


def test_every_alert_has_a_runbook_url_to_a_section_of_docs_runbooks() -> None:
    doc = yaml.safe_load((PROM / "rules" / "loa.rules.yml").read_text())
    headings = {
        line[3:].strip().lower()
        for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("## ")
    }
    alerts = [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 12
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("/docs/runbooks.md"), url
        assert url.split("#")[1] == rule["alert"].lower() in headings, url
