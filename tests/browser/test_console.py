"""The agency console in a real browser (issue 23): two people write, preview, approve, send,
follow and cancel a ward alert; one person alone cannot send an Actual alert; another agency
sees and touches nothing; hostile input is refused at its field. Every page is checked with
axe-core (no serious or critical violation) and the browser console shows no
Content-Security-Policy violation. Screenshots go to .loa/screenshots/ (docs/img/ with
`make screenshots`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from streams.regions import registry
from tests.browser.conftest import LAPTOP, PASSWORD, PHONE, Console
from tests.browser.page import (
    axe_violations,
    csp_violations,
    css,
    fill,
    login,
    page_is,
    problem_at,
    screenshot,
    set_value,
    text,
    visible,
    wait,
)

Browser = Callable[..., WebDriver]


def a_ward() -> str:
    """A ward of Quảng Ngãi (VN-51), the demo agency's jurisdiction."""
    return next(code for code in registry().ward_codes if code.startswith("VN-51-"))


def accessible(driver: WebDriver, page: str) -> None:
    found = axe_violations(driver)
    assert not found, f"axe-core on {page}: {found}"


def choose_region(driver: WebDriver, code: str) -> None:
    search = css(driver, "#f-areas-regions")
    fill(search, code)
    css(driver, f"button.result[data-code='{code}']").click()
    wait(driver, lambda: code in text(driver, ".chips"), message=f"{code} chosen")


def compose(
    driver: WebDriver, headline: str, *, status: str = "Actual", english: bool = False
) -> None:
    """Fill Compose with a valid ward alert (the page is open)."""
    css(driver, "#f-event")
    Select(driver.find_element(By.ID, "f-status")).select_by_value(status)
    fill(driver.find_element(By.ID, "f-event"), "Lũ quét")
    Select(driver.find_element(By.ID, "f-severity")).select_by_value("Severe")
    fill(driver.find_element(By.ID, "f-infos-0-headline"), headline)
    fill(
        driver.find_element(By.ID, "f-infos-0-description"),
        "Mưa lớn gây lũ quét ở vùng núi.\nNước lên nhanh.",
    )
    fill(driver.find_element(By.ID, "f-infos-0-instruction"), "Di chuyển lên chỗ cao ngay.")
    if english:
        driver.find_element(By.ID, "with-en").click()
        fill(css(driver, "#f-infos-1-headline"), "Flash flood warning")
        fill(driver.find_element(By.ID, "f-infos-1-description"), "Heavy rain causes flash floods.")
        fill(driver.find_element(By.ID, "f-infos-1-instruction"), "Move to higher ground now.")
    choose_region(driver, a_ward())


def save_and_preview(driver: WebDriver) -> str:
    driver.find_element(By.ID, "save").click()
    page_is(driver, "preview")
    css(driver, "#reached")
    return str(driver.current_url.rsplit("/", 1)[-1])


def submit_for_approval(driver: WebDriver) -> str:
    driver.find_element(By.ID, "submit").click()
    return str(css(driver, "#approve-link").get_attribute("href"))


def approve(driver: WebDriver, link: str) -> str:
    driver.get(link)
    driver.refresh()  # the same link again is only a fragment change: load the draft anew
    page_is(driver, "approve")
    css(driver, "#approve-confirm").click()
    driver.find_element(By.ID, "approve").click()
    return str(css(driver, "#decision").text)


def no_csp_violations(*drivers: WebDriver) -> None:
    for driver in drivers:
        found = csp_violations(driver)
        assert not found, found


