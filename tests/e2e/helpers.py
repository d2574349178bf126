"""Helpers shared by the live-sync, scope and auth browser tests."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import expect

TIMEOUT = 5000
NUMBER = re.compile(r"^-?\d+$")
#: the URL path of an event: /_faststate/<State>/<event>
EVENT_PATH = re.compile(r"^/_faststate/[^/]+/[^/]+$")
DATASTAR_HEADERS = {
    "Datastar-Request": "true",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}
#: POST from inside the page (its cookies), as a Datastar action would
FETCH_JS = """async ({url, headers}) => {
    const r = await fetch(url, {method: "POST", headers, body: "{}"});
    return {status: r.status, text: await r.text(), error: r.headers.get("x-faststate-error")};
}"""
#: Records the live stream's Datastar fetch events ("started", "retrying", "error", ...) in a
#: hidden element, so that tests can wait on them with ``expect``.
WATCH_STREAM_JS = """() => {
    const out = document.createElement("output");
    out.id = "stream-events";
    out.hidden = true;
    document.body.appendChild(out);
    document.addEventListener("datastar-fetch", (evt) => {
        if (evt.detail.el && evt.detail.el.id === "faststate-stream") {
            out.textContent += evt.detail.type + " ";
        }
    });
}"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def is_event_reply(response: Any) -> bool:
    """A reply to an event POST (not the page, the client script or a live stream)."""
    return response.request.method == "POST" and bool(EVENT_PATH.match(urlsplit(response.url).path))


def is_stream_open(response: Any) -> bool:
    """The first answer to a live stream request (its headers; the body goes on)."""
    return urlsplit(response.url).path == "/_faststate/stream" and response.status == 200


def to_front(tab: Any) -> Any:
    """Make ``tab`` the active tab of its window, as a user does before clicking in it.

    Chromium throttles animation frames of background tabs to about one a second, and
    Playwright waits for two frames (a "stable" element) before every click."""
    tab.bring_to_front()
    return tab


def click_and_wait(page: Any, selector: str) -> None:
    """Click and wait for the event request it fires to be answered."""
    with page.expect_response(is_event_reply, timeout=TIMEOUT) as info:
        page.click(selector)
    assert info.value.status in (200, 204), info.value.status


def read_int(page: Any, selector: str) -> int:
    """The number Datastar rendered into ``selector`` (waits until it has rendered one)."""
    locator = page.locator(selector)
    expect(locator).to_have_text(NUMBER, timeout=TIMEOUT)
    return int(locator.inner_text())


def expect_text(page: Any, selector: str, value: object, timeout: int = TIMEOUT) -> None:
    expect(page.locator(selector)).to_have_text(str(value), timeout=timeout)


def open_live(page: Any, path: str) -> None:
    """Load ``path`` and wait until its live stream is open (changes made from now on reach
    it)."""
    with page.expect_response(is_stream_open, timeout=TIMEOUT):
        page.goto(path)


def login(page: Any, username: str) -> None:
    """Sign this page's browser context in as ``username`` (it lands on /profile)."""
    page.goto("/login")
    page.fill("#username", username)
    with page.expect_response(is_stream_open, timeout=TIMEOUT):
        page.click("#login-button")
    expect(page).to_have_url(re.compile(r"/profile$"), timeout=TIMEOUT)
    expect(page.locator("#user")).to_have_text(username, timeout=TIMEOUT)


def set_input(page: Any, selector: str, value: str) -> None:
    """Type into a bound input and blur it (its "change" event, if any, fires)."""
    page.fill(selector, value)
    page.locator(selector).press("Tab")
