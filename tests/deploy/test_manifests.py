"""The cluster manifests users deploy, checked with real validators (no Docker or Kubernetes
here): kubernetes-validate (bundled Kubernetes schemas, --strict), hadolint for the Dockerfile,
the compose-spec schema (check-jsonschema), plus the hardening and wiring Loa relies on."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

import streams
from streams.settings.model import Settings

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
    """Every pod template: the Deployments' and the init Job's."""
    return [
        (d["metadata"]["name"], d["spec"]["template"])
        for d in _k8s()
        if d["kind"] in ("Deployment", "Job")
    ]


def _deployments() -> list[dict[str, Any]]:
    return [d for d in _k8s() if d["kind"] == "Deployment"]


#: Probe paths of each server Loa runs: the workers' metrics server, the gateway's API.
PROBES = {"loa-gateway": ("/v1/health", "/v1/health")}


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
    delivery = {f"deliver-{c}" for c in ("oa", "push", "sms")}
    assert {"kafka", "init", "worker", "prometheus", "alertmanager", "grafana"} | delivery <= set(
        services
    )
    for name, service in services.items():
        if name == "init":  # one-shot: retried on failure, never restarted once it succeeded
            assert service["restart"].startswith("on-failure"), name
            assert service["depends_on"] == {"kafka": {"condition": "service_healthy"}}
            assert service["command"] == ["init"]
            continue
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
    for name in ("worker", "gateway", *delivery):
        assert services[name]["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "init": {"condition": "service_completed_successfully"},
        }, name
        assert services[name]["read_only"] is True
        assert services[name]["environment"]["LOA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for name in delivery:
        command = services[name]["command"]
        assert command[command.index("--channel") + 1] == name.removeprefix("deliver-")
    assert "/ready" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["dns_sd_configs"][0]["port"] == Settings().metrics_port
    assert set(scrape["scrape_configs"][1]["dns_sd_configs"][0]["names"]) == delivery
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    targets = scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    assert (
        "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in (services["alertmanager"]["volumes"])
    )


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
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            tag = container["image"].rsplit(":", 1)[-1]
            assert tag == streams.__version__, name  # pinned, never latest
        if name == "loa-init":
            continue  # a Job: it ends; nothing to probe
        for container in spec["containers"]:
            ready, live = PROBES.get(name, ("/ready", "/live"))
            assert container["readinessProbe"]["httpGet"]["path"] == ready, name
            assert container["livenessProbe"]["httpGet"]["path"] == live, name


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


def _readable_by_pod_user(mode: int, pod_spec: dict[str, Any]) -> bool:
    """How the kubelet mounts a Secret: files owned by root, group ``fsGroup`` when set, mode
    ``defaultMode``. The pod's non-root user reads one through the group or the other bits."""
    ctx = pod_spec["securityContext"]
    assert ctx["runAsUser"] != 0
    group_bits = mode & 0o040 and (ctx.get("fsGroup") is not None)
    return bool(group_bits or mode & 0o004)


def test_every_secret_a_pod_mounts_is_readable_by_its_non_root_user() -> None:
    for name, pod in _pods():
        for volume in pod["spec"]["volumes"]:
            if "secret" in volume:
                mode = volume["secret"].get("defaultMode", 0o644)
                assert _readable_by_pod_user(mode, pod["spec"]), (name, volume["name"], oct(mode))
                assert not mode & 0o007, (name, volume["name"])  # never world-readable


def test_the_old_0400_mount_without_fsgroup_would_not_be_readable() -> None:
    spec = {"securityContext": {"runAsUser": 10001}}
    assert not _readable_by_pod_user(0o400, spec)  # issue 20: the delivery pod's password


def test_every_deployment_has_a_pdb_and_workers_spread_over_nodes() -> None:
    docs = _k8s()
    pdbs = [
        d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"
    ]
    for deployment in _deployments():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        name = deployment["metadata"]["name"]
        assert [p for p in pdbs if p.items() <= labels.items()], f"{name} has no PDB"
        spec = deployment["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in spec.get("topologySpreadConstraints", [])}
        assert "kubernetes.io/hostname" in keys, name
        own = deployment["spec"]["selector"]["matchLabels"]
        assert all(
            c["labelSelector"]["matchLabels"] == own for c in spec["topologySpreadConstraints"]
        )
    worker = next(d for d in _deployments() if d["metadata"]["name"] == "loa-worker")
    spec = worker["spec"]["template"]["spec"]
    assert "topology.kubernetes.io/zone" in {
        c["topologyKey"] for c in spec["topologySpreadConstraints"]
    }
    assert spec["affinity"]["podAntiAffinity"]


def test_one_delivery_deployment_per_channel_each_consuming_only_its_channel() -> None:
    from streams.records import CHANNELS

    delivery = {
        d["metadata"]["labels"]["channel"]: d
        for d in _deployments()
        if d["metadata"]["labels"].get("app") == "loa-deliver"
    }
    assert set(delivery) == set(CHANNELS)
    for channel, deployment in delivery.items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "deliver"
        assert args[args.index("--channel") + 1] == channel


def test_the_init_job_runs_loa_init_and_every_other_pod_waits_for_its_topics() -> None:
    jobs = [d for d in _k8s() if d["kind"] == "Job"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["args"] for j in jobs] == [["init"]]
    for deployment in _deployments():
        inits = deployment["spec"]["template"]["spec"]["initContainers"]
        assert [c["args"] for c in inits] == [["init", "--check"]], deployment["metadata"]["name"]


def test_monitoring_objects_carry_the_documented_selector_labels() -> None:
    monitors = [d for d in _k8s() if d["kind"] == "PodMonitor"]
    assert monitors
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "release: kube-prometheus-stack" in docs and 'grafana_dashboard: "1"' in docs


def test_kubernetes_settings_name_only_real_settings() -> None:
    config = next(d for d in _k8s() if d["kind"] == "ConfigMap")
    known = {f"LOA_{f.name.upper()}" for f in fields(Settings)}
    assert set(config["data"]) <= known
    ports = {
        c["ports"][0]["containerPort"]
        for name, pod in _pods()
        for c in pod["spec"]["containers"]
        if name not in ("loa-init", "loa-gateway")
    }
    assert ports == {Settings().metrics_port}
    assert config["data"]["LOA_SESSION_TIMEOUT_S"] == str(int(Settings().session_timeout_s))