def test_two_people_write_preview_approve_send_follow_and_cancel_a_ward_alert(
    console: Console, browser: Browser
) -> None:
    author = browser(LAPTOP)
    author.get(console.url + "/")
    css(author, "#username")
    screenshot(author, "login")
    accessible(author, "login")

    login(author, console.url, "author")
    page_is(author, "compose")
    compose(author, "Cảnh báo lũ quét khẩn cấp", english=True)
    wait(author, lambda: not visible(author, "[aria-invalid=true]"), message="no problem shown")
    screenshot(author, "compose")
    accessible(author, "compose")

    draft_id = save_and_preview(author)
    assert int(author.find_element(By.ID, "reached").text.replace(".", "").replace(",", "")) > 0
    screenshot(author, "preview")
    accessible(author, "preview")
    link = submit_for_approval(author)
    assert link.endswith(f"#/approve/{draft_id}")

    approver = browser(LAPTOP)
    login(approver, console.url, "approver")
    approver.get(link)
    page_is(approver, "approve")
    # the approver sees exactly what will be sent, and who it reaches
    css(approver, "#reached")
    summary = text(approver, ".draft-summary")
    assert "Cảnh báo lũ quét khẩn cấp" in summary and "Flash flood warning" in summary
    css(approver, "#signed-alert summary").click()  # the exact alert approval will sign
    signed = text(approver, "#signed-alert pre")
    assert "Cảnh báo lũ quét khẩn cấp" in signed and a_ward() in signed
    screenshot(approver, "approve")
    accessible(approver, "approve")
    decision = approve(approver, link)
    assert "accepted" in decision, decision

    css(approver, "#follow-link").click()
    page_is(approver, "follow")
    wait(
        approver,
        lambda: approver.find_element(By.ID, "follow-state").get_attribute("data-done") == "true",
        120,
        "delivery complete",
    )
    delivered = int(
        approver.find_element(By.ID, "follow-delivered").text.replace(".", "").replace(",", "")
    )
    assert delivered > 0
    screenshot(approver, "follow")
    accessible(approver, "follow")
    alert_url = approver.current_url

    # the author updates it from the alert's page (prefilled), through the same approval
    author.get(alert_url)
    page_is(author, "follow")
    css(author, "#do-update").click()
    page_is(author, "compose")
    assert "Cập nhật" in text(author, "#f-msg-type")
    headline = author.find_element(By.ID, "f-infos-0-headline")
    assert headline.get_attribute("value") == "Cảnh báo lũ quét khẩn cấp"
    fill(headline, "Cập nhật: lũ quét lan rộng")
    save_and_preview(author)
    assert "accepted" in approve(approver, submit_for_approval(author))

    # then cancels it, through the same approval
    author.get(alert_url)
    page_is(author, "follow")
    wait(author, lambda: "Cập nhật: lũ quét lan rộng" in text(author, "h1"), message="updated")
    css(author, "#do-cancel").click()
    page_is(author, "compose")
    assert "Huỷ" in text(author, "#f-msg-type")
    save_and_preview(author)
    cancel_link = submit_for_approval(author)
    assert "accepted" in approve(approver, cancel_link)

    author.get(console.url + "/#/history")
    page_is(author, "history")
    rows = text(author, "main")
    assert "Cảnh báo lũ quét khẩn cấp" in rows and "Cập nhật" in rows and "Huỷ" in rows
    screenshot(author, "history")
    accessible(author, "history")
    no_csp_violations(author, approver)


def test_compose_is_usable_on_a_phone_and_in_english(console: Console, browser: Browser) -> None:
    phone = browser(PHONE)
    login(phone, console.url, "author")
    page_is(phone, "compose")
    compose(phone, "Cảnh báo sạt lở đất")
    # nothing wider than the screen: no sideways scrolling on a phone
    assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    screenshot(phone, "compose-phone")
    accessible(phone, "compose (phone)")
    phone.find_element(By.ID, "lang").click()
    wait(phone, lambda: phone.execute_script("return document.documentElement.lang") == "en")
    css(phone, "#f-event")
    assert "Compose an alert" in text(phone, "h1")
    # what was typed survives the switch
    assert (
        phone.find_element(By.ID, "f-infos-0-headline").get_attribute("value")
        == "Cảnh báo sạt lở đất"
    )
    assert a_ward() in text(phone, ".chips")
    screenshot(phone, "compose-phone-en")
    accessible(phone, "compose (phone, English)")
    save_and_preview(phone)
    assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    screenshot(phone, "preview-phone-en")
    accessible(phone, "preview (phone, English)")
    phone.get(console.url + "/#/history")
    page_is(phone, "history")
    assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    no_csp_violations(phone)


