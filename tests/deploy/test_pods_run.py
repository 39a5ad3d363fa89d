"""The deployments come up: each pod's (and compose service's) command line, environment and
files, run locally against a broker in the order the manifests imply, until a national alert
reaches the providers (issue 20, "Done when").

A pod's view, minus the kubelet. From ``deploy/k8s/loa.yaml`` (and the compose file) each
container gets: the image's environment (the Dockerfile's ``ENV``), then ``envFrom`` (the
ConfigMap), then ``env``; its command is the image's ``ENTRYPOINT`` plus ``args``; every Secret
it mounts is written under a temporary root with the manifest's ``defaultMode``. Only what
cannot be the same on one machine is changed, and :func:`localize` lists it: paths under the
mounts and the image's ``/app`` and ``/data`` (moved under the temporary root or to the
repository, whose ``schemas`` and ``deploy/agencies`` the image copies), the broker address
and its protocol (the dev broker is PLAINTEXT; ``loa config --check`` first runs with the
manifest's SASL_SSL settings to open the mounted password and CA), ports (every pod has its
own network namespace in a cluster; here they share one), the topic prefix and group (tests
share the broker), the provider URLs (a local capture server), and the partition count and
replication (one broker, two shared cores).

Order, as the manifests imply it: a Deployment's init container (``loa init --check``) fails
with 6 before the init Job ran; the Job (``loa init``) runs to completion; then each
Deployment's init container passes and its container starts: worker, delivery workers,
gateway. Then what an operator does (a key for the national agency, synthetic subscribers) and
a national alert, published with ``loa publish``; every channel's provider receives tasks and
``loa status`` counts them delivered. Bounded waits; no wall-clock assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.records import CHANNELS
from tests.tools.xmlsigning import tls_files

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s" / "loa.yaml"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
BIN = Path(sys.executable).parent
#: How long any one wait may take before the test fails (bounded; never asserted as a time).
PATIENCE_S = 240.0
#: Restarts of one container the test allows (the kubelet's back-off would go on).
RESTARTS = 3
#: Every restart of a run, kept for people (a passing run does not show its output).
RESTARTS_FILE = ROOT / ".loa" / "deploy-restarts.jsonl"


def image() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's runtime ``ENV`` and ``ENTRYPOINT`` (of its last stage)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    last = text[text.rindex("\nFROM ") :]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", last, re.MULTILINE):
        for token in shlex.split(line):
            key, _, value = token.partition("=")
            env[key] = value
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", last, re.MULTILINE)
    assert entry is not None
    return env, json.loads(entry.group(1))


@dataclass
class Container:
    """One container as the manifest describes it."""

    pod: str
    name: str
    env: dict[str, str]
    argv: list[str]
    #: mount path of each file -> (content, mode)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: (path, port) of the readiness probe, scheme
    probe: tuple[str, str, str] | None = None


def k8s_containers(secrets: dict[str, dict[str, str]]) -> list[tuple[str, list[Container]]]:
    """Each Job and Deployment in manifest order: its init containers, then its containers."""
    docs = [d for d in yaml.safe_load_all(K8S.read_text(encoding="utf-8")) if d]
    config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    base_env, entry = image()
    pods = []
    for doc in docs:
        if doc["kind"] not in ("Job", "Deployment"):
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        containers = []
        for c in spec.get("initContainers", []) + spec["containers"]:
            env = dict(base_env)
            for source in c.get("envFrom", []):
                env.update(config[source["configMapRef"]["name"]])
            env.update({e["name"]: e["value"] for e in c.get("env", [])})
            files = {}
            for mount in c.get("volumeMounts", []):
                secret = volumes[mount["name"]].get("secret")
                if secret is None:
                    continue
                for key, content in secrets[secret["secretName"]].items():
                    files[f"{mount['mountPath']}/{key}"] = (
                        content,
                        secret.get("defaultMode", 0o644),
                    )
            probe = None
            if "readinessProbe" in c:
                get = c["readinessProbe"]["httpGet"]
                port = next(p for p in c["ports"] if p["name"] == get["port"])["containerPort"]
                probe = (get["path"], str(port), get.get("scheme", "HTTP").lower())
            argv = [*entry, *c["args"]]
            containers.append(
                Container(doc["metadata"]["name"], c["name"], env, argv, files, probe)
            )
        pods.append((doc["metadata"]["name"], containers))
    return pods


@dataclass
class Local:
    """What :func:`localize` changes, for one test run."""

    root: Path
    bootstrap: str
    prefix: str
    provider_url: str
    #: container port -> local port, per pod (each pod has its own network namespace)
    ports: dict[tuple[str, str], int] = field(default_factory=dict)

    def port(self, pod: str, port: str) -> int:
        if (pod, port) not in self.ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.ports[(pod, port)] = int(s.getsockname()[1])
        return self.ports[(pod, port)]

    def path(self, pod: str, value: str) -> str:
        """Image and mount paths: /app is the repository; anything else under the pod's root."""
        if value == "/app" or value.startswith("/app/"):
            return str(ROOT) + value.removeprefix("/app")
        return str(self.root / pod) + value


