"""example_app's devtools page in chromium: an admin sees the states, events and history of the
app, live (a click in another tab shows without a reload); anyone else is refused."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .helpers import TIMEOUT, click_and_wait, login, open_live, set_input, to_front, unique
from .test_screenshots import ARTIFACTS, png_stats

DEVTOOLS = "/_faststate/devtools"
PANEL = "#fs-FastStateDevtools-panel"


def change_counter(tab: Any, message: str) -> None:
    """Set the counter's message (a unique value to find on the devtools page) and click +."""
    to_front(tab)
    with tab.expect_response(lambda r: r.url.endswith("/Counter/set_message"), timeout=TIMEOUT):
        set_input(tab, "#message", message)
    expect(tab.locator("#message-echo")).to_have_text(message, timeout=TIMEOUT)
    click_and_wait(tab, "#inc")


def test_an_admin_sees_the_app_live(new_page: Any) -> None:
    page = new_page()
    login(page, "admin")
    counter = page.context.new_page()  # a second tab of the admin's session
    open_live(counter, "/")
    first = unique("first")
    change_counter(counter, first)

    to_front(page)
    open_live(page, DEVTOOLS)
    panel = page.locator(PANEL)
    expect(panel).to_contain_text("session:…:Counter", timeout=TIMEOUT)
    expect(panel).to_contain_text(first, timeout=TIMEOUT)  # the state's current value
    expect(page.locator("#events")).to_contain_text("Counter.increment", timeout=TIMEOUT)
    expect(page.locator("#events")).to_contain_text("ok 200")
    expect(page.locator("#rate-chart")).to_be_visible()
    # the session id never shows, though the key of the session's counter does
    sid = next(c["value"] for c in page.context.cookies() if c["name"] == "faststate_sid")
    assert sid.split(".")[0] not in page.content()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "devtools-page.png"
    page.screenshot(path=str(shot), full_page=True)
    stats = png_stats(page.context.new_page(), shot)
    assert stats["width"] >= 800 and stats["height"] >= 300, (shot, stats)
    assert stats["colours"] >= 16, (shot, stats)  # tables, a chart, text: not blank
    assert stats["notBackground"] >= 0.05, (shot, stats)

    page.evaluate("window.notReloaded = true")
    second = unique("second")
    change_counter(counter, second)  # a click in the other tab...
    to_front(page)
    expect(panel).to_contain_text(second, timeout=TIMEOUT)  # ...shows here, live
    expect(page.locator("#events")).to_contain_text(second)  # in the event's changes too
    expect(page.locator("#rate-chart rect").first).to_be_attached()  # charted
    assert page.evaluate("window.notReloaded") is True


def test_anyone_else_is_refused(new_page: Any) -> None:
    anonymous = new_page()
    assert anonymous.request.get(DEVTOOLS).status == 401
    plain = new_page()
    login(plain, "plain-user")
    assert plain.request.get(DEVTOOLS).status == 403
    plain.goto("/devtools")
    expect(plain.locator("#denied")).to_be_visible(timeout=TIMEOUT)
    expect(plain.locator("#devtools")).to_have_count(0)