def test_shapes_drawn_on_the_map_become_the_area(console: Console, browser: Browser) -> None:
    driver = browser()
    login(driver, console.url, "national")
    page_is(driver, "compose")
    compose(driver, "Vùng vẽ trên bản đồ")  # the ward zooms the map to Quảng Ngãi
    time.sleep(0.5)  # the zoom animation
    area = driver.find_element(By.ID, "compose-map")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", area)
    css(driver, "#draw-polygon").click()
    for dx, dy in ((-40, -40), (40, -40), (40, 40), (-40, 40)):
        ActionChains(driver).move_to_element_with_offset(area, dx, dy).click().perform()
    driver.find_element(By.ID, "draw-finish").click()
    driver.find_element(By.ID, "draw-circle").click()
    for dx in (0, 25):
        ActionChains(driver).move_to_element_with_offset(area, dx, 0).click().perform()
    polygon = driver.find_element(By.ID, "f-areas-polygons").get_attribute("value") or ""
    circle = driver.find_element(By.ID, "f-areas-circles").get_attribute("value") or ""
    assert len(polygon.split()) == 4 and all(p.count(",") == 1 for p in polygon.split())
    assert re.fullmatch(r"1[45]\.\d+,10[78]\.\d+ \d+(\.\d+)?", circle), circle
    time.sleep(1.5)  # the debounced check
    assert not visible(driver, "[aria-invalid=true], #problems .notice-error"), text(
        driver, "#problems"
    )
    save_and_preview(driver)
    summary = text(driver, ".draft-summary")
    assert polygon.split()[0] in summary and circle in summary
    no_csp_violations(driver)


def test_an_approver_returns_a_draft_and_the_author_sees_why(
    console: Console, browser: Browser
) -> None:
    author = browser()
    login(author, console.url, "author")
    compose(author, "Cần sửa trước khi gửi")
    draft_id = save_and_preview(author)
    link = submit_for_approval(author)
    approver = browser()
    login(approver, console.url, "approver")
    approver.get(link)
    page_is(approver, "approve")
    fill(css(approver, "#return-reason"), "Ghi rõ tên xã trong tiêu đề.")
    approver.find_element(By.ID, "return").click()
    wait(approver, lambda: "Bị trả lại" in text(approver, "#outcome"), message="returned")
    author.get(f"{console.url}/#/compose/{draft_id}")
    page_is(author, "compose")
    assert "Ghi rõ tên xã trong tiêu đề." in text(author, "main")
    fill(author.find_element(By.ID, "f-infos-0-headline"), "Cần sửa trước khi gửi: xã Cẩm Thành")
    save_and_preview(author)
    assert "accepted" in approve(approver, submit_for_approval(author))
    no_csp_violations(author, approver)


def test_a_lost_session_asks_to_sign_in_and_comes_back_to_the_page(
    console: Console, browser: Browser
) -> None:
    driver = browser()
    login(driver, console.url, "approver")
    page_is(driver, "history")  # an approver lands on the queue
    driver.get(console.url + "/#/login")
    page_is(driver, "history")  # signed in: the login page sends back
    driver.delete_cookie("loa_console")  # as if the session expired, mid-use
    driver.find_element(By.CSS_SELECTOR, "nav a[href='#/compose']").click()
    page_is(driver, "compose")
    fill(css(driver, "#f-areas-regions"), "Quảng")  # the search call meets the lost session
    css(driver, "#username").send_keys("approver")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    page_is(driver, "compose")  # back where the session was lost
    no_csp_violations(driver)


def test_an_author_alone_cannot_send_an_actual_alert(console: Console, browser: Browser) -> None:
    author = browser()
    login(author, console.url, "author")
    compose(author, "Một mình không gửi được")
    save_and_preview(author)
    link = submit_for_approval(author)
    author.get(link)
    page_is(author, "approve")
    css(author, "#approve-confirm").click()
    author.find_element(By.ID, "approve").click()
    assert "không có quyền" in css(author, "#outcome .notice-error").text  # not an approver

    # an author who is also an approver still needs a second person
    solo = browser()
    login(solo, console.url, "solo")
    compose(solo, "Tự phê duyệt không được")
    save_and_preview(solo)
    link = submit_for_approval(solo)
    solo.get(link)
    page_is(solo, "approve")
    css(solo, "#approve-confirm").click()
    solo.find_element(By.ID, "approve").click()
    assert "người phê duyệt khác" in css(solo, "#outcome .notice-error").text
    solo.get(console.url + "/#/history")
    page_is(solo, "history")
    assert "Chờ phê duyệt" in text(solo, "main")
    no_csp_violations(author, solo)