def localize(
    c: Container, local: Local, *, secured: bool = False
) -> tuple[dict[str, str], list[str]]:
    """The container's environment and command line on this machine (the module docstring
    lists what changes and why); ``secured`` keeps the manifest's security settings."""
    env = {k: (local.path(c.pod, v) if v.startswith("/") else v) for k, v in c.env.items()}
    env["LOA_BOOTSTRAP_SERVERS"] = local.bootstrap
    env["LOA_TOPIC_PREFIX"] = env["LOA_APP_ID"] = local.prefix
    env["LOA_PARTITIONS"] = "4"
    env["LOA_REPLICATION_FACTOR"] = "1"
    env["LOA_METRICS_HOST"] = "127.0.0.1"
    if "LOA_GATEWAY_HOST" in env:
        env["LOA_GATEWAY_HOST"] = "127.0.0.1"  # still HTTPS: the pod's certificate is used
    for key in ("LOA_METRICS_PORT", "LOA_GATEWAY_PORT"):
        if key in env:
            env[key] = str(local.port(c.pod, env[key]))
    env.setdefault("LOA_METRICS_PORT", str(local.port(c.pod, "9470")))
    if "LOA_GATEWAY_HOST" in env:
        env.setdefault("LOA_GATEWAY_PORT", str(local.port(c.pod, "9480")))
    if not secured:
        for key in [k for k in env if k.startswith(("LOA_SASL_", "LOA_SSL_"))]:
            del env[key]
        env["LOA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    argv = list(c.argv)
    argv[0] = str(BIN / argv[0])  # the image's `loa` is this environment's entry point
    for i, arg in enumerate(argv):
        if argv[i - 1] == "--metrics-port":
            argv[i] = str(local.port(c.pod, arg))
        elif argv[i - 1] == "--url":
            argv[i] = local.provider_url
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    env["HOME"] = str(local.root / c.pod)
    return env, argv


def write_files(c: Container, local: Local) -> None:
    """The pod's mounted files with the manifest's modes (the kubelet's part)."""
    for mount_path, (content, mode) in c.files.items():
        path = Path(local.path(c.pod, mount_path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        path.chmod(mode)
    for directory in ("/data", "/tmp"):
        Path(local.path(c.pod, directory)).mkdir(parents=True, exist_ok=True)


class Provider:
    """A local HTTP provider for every channel: records each task posted, answers 200."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []
        #: requests whose body is not a task (reported by the test that meets them)
        self.odd: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    provider.tasks.append(json.loads(body))
                except ValueError:
                    provider.odd.append(f"{self.requestline} {dict(self.headers)} {body!r}")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            # a delivery worker has many calls in flight: the default backlog of 5 refused
            # some, and the refusals (retried, then moved to the next channel) were the test's
            request_queue_size = 1024
            daemon_threads = True

        Handler.protocol_version = "HTTP/1.1"  # keep-alive, as a provider's API would
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/send"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Processes:
    """The long-running containers, each one's output in a file, all stopped at the end.

    As the kubelet does for a Deployment (``restartPolicy: Always``), a container that exits
    is started again, at most :data:`RESTARTS` times; each restart is kept in
    :attr:`restarts` (name, exit code, the end of its output) and printed with the test's
    output, so a crash is seen even when the deployment recovers from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path, dict[str, str], list[str]]]
        self.running = {}
        self.restarts: list[tuple[str, int, str]] = []

    def start(self, name: str, env: dict[str, str], argv: list[str]) -> Path:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running[name] = (proc, log, env, argv)
        return log

    def check_alive(self) -> None:
        for name, (proc, log, env, argv) in list(self.running.items()):
            if proc.poll() is None:
                continue
            tail = log.read_text(errors="replace")[-3000:]
            self.restarts.append((name, proc.returncode, tail))
            print(f"restarted {name} after exit {proc.returncode}:\n{tail}")
            RESTARTS_FILE.parent.mkdir(exist_ok=True)
            with RESTARTS_FILE.open("a", encoding="utf-8") as out:
                row = {"test": self.root.name, "container": name, "exit": proc.returncode}
                out.write(json.dumps({**row, "tail": tail[-1000:]}) + "\n")
            if sum(r[0] == name for r in self.restarts) > RESTARTS:
                pytest.fail(f"{name} keeps exiting ({proc.returncode}):\n{tail}", pytrace=False)
            self.start(name, env, argv)

    def stop(self) -> None:
        for proc, _, _, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, _, _ in self.running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(env: dict[str, str], argv: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, *extra], env=env, capture_output=True, text=True, timeout=PATIENCE_S
    )


