"""The cluster manifests users deploy, checked with real validators (no Docker or Kubernetes
here): kubernetes-validate (bundled Kubernetes schemas, --strict), hadolint for the Dockerfile,
the compose-spec schema (check-jsonschema), plus the hardening and wiring Loa relies on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import streams
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
K8S = DEPLOY / "k8s" / "loa.yaml"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():  # fail loudly: `make setup` installs the dev extra
        pytest.fail(f"{name} not found in {BIN}: run make setup", pytrace=False)
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def _k8s() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def _pods() -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]) for d in _k8s() if d["kind"] == "Deployment"
    ]


def test_kubernetes_manifests_pass_strict_schema_validation() -> None:
    out = _run(_tool("kubernetes-validate"), "--strict", "--quiet", str(K8S))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_kubernetes_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n")
    assert _run(_tool("kubernetes-validate"), "--strict", "--quiet", str(bad)).returncode != 0


def test_dockerfile_passes_hadolint_and_builds_the_packaged_version() -> None:
    out = _run(_tool("hadolint"), str(ROOT / "Dockerfile"))
    assert out.returncode == 0, out.stdout + out.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG LOA_VERSION={streams.__version__}" in text
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(froms) == 2 and all(":" in f and not f.endswith(":latest") for f in froms)
    assert "USER 10001:10001" in text


def test_compose_file_matches_the_compose_spec() -> None:
    out = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_services_wait_for_healthy_dependencies_and_restart() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"kafka", "worker", "deliver", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
    for name in ("worker", "deliver"):
        assert services[name]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
        assert services[name]["read_only"] is True
        assert services[name]["environment"]["LOA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "/ready" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["dns_sd_configs"][0]["port"] == Settings().metrics_port
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard_folder() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    boards = yaml.safe_load((prov / "dashboards" / "loa.yml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    mounts = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    assert "../grafana:/var/lib/grafana/dashboards:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_kubernetes_pods_are_hardened_and_probe_ready_and_live() -> None:
    for name, pod in _pods():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/live", name
            tag = container["image"].rsplit(":", 1)[-1]
            assert tag == streams.__version__, name  # pinned, never latest


def test_kubernetes_has_a_pdb_a_service_podmonitors_and_a_credentials_secret() -> None:
    docs = _k8s()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("PodDisruptionBudget", "loa-worker"),
        ("Service", "loa-worker"),
        ("PodMonitor", "loa-worker"),
        ("PodMonitor", "loa-deliver"),
        ("Secret", "loa-kafka-credentials"),
    } <= kinds
    labels = {name: pod["metadata"]["labels"] for name, pod in _pods()}
    for doc in docs:
        if doc["kind"] in ("PodDisruptionBudget", "PodMonitor"):
            wanted = doc["spec"]["selector"]["matchLabels"]
            assert any(wanted.items() <= ls.items() for ls in labels.values()), doc["metadata"]
    monitor = next(
        d for d in docs if d["kind"] == "PodMonitor" and d["metadata"]["name"] == "loa-worker"
    )
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    secret_users = [
        name
        for name, pod in _pods()
        if any(
            v.get("secret", {}).get("secretName") == "loa-kafka-credentials"
            for v in pod["spec"]["volumes"]
        )
    ]
    assert len(secret_users) == len(_pods())


def test_kubernetes_settings_name_only_real_settings() -> None:
    config = next(d for d in _k8s() if d["kind"] == "ConfigMap")
    known = {f"LOA_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert set(config["data"]) <= known
    ports = {
        c["ports"][0]["containerPort"] for _, pod in _pods() for c in pod["spec"]["containers"]
    }
    assert ports == {Settings().metrics_port}
