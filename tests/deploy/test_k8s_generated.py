"""deploy/k8s/prometheus-rule.yaml and grafana-dashboard.yaml are what deploy/k8s/build.py
writes from the rule files promtool tests and the dashboard JSON (issue 20: Kubernetes had no
PrometheusRule and no dashboard ConfigMap)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loa_k8s_build", K8S / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_the_committed_prometheus_rule_is_what_the_generator_writes() -> None:
    from streams.settings.model import RUNBOOK_URL

    build = _build()
    assert (K8S / "prometheus-rule.yaml").read_text(encoding="utf-8") == build.render_rule(
        RUNBOOK_URL
    ), "run python deploy/k8s/build.py"


def test_the_prometheus_rule_holds_exactly_the_groups_promtool_tests() -> None:
    # every rules file, in the order the generator reads them (delivery.rules.yml, loa.rules.yml)
    groups = [
        group
        for path in sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]
    assert _doc("prometheus-rule.yaml")["spec"]["groups"] == groups


def test_the_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run deploy/prometheus/install.sh", pytrace=False)
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": _doc("prometheus-rule.yaml")["spec"]["groups"]}))
    out = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_another_runbook_base_rewrites_every_link_and_nothing_else() -> None:
    build = _build()
    moved = yaml.safe_load(build.render_rule("https://wiki.example/loa/runbooks"))
    links = [
        rule["annotations"]["runbook_url"]
        for group in moved["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert links and all(link.startswith("https://wiki.example/loa/runbooks#") for link in links)


def test_the_dashboard_configmap_holds_the_dashboard_for_the_sidecar() -> None:
    build = _build()
    text = (K8S / "grafana-dashboard.yaml").read_text(encoding="utf-8")
    assert text == build.render_dashboard(), "run python deploy/k8s/build.py"
    doc = _doc("grafana-dashboard.yaml")
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = (ROOT / "deploy" / "grafana" / "loa-dashboard.json").read_text(encoding="utf-8")
    assert json.loads(doc["data"]["loa-dashboard.json"]) == json.loads(dashboard)


def test_generated_objects_pass_strict_schema_validation() -> None:
    import sys

    validator = Path(sys.executable).parent / "kubernetes-validate"
    for name in ("prometheus-rule.yaml", "grafana-dashboard.yaml"):
        out = subprocess.run(
            [str(validator), "--strict", "--quiet", str(K8S / name)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