def wait_until(what: str, check: Any, processes: Processes) -> Any:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        processes.check_alive()
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}", pytrace=False)


def probe_ok(url: str, ca: Path | None) -> bool:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def lags(url: str) -> dict[str, float]:
    """``loa_consumer_lag_records`` by topic, as the worker serves it."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^loa_consumer_lag_records\{topic="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {topic: float(value) for topic, value in found}


def secret_values(tls: dict[str, Path]) -> dict[str, dict[str, str]]:
    """The Secrets' contents (the manifest holds placeholders): a password, a CA, a
    certificate and key for the gateway."""
    ca = tls["ca"].read_text()
    return {
        "loa-kafka-credentials": {"password": "not-used-by-the-dev-broker\n", "ca.crt": ca},
        "loa-gateway-tls": {
            "tls.crt": tls["server_cert"].read_text(),
            "tls.key": tls["server_key"].read_text(),
        },
    }


def national_alert(root: Path) -> tuple[Path, str]:
    identifier = f"PODS-{uuid.uuid4().hex[:8]}"
    doc = {
        "identifier": identifier,
        "sender": "nchmf.gov.vn",
        "sent": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": [
            {
                "language": "vi-VN",
                "category": ["Met"],
                "event": "Bão",
                "urgency": "Immediate",
                "severity": "Extreme",
                "certainty": "Observed",
                "headline": "Cảnh báo bão toàn quốc",
                "area": [{"areaDesc": "Việt Nam", "regions": ["VN"]}],
            }
        ],
    }
    path = root / "national.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path, f"nchmf.gov.vn/{identifier}"


def operator_and_alert(
    env: dict[str, str], loa: str, root: Path, processes: Processes
) -> tuple[str, str]:
    """An operator registers a key for the national agency and loads subscribers; the agency
    publishes a national alert. Returns the alert id and publish's output."""
    keys = root / "keys"
    made = run(
        env,
        [loa],
        "keys",
        "new",
        "--agency",
        "nchmf.gov.vn",
        "--key-id",
        "nchmf.gov.vn/pods",
        "--out",
        str(keys),
    )
    assert made.returncode == 0, made.stderr
    printed = dict(line.split(None, 2)[::2] for line in made.stdout.splitlines()[:2])
    private, public = printed["private"], printed["public"]
    loaded = run(
        env,
        [loa],
        "agencies",
        "load",
        str(ROOT / "deploy" / "agencies"),
        "--key",
        public.split(" (")[0],
    )
    assert loaded.returncode == 0, loaded.stderr
    subscribers = run(env, [loa], "directory", "load", "--synthetic", "3000")
    assert subscribers.returncode == 0, subscribers.stderr
    processes.check_alive()
    alert_file, alert_id = national_alert(root)
    published = run(
        env,
        [loa],
        "publish",
        str(alert_file),
        "--key",
        private.split(" (")[0],
        "--timeout",
        "180",
    )
    assert published.returncode in (0, 8), published.stdout + published.stderr
    return alert_id, published.stdout


