"""Sign-in and permissions in a real browser: example_app's /login, /profile and /admin.

The Settings state is GLOBAL for the whole test session, so tests read the maintenance value
before they change it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .helpers import (
    DATASTAR_HEADERS,
    FETCH_JS,
    TIMEOUT,
    click_and_wait,
    expect_text,
    login,
    open_live,
    to_front,
    unique,
)

BOOL = re.compile(r"^(true|false)$")


def read_bool(page: Any, selector: str) -> bool:
    locator = page.locator(selector)
    expect(locator).to_have_text(BOOL, timeout=TIMEOUT)
    return locator.inner_text() == "true"


@pytest.mark.parametrize("path", ["/profile", "/admin"])
def test_an_anonymous_visitor_is_sent_to_login(page: Any, path: str) -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login$"), timeout=TIMEOUT)
    expect(page.locator("#who")).to_have_text("Not signed in.", timeout=TIMEOUT)
    expect(page.locator("#username")).to_be_visible(timeout=TIMEOUT)


def test_a_plain_user_can_read_but_not_change_the_settings(page: Any) -> None:
    login(page, unique("plain"))
    open_live(page, "/admin")
    before = read_bool(page, "#maintenance")
    expect(page.locator("#why")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#why")).to_contain_text("Only users with the admin permission")
    expect(page.locator("#toggle-maintenance")).to_be_disabled(timeout=TIMEOUT)
    expect(page.locator("#toggle-theme")).to_be_disabled(timeout=TIMEOUT)

    # a forced request, as if the button were enabled by hand
    reply = page.evaluate(
        FETCH_JS, {"url": "/_faststate/Settings/toggle_maintenance", "headers": DATASTAR_HEADERS}
    )
    assert reply["status"] == 200, reply  # Datastar only reads errors from a 200 SSE reply
    assert reply["error"] == "forbidden", reply
    assert "datastar-patch-signals" in reply["text"], reply
    assert re.search(r'"status":\s*403', reply["text"]), reply
    assert '"settings"' not in reply["text"], reply  # no patch of the state itself

    expect_text(page, "#maintenance", str(before).lower())
    page.reload()
    expect_text(page, "#maintenance", str(before).lower())


def test_an_admins_change_reaches_every_open_tab_live(new_page: Any) -> None:
    admin = new_page()
    login(admin, "admin")
    open_live(admin, "/admin")
    expect(admin.locator("#why")).to_be_hidden(timeout=TIMEOUT)
    expect(admin.locator("#toggle-maintenance")).to_be_enabled(timeout=TIMEOUT)
    admin_tab2 = admin.context.new_page()
    open_live(admin_tab2, "/admin")
    plain = new_page()
    login(plain, unique("reader"))
    open_live(plain, "/admin")

    before = read_bool(admin, "#maintenance")
    after = str(not before).lower()
    click_and_wait(to_front(admin), "#toggle-maintenance")
    for tab in (admin, admin_tab2, plain):
        expect_text(tab, "#maintenance", after)

    click_and_wait(to_front(admin_tab2), "#toggle-maintenance")  # and back, from the other tab
    for tab in (admin, admin_tab2, plain):
        expect_text(tab, "#maintenance", str(before).lower())


def test_a_tab_left_open_after_logout_stops_receiving_the_profile(new_page: Any) -> None:
    name = unique("erin")
    left_open = new_page()
    login(left_open, name)
    old_name = "before logout"
    left_open.fill("#display-name", old_name)
    click_and_wait(left_open, "#save-name")
    expect_text(left_open, "#shown-name", old_name)

    # the same browser logs out in another tab; the profile tab stays open
    logout_tab = left_open.context.new_page()
    logout_tab.goto("/login")
    logout_tab.click("#logout-button")
    expect(logout_tab.locator("#who")).to_have_text("Not signed in.", timeout=TIMEOUT)

    # the user, signed in elsewhere, changes the profile; a second tab there is the witness
    elsewhere = new_page()
    login(elsewhere, name)
    witness = elsewhere.context.new_page()
    open_live(witness, "/profile")
    to_front(elsewhere).fill("#display-name", "secret new name")
    click_and_wait(elsewhere, "#save-name")
    expect_text(witness, "#shown-name", "secret new name")
    # the change went out to every subscriber at once: the logged-out tab did not get it
    expect_text(left_open, "#shown-name", old_name)
    assert "secret new name" not in left_open.content()
