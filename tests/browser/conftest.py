"""The console's browser tests: Debian's Chromium, driven by Selenium, against a real
``loa console``, a real worker, a ``loa deliver --provider log`` and the real broker.

The stack (``console``, module scope) is the integration tests' live Loa (topics, the four
sample agencies with local keys, a synthetic directory, a worker) plus the console with
its keys folder and two agencies' users, and a delivery worker with the log provider.
``browser(size)`` opens a headless Chromium with its own cookie jar, so each user of a test
has their own session. Chromium and chromedriver come from deploy/console/install-chromium.sh
(apt); Selenium Manager is kept offline (SE_OFFLINE) and is given the driver's path, so
nothing is downloaded at test time. A missing browser fails the run loudly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from streams.demo.localrun import WorkerProcess
from streams.directory.load import load_synthetic
from streams.kafkaio.clients import create_topics
from streams.regions import registry
from streams.settings.model import Settings
from tests.conftest import drop_topics
from tests.integration.conftest import register_agencies, wait_census

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "console" / "install-chromium.sh"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
#: Where the pages' screenshots go: .loa/screenshots (untracked) unless LOA_SCREENSHOTS names
#: another directory; `make screenshots` sets it to docs/img, the README's copies, so a plain
#: `make test` leaves the tracked images alone.
SHOTS = Path(os.environ.get("LOA_SCREENSHOTS") or ROOT / ".loa" / "screenshots")
SUBSCRIBERS = 20_000
SEED = 23
AGENCY = "pctt.quangngai.gov.vn"
OTHER_AGENCY = "ubnd.quangninh.gov.vn"
PASSWORD = "correct horse battery staple 23"
# users: name -> (agency, roles)
USERS = {
    "author": (AGENCY, ("author",)),
    "approver": (AGENCY, ("approver",)),
    "solo": (AGENCY, ("author", "approver")),
    "other": (OTHER_AGENCY, ("author", "approver")),
    # shapes need an agency whose jurisdiction has cells: the national one (VN)
    "national": ("nchmf.gov.vn", ("author",)),
}
LAPTOP = (1366, 900)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI and containers
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--force-device-scale-factor=1",
)
PHONE = (390, 844)

os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Console:
    url: str
    settings: Settings
    logs: Path
    processes: list[WorkerProcess] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("*.log"))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: WorkerProcess, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive:
            raise AssertionError(
                f"loa console exited: {proc.log_path.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"loa console did not answer at {url}")


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "LOA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LOA_APP_ID": settings.app_id,
        "LOA_TOPIC_PREFIX": settings.topic_prefix,
        "LOA_PARTITIONS": str(settings.partitions),
        "LOA_DATA_DIR": settings.resolved_data_dir,
    }


def add_user(
    settings: Settings, name: str, agency: str, roles: tuple[str, ...], password_file: Path
) -> None:
    role_args = [a for r in roles for a in ("--role", r)]
    run = subprocess.run(
        [os.fspath(Path(os.sys.executable)), "-m", "streams", "console", "users", "add",
         "--agency", agency, "--user", name, *role_args, "--password-file", str(password_file)],
        env=_env(settings), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
async def console(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"it-{tag}",
        app_id=f"it-{tag}",
        partitions=2,
        data_dir=str(tmp_path_factory.mktemp(f"data-{tag}")),
    )
    regions = registry()
    await create_topics(settings)
    keys = tmp_path_factory.mktemp("keys")
    await register_agencies(settings, keys)
    await load_synthetic(settings, SUBSCRIBERS, SEED, regions)
    logs = tmp_path_factory.mktemp("logs")
    secret = logs / "password"
    secret.write_text(PASSWORD + "\n")
    for name, (agency, roles) in USERS.items():
        add_user(settings, name, agency, roles, secret)
    port = _free_port()
    started = Console(f"http://127.0.0.1:{port}", settings, logs)
    env = {"LOA_METRICS_PORT": "0"}
    try:
        started.processes.append(WorkerProcess(settings, logs / "worker.log", **env).start())
        started.processes.append(
            WorkerProcess(
                settings, logs / "deliver.log", command=("deliver", "--provider", "log"), **env
            ).start()
        )
        console_proc = WorkerProcess(
            settings,
            logs / "console.log",
            command=("console",),
            LOA_CONSOLE_PORT=str(port),
            LOA_CONSOLE_KEYS_DIR=str(keys),
            **env,
        ).start()
        started.processes.append(console_proc)
        await wait_census(settings, regions)
        _wait_http(started.url + "/", console_proc)
        yield started
    finally:
        for proc in reversed(started.processes):
            proc.stop()
        drop_topics(kafka_bootstrap, [settings.topic_prefix])


@pytest.fixture(scope="session")
def chromedriver() -> str:
    run = subprocess.run(
        ["bash", str(INSTALL)],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if run.returncode != 0:
        pytest.fail(f"Chromium could not be installed:\n{run.stdout}\n{run.stderr}", pytrace=False)
    return run.stdout.strip().splitlines()[-1]


@pytest.fixture
def browser(chromedriver: str) -> Iterator[Callable[..., webdriver.Chrome]]:
    """A factory of headless Chromium sessions, each with its own profile (cookies)."""
    opened: list[webdriver.Chrome] = []

    def open_browser(size: tuple[int, int] = LAPTOP, lang: str = "vi") -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in (*CHROMIUM_FLAGS, f"--window-size={size[0]},{size[1]}", f"--lang={lang}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        driver.set_window_size(*size)
        driver.implicitly_wait(0)
        opened.append(driver)
        return driver

    yield open_browser
    for driver in opened:
        driver.quit()