def test_another_agency_neither_sees_nor_touches_the_alerts(
    console: Console, browser: Browser
) -> None:
    author = browser()
    login(author, console.url, "author")
    compose(author, "Diễn tập của Quảng Ngãi", status="Exercise")  # no approval: sent at once
    draft_id = save_and_preview(author)
    author.find_element(By.ID, "submit").click()
    page_is(author, "follow")
    alert_path = author.current_url.split("#", 1)[1]

    other = browser()
    login(other, console.url, "other")
    for path in (
        alert_path,
        f"/approve/{draft_id}",
        f"/preview/{draft_id}",
        f"/compose/{draft_id}",
    ):
        other.get(console.url + "/#" + path.lstrip("#"))
        wait(other, lambda: "Không tìm thấy" in text(other, "main"), message=f"not found at {path}")
    other.get(console.url + "/#/history")
    page_is(other, "history")
    assert "Diễn tập của Quảng Ngãi" not in text(other, "main")
    # the other agency's region search offers nothing of Quảng Ngãi
    other.get(console.url + "/#/compose")
    page_is(other, "compose")
    fill(css(other, "#f-areas-regions"), a_ward())
    wait(other, lambda: problem_at(other, "f-areas-regions"), message="no match at the picker")
    no_csp_violations(author, other)


HOSTILE = "<img src=x onerror=alert(1)>"


def test_hostile_input_in_every_field_is_refused_with_a_message_at_the_field(
    console: Console, browser: Browser
) -> None:
    driver = browser()
    login(driver, console.url, "author")
    page_is(driver, "compose")
    compose(driver, "ok", english=True)
    # values no select offers, as a tampered page would send them
    for field in ("f-status", "f-urgency", "f-severity", "f-certainty"):
        driver.execute_script(
            "const s = arguments[0]; s.add(new Option(arguments[1], arguments[1]));"
            "s.value = arguments[1];"
            "s.dispatchEvent(new Event('change', {bubbles: true}));",
            driver.find_element(By.ID, field),
            HOSTILE,
        )
    for field in ("f-event", "f-infos-0-headline", "f-infos-1-headline"):
        fill(driver.find_element(By.ID, field), HOSTILE)
    for field in (
        "f-infos-0-description",
        "f-infos-0-instruction",
        "f-infos-1-description",
        "f-infos-1-instruction",
    ):
        fill(driver.find_element(By.ID, field), f"Sơ tán\n{HOSTILE}")
    for box in driver.find_elements(By.CSS_SELECTOR, "input[data-path=category]:checked"):
        box.click()  # no category at all
    set_value(driver, driver.find_element(By.ID, "f-expires"), "2020-01-01T00:00")
    fill(driver.find_element(By.ID, "f-areas-polygons"), f"15,108 {HOSTILE}")
    fill(driver.find_element(By.ID, "f-areas-circles"), "15.1,108.8 99999")
    driver.find_element(By.ID, "save").click()
    fields = (
        "f-status", "f-urgency", "f-severity", "f-certainty", "f-event", "f-infos-0-headline",
        "f-infos-1-headline", "f-infos-0-description", "f-infos-0-instruction",
        "f-infos-1-description", "f-infos-1-instruction", "f-category", "f-expires",
        "f-areas-polygons",
    )  # fmt: skip
    for field in fields:
        wait(
            driver,
            lambda field=field: problem_at(driver, field if field != "f-category" else "cat-Geo"),
            message=f"a message at {field}",
        )
    # the circle is checked by the server once the polygon parses
    fill(driver.find_element(By.ID, "f-areas-polygons"), "")
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda: problem_at(driver, "f-areas-circles"), message="a message at the circles")
    # a region search that matches nothing says so at the picker
    fill(driver.find_element(By.ID, "f-areas-regions"), HOSTILE)
    wait(driver, lambda: problem_at(driver, "f-areas-regions"), message="a message at the regions")
    assert page_is(driver, "compose") is None  # nothing was saved: still composing
    screenshot(driver, "compose-problems")
    accessible(driver, "compose with problems")
    # and nothing typed became markup
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    no_csp_violations(driver)