def status_delivered(env: dict[str, str], loa: str, alert_id: str) -> dict[str, Any] | None:
    out = run(env, [loa], "status", alert_id, "--json")
    if out.returncode != 0:
        return None
    status = json.loads(out.stdout)["status"]
    return status if status.get("delivered", 0) > 0 and status.get("done") else None


@pytest.fixture
def local(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[Local, Provider]]:
    provider = Provider()
    try:
        yield (
            Local(tmp_path, kafka_bootstrap, f"pods-{uuid.uuid4().hex[:8]}", provider.url),
            provider,
        )
    finally:
        provider.close()


@pytest.mark.timeout(900)  # a whole deployment on two shared cores
def test_kubernetes_pods_come_up_in_order_and_a_national_alert_reaches_every_channel(
    local: tuple[Local, Provider], tmp_path: Path
) -> None:
    where, provider = local
    tls = tls_files(tmp_path)
    pods = dict(k8s_containers(secret_values(tls)))
    assert next(iter(pods)) == "loa-init"  # the Job comes first in the file
    processes = Processes(tmp_path)
    try:
        # before the Job: a worker pod's init container refuses (6) and creates nothing
        wait = pods["loa-worker"][0]
        write_files(wait, where)
        env, argv = localize(wait, where)
        early = run(env, argv)
        assert early.returncode == 6, early.stdout + early.stderr
        # the Job: its files readable with the manifest's modes, its settings usable as
        # written (SASL_SSL, the mounted password and CA), then `loa init` against the broker
        [job] = pods["loa-init"]
        write_files(job, where)
        secured, _ = localize(job, where, secured=True)
        checked = run(secured, [str(BIN / "loa")], "config", "--check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (
            "LOA_SASL_PASSWORD_FILE" in checked.stdout and "LOA_SSL_CA_LOCATION" in checked.stdout
        )
        env, argv = localize(job, where)
        done = run(env, argv)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nchmf.gov.vn: loaded" in done.stdout
        # each Deployment: its init container passes now, then its container runs
        probes = []
        for name, containers in pods.items():
            if name == "loa-init":
                continue
            *inits, main = containers
            for init in inits:
                write_files(init, where)
                env, argv = localize(init, where)
                passed = run(env, argv)
                assert passed.returncode == 0, (name, passed.stdout + passed.stderr)
            write_files(main, where)
            env, argv = localize(main, where)
            processes.start(name, env, argv)
            assert main.probe is not None
            path, port, scheme = main.probe
            host_port = where.port(name, port)
            probes.append((name, f"{scheme}://127.0.0.1:{host_port}{path}"))
        for name, url in probes:
            ca = tls["ca"] if url.startswith("https") else None
            wait_until(f"{name} ready ({url})", lambda u=url, c=ca: probe_ok(u, c), processes)

        operator_env, _ = localize(pods["loa-worker"][-1], where)
        loa = str(BIN / "loa")
        alert_id, published = operator_and_alert(operator_env, loa, tmp_path, processes)
        assert "accepted" in published
        status = wait_until(
            "the alert delivered", lambda: status_delivered(operator_env, loa, alert_id), processes
        )
        reached = {task["channel"] for task in provider.tasks}
        assert reached == set(CHANNELS), reached  # every channel's Deployment delivered
        assert not provider.odd, provider.odd[:3]  # every call carried a task
        # each person the providers were asked to reach is counted delivered once (a retried
        # call or a fallback to another channel reaches the same recipient again)
        assert status["delivered"] == len({t["recipient_id"] for t in provider.tasks})
        # at rest, the worker's lag on every input topic returns to 0 (issue 20: the receipts
        # topic stayed at 8, one commit marker per partition)
        metrics = f"http://127.0.0.1:{where.port('loa-worker', '9470')}/metrics"
        wait_until(
            "no lag at rest", lambda: lags(metrics) and not any(lags(metrics).values()), processes
        )
    finally:
        processes.stop()


