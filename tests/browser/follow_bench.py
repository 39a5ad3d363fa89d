"""Does an open Follow page slow a national fan-out? (issue 23, item 5) Measured in one run.

One broker, one worker (``loa worker``), ``loa console`` and N synthetic subscribers (the
first-alert benchmark's stack, ``benchmarks/first_alert.py``, mode ``bench``: a warm-up alert
and a settle wait first). Then rounds, alternating: an author writes a national Extreme alert
through the console's API, an approver approves it in headless Chromium, and the approver's
browser either opens the alert's Follow page (``with``: polled every 2 s by the page, the
figures read from the page every 0.5 s) or the History page (``without``). Everything else is
the same in both rounds, the browser included. Tasks are counted per alert by the
independent librdkafka reader on the broker's clock (``benchmarks/brokerclock.py``).

The browser runs on the same two cores as the broker and the worker here; a duty officer's
browser would not, so ``with`` is the harder case.

    python -m tests.browser.follow_bench --subscribers 1e7 [--rounds 2]

prints the figures and writes ``benchmarks/results/console_follow_page.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from benchmarks.brokerclock import count_tasks, watermarks
from benchmarks.common import write_results
from benchmarks.first_alert import MODES, Stack, _tool, _wait_emitted
from benchmarks.harness import ALERT_SENDER, alert_json, proc_stat
from benchmarks.run import settle
from streams.demo.localrun import free_port
from streams.records import Priority
from streams.regions import registry
from tests.browser.conftest import CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "follow bench password 23"


def national_draft() -> dict[str, Any]:
    expires = (datetime.now(UTC) + timedelta(hours=6)).astimezone().isoformat(timespec="seconds")
    return {
        "status": "Actual",
        "msg_type": "Alert",
        "event": "Bão",
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "category": ["Met"],
        "expires": expires,
        "infos": [
            {
                "language": "vi-VN",
                "headline": "Bão rất mạnh",
                "description": "",
                "instruction": "Ở trong nhà.",
            }
        ],
        "areas": {"regions": ["VN"], "polygons": [], "circles": []},
    }


def start_console(stack: Stack, port: int) -> subprocess.Popen[bytes]:
    env = {**stack.env, "LOA_CONSOLE_PORT": str(port), "LOA_METRICS_PORT": "0",
           "LOA_CONSOLE_KEYS_DIR": str(stack.workdir / "keys")}  # fmt: skip
    log = (stack.workdir / "console.log").open("ab")
    proc = subprocess.Popen(
        [_tool("loa"), "console"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"loa console exited: see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("loa console did not answer")


def browser(driver_path: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (*CHROMIUM_FLAGS, "--window-size=1366,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def login_api(base: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=120)
    me = client.post("/api/login", json={"username": user, "password": PASSWORD})
    me.raise_for_status()
    client.headers["X-CSRF-Token"] = me.json()["csrf"]
    # the cookie is Secure: httpx keeps it off plain http, a browser on 127.0.0.1 does not
    client.headers["Cookie"] = f"loa_console={me.cookies['loa_console']}"
    return client


def login_browser(driver: webdriver.Chrome, base: str, user: str) -> None:
    driver.get(base + "/#/login")
    wait_for(lambda: driver.find_elements(By.ID, "username"))
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    wait_for(lambda: driver.find_elements(By.ID, "who"))


def wait_for(what: Any, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = what()
        except Exception:  # the page is still changing
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(str(what))


def one_round(
    stack: Stack, base: str, author: httpx.Client, driver: webdriver.Chrome, follow: bool, n: int
) -> dict[str, Any]:
    settings = stack.settings
    topics = [settings.sends_topic(p.value) for p in Priority]
    marks = watermarks(settings, topics)
    draft = author.post("/api/drafts", json=national_draft())
    draft.raise_for_status()
    draft_id = draft.json()["id"]
    author.post(f"/api/drafts/{draft_id}/submit").raise_for_status()
    driver.get(f"{base}/#/approve/{draft_id}")
    wait_for(lambda: driver.find_element(By.ID, "approve-confirm").is_displayed())
    driver.find_element(By.ID, "approve-confirm").click()
    assert stack.worker is not None
    worker_cpu0 = proc_stat(stack.worker.pid)[0]
    driver.find_element(By.ID, "approve").click()
    wait_for(lambda: driver.find_element(By.ID, "decision").text)
    alert_id = author.get(f"/api/drafts/{draft_id}").json()["alert_id"]
    shown: list[tuple[float, str]] = []
    started = time.monotonic()
    if follow:
        driver.find_element(By.ID, "follow-link").click()
    else:
        driver.get(f"{base}/#/history")
    while True:
        if follow:
            found = driver.find_elements(By.ID, "follow-tasks")
            if found and (not shown or shown[-1][1] != found[0].text):
                shown.append((round(time.monotonic() - started, 2), found[0].text))
        grown = sum(watermarks(settings, topics).values()) - sum(marks.values())
        if grown >= n or time.monotonic() - started > 600:
            break
        time.sleep(0.5)
    _wait_emitted(stack, marks, n)
    if follow:  # one more poll of the page after the fan-out: its last figure
        time.sleep(2.5)
        shown.append(
            (round(time.monotonic() - started, 2), driver.find_element(By.ID, "follow-tasks").text)
        )
    count = count_tasks(settings, topics, since=marks).get(alert_id)
    if count is None:
        raise RuntimeError(f"no task of {alert_id} on the broker")
    return {
        "follow_page": follow,
        "alert_id": alert_id,
        "tasks": count.tasks,
        "exact": count.tasks == count.distinct == n and count.duplicates == 0,
        "per_s": count.per_s,
        "first_to_last_s": count.seconds,
        "worker_cpu_s": proc_stat(stack.worker.pid)[0] - worker_cpu0,
        "page_figures": shown,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m tests.browser.follow_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--subscribers", type=float, default=1e7)
    p.add_argument("--rounds", type=int, default=2, help="pairs of (without, with)")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    n = int(args.subscribers)
    install = ROOT / "deploy" / "console" / "install-chromium.sh"
    found = subprocess.run(["bash", str(install)], capture_output=True, text=True, check=True)
    driver_path = found.stdout.strip().splitlines()[-1]
    os.environ["SE_OFFLINE"] = "true"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="follow-bench-"))
    stack = Stack(MODES["bench"], workdir / "bench", free_port())
    shutil.rmtree(stack.workdir, ignore_errors=True)
    stack.workdir.mkdir(parents=True)
    console = None
    driver = None
    rounds: list[dict[str, Any]] = []
    try:
        stack.start_broker()
        stack.loa("init")
        stack.stamp_topics()
        key = stack.agency_key()
        secret = stack.workdir / "password"
        secret.write_text(PASSWORD + "\n")
        for user, role in (("author", "author"), ("approver", "approver")):
            stack.loa(
                *("console", "users", "add", "--agency", ALERT_SENDER, "--user", user),
                *("--role", role, "--password-file", str(secret)),
            )
        stack.loa("directory", "load", "--synthetic", str(n))
        print(f"ready in {stack.start_worker():.1f} s", flush=True)
        warm = stack.workdir / "warm.json"
        warm.write_bytes(
            alert_json(f"W{time.time_ns()}", (registry().ward_codes[0],), Priority.EXTREME)
        )
        stack.loa("publish", str(warm), "--key", str(key), "--timeout", "300")
        port = free_port()
        console = start_console(stack, port)
        base = f"http://127.0.0.1:{port}"
        author = login_api(base, "author")
        driver = browser(driver_path)
        login_browser(driver, base, "approver")
        assert stack.worker is not None
        worker_pid = stack.worker.pid
        for follow in [False, True] * args.rounds:
            settle(stack.broker_dir, lambda: proc_stat(worker_pid)[0])
            result = one_round(stack, base, author, driver, follow, n)
            rounds.append(result)
            figures = [f for _, f in result["page_figures"]]
            print(
                f"{'with' if follow else 'without':<7} follow page: {result['per_s']:>11,.0f}"
                f" tasks/s, {result['tasks']:,} tasks, exact {result['exact']}, page {figures}",
                flush=True,
            )
    finally:
        if driver is not None:
            driver.quit()
        if console is not None and console.poll() is None:
            console.terminate()
            console.wait(60)
        stack.stop_worker()
        stack.stop_broker()
        shutil.rmtree(stack.broker_dir / "data", ignore_errors=True)
    without = [r["per_s"] for r in rounds if not r["follow_page"]]
    with_page = [r["per_s"] for r in rounds if r["follow_page"]]
    report = write_results("console_follow_page", {
        "command": "python -m tests.browser.follow_bench " + " ".join(argv or []),
        "subscribers": n,
        "rounds": rounds,
        "mean_per_s_without": sum(without) / len(without),
        "mean_per_s_with": sum(with_page) / len(with_page),
        "with_over_without": (sum(with_page) / len(with_page)) / (sum(without) / len(without)),
    })  # fmt: skip
    print(f"with/without follow page: {report['with_over_without']:.3f}", flush=True)
    return report


if __name__ == "__main__":
    main()
