"""Helpers the browser tests share: signing in, waiting for the page, reading problems at
fields, screenshots (tests/browser/conftest.py SHOTS), axe-core and the browser console (CSP
violations)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.conftest import AXE, PASSWORD, SHOTS

WAIT_S = 30.0


def wait(
    driver: WebDriver, what: Callable[[], Any], timeout_s: float = WAIT_S, message: str = ""
) -> Any:
    """Until ``what()`` is truthy (exceptions of a page still changing count as not yet)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = what()
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException, LookupError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(
        f"timed out: {message or what} ({last}); page: {driver.current_url}\n"
        f"{text(driver, 'main')[:2000]}"
    )


def css(driver: WebDriver, selector: str, timeout_s: float = WAIT_S) -> WebElement:
    return wait(driver, lambda: visible(driver, selector), timeout_s, f"visible {selector}")


def visible(driver: WebDriver, selector: str) -> WebElement | None:
    for el in driver.find_elements(By.CSS_SELECTOR, selector):
        if el.is_displayed():
            return el
    return None


def text(driver: WebDriver, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def page_is(driver: WebDriver, page: str) -> None:
    wait(
        driver,
        lambda: (
            driver.execute_script("return document.getElementById('main').dataset.page") == page
        ),
        message=f"page {page}",
    )


def login(
    driver: WebDriver, url: str, user: str, password: str = PASSWORD, lang: str = "vi"
) -> None:
    driver.get(url + "/#/login")
    css(driver, "#username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    css(driver, "#who")
    if driver.execute_script("return document.documentElement.lang") != lang:
        driver.find_element(By.ID, "lang").click()
        wait(driver, lambda: driver.execute_script("return document.documentElement.lang") == lang)


def fill(el: WebElement, value: str) -> None:
    el.clear()
    el.send_keys(value)


def set_value(driver: WebDriver, el: WebElement, value: str) -> None:
    """For inputs send_keys types badly into (datetime-local): set and fire input/change."""
    driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        el,
        value,
    )


def problem_at(driver: WebDriver, field_id: str) -> str:
    """The message shown at a field: aria-invalid on it, its aria-describedby error visible."""
    el = driver.find_element(By.ID, field_id)
    if el.get_attribute("aria-invalid") != "true":
        return ""
    for ref in (el.get_attribute("aria-describedby") or "").split():
        found = driver.find_elements(By.ID, ref)
        if found and found[0].is_displayed() and found[0].text.strip():
            return str(found[0].text.strip())
    return ""


def screenshot(driver: WebDriver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"console-{name}.png"
    # a full-page capture: grow the window to the page's height, then restore it
    size = driver.get_window_size()
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    )
    driver.set_window_size(size["width"], min(max(size["height"], int(height) + 20), 4000))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    return path


def axe_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is. The library is
    injected by the test (it is never served by the console, so its CSP does not apply)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then("
        "  r => done(JSON.stringify(r.violations)),"
        "  e => done(JSON.stringify([{id: 'axe-error', impact: 'critical',"
        "                             description: String(e), nodes: []}])));"
    )
    found = json.loads(result)
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v.get("help", v.get("description")),
            "nodes": [n.get("target") for n in v["nodes"]][:5],
        }
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def csp_violations(driver: WebDriver) -> list[str]:
    """Console errors that say the Content-Security-Policy blocked something, or a script failed."""
    entries = driver.get_log("browser")
    return [
        e["message"]
        for e in entries
        if e["level"] == "SEVERE"
        and ("Content Security Policy" in e["message"] or "Uncaught" in e["message"])
    ]
