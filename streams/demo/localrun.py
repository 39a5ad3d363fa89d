"""Local processes for the demo, tests and benchmarks: the dev broker and worker subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from streams.settings.model import Settings

__all__ = [
    "WorkerProcess",
    "broker_running",
    "free_port",
    "start_broker",
    "stop_broker",
    "wait_ready",
]

KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"


def free_port() -> int:
    """A loopback TCP port nobody listens on now (for a worker's ``LOA_METRICS_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout_s: float = 900.0
) -> float:
    """Seconds from now until the worker ``proc`` answers 200 on ``/ready`` at ``port``, as an
    orchestrator's readiness probe sees it. Raises if it exits or is not ready in time."""
    url = f"http://127.0.0.1:{port}/ready"
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the worker exited {proc.returncode} before it was ready: see {log_path}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"the worker was not ready within {timeout_s:g} s: see {log_path}")


def _broker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    _, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    env["LOA_KAFKA_PORT"] = port
    return env


def broker_running(settings: Settings) -> bool:
    return (
        subprocess.call(
            ["bash", str(KAFKA_SCRIPT), "status"],
            env=_broker_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        == 0
    )


def start_broker(settings: Settings) -> bool:
    """Start the dev broker for ``settings.bootstrap_servers``; False if one already ran."""
    if broker_running(settings):
        return False
    subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], env=_broker_env(settings), check=True)
    return True


def stop_broker(settings: Settings) -> None:
    subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], env=_broker_env(settings), check=False)


class WorkerProcess:
    """``loa worker`` (or another ``loa`` command) in a subprocess of its own process group,
    logging to a file, with the settings passed as ``LOA_*`` variables."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        command: Sequence[str] = ("worker",),
        **env: str,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = tuple(command)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = dict(os.environ)
        env.update(
            LOA_BOOTSTRAP_SERVERS=self.settings.bootstrap_servers,
            LOA_APP_ID=self.settings.app_id,
            LOA_TOPIC_PREFIX=self.settings.topic_prefix,
            LOA_PARTITIONS=str(self.settings.partitions),
            LOA_DATA_DIR=self.settings.resolved_data_dir,
            LOA_LOG_LEVEL=self.settings.log_level,
            # one static member per worker of a run; the same log means the same worker
            # restarted, which reclaims its partitions (streams.settings.model.instance_id)
            LOA_INSTANCE_ID=f"{self.log_path.stem}-{os.getpid()}",
        )
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", *self.command],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout_s: float = 900.0) -> float:
        """Seconds from now until the worker's ``/ready`` answers 200 (it must have been
        started with a ``LOA_METRICS_PORT`` other than 0): :func:`wait_ready`."""
        port = int(self.env.get("LOA_METRICS_PORT", "0"))
        if port == 0 or self.proc is None:
            raise ValueError("wait_ready needs the worker started with LOA_METRICS_PORT set")
        return wait_ready(self.proc, port, self.log_path, timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