def compose_containers() -> list[tuple[str, Container, list[str]]]:
    """Every Loa service of the compose file (built from the image): its environment over the
    image's, its command after the ENTRYPOINT, and the services it waits for."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    base_env, entry = image()
    out = []
    for name, service in services.items():
        if "build" not in service:
            continue
        env = {**base_env, **{k: str(v) for k, v in service.get("environment", {}).items()}}
        argv = [*entry, *service["command"]]
        probe = None
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        found = re.search(r"(https?)://127\.0\.0\.1:(\d+)(/[a-z0-9/]+)", test)
        if found:
            probe = (found.group(3), found.group(2), found.group(1))
        container = Container(name, name, env, argv, {}, probe)
        out.append((name, container, sorted(service.get("depends_on", {}))))
    return out


@pytest.mark.timeout(900)
def test_compose_services_come_up_in_dependency_order_and_deliver_a_national_alert(
    local: tuple[Local, Provider], tmp_path: Path
) -> None:
    where, _ = local
    tls = tls_files(tmp_path)
    services = compose_containers()
    order = [name for name, _, _ in services]
    waits = {name: deps for name, _, deps in services}
    assert waits["init"] == ["kafka"]
    assert all("init" in waits[n] for n in order if n != "init")
    processes = Processes(tmp_path)
    try:
        for name, container, _ in services:
            if name == "gateway":  # --profile gateway: its certificate is a mounted file
                for mount, key in (("gateway.crt", "server_cert"), ("gateway.key", "server_key")):
                    container.files[f"/run/secrets/{mount}"] = (tls[key].read_text(), 0o440)
            write_files(container, where)
            env, argv = localize(container, where)
            if name == "init":  # one-shot: completes before anything that depends on it
                done = run(env, argv)
                assert done.returncode == 0, done.stdout + done.stderr
                continue
            processes.start(name, env, argv)
        for name, container, _ in services:
            if container.probe is None:
                continue
            path, port, scheme = container.probe
            url = f"{scheme}://127.0.0.1:{where.port(name, port)}{path}"
            ca = tls["ca"] if scheme == "https" else None
            wait_until(f"{name} healthy ({url})", lambda u=url, c=ca: probe_ok(u, c), processes)

        worker = next(c for n, c, _ in services if n == "worker")
        operator_env, _ = localize(worker, where)
        loa = str(BIN / "loa")
        alert_id, _ = operator_and_alert(operator_env, loa, tmp_path, processes)
        wait_until(
            "the alert delivered", lambda: status_delivered(operator_env, loa, alert_id), processes
        )
        # the log provider of each channel's service wrote the tasks it delivered
        for channel in CHANNELS:
            log = (tmp_path / f"deliver-{channel}.log").read_text(errors="replace")
            assert f"via {channel}" in log, channel
        with contextlib.suppress(FileNotFoundError):
            assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")
    finally:
        processes.stop()
