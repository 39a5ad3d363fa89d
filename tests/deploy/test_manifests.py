"""The cluster manifests users deploy (no Docker or Kubernetes here): they parse and agree with
the settings and ports Loa uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_file_runs_workers_delivery_and_prometheus_against_one_broker() -> None:
    doc = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "worker", "deliver", "prometheus", "grafana"} <= set(services)
    assert services["worker"]["environment"]["LOA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["dns_sd_configs"][0]["port"] == Settings().metrics_port


def test_kubernetes_manifests_name_only_real_settings() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "loa.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "Deployment", "Deployment"]
    known = {f"LOA_{name.upper()}" for name in Settings.__dataclass_fields__}
    assert set(docs[0]["data"]) <= known
    worker = docs[1]["spec"]["template"]
    assert worker["metadata"]["annotations"]["prometheus.io/port"] == str(Settings().metrics_port)
