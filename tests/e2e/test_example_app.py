"""Real-browser tests of example_app: Datastar 1.0 in chromium against uvicorn.

The app keeps its state in memory for the whole test session, so no test relies on the counts
another test left behind: each reads its starting values or uses a fresh browser context (a new
context has no cookie, so it gets a new session).
"""

from __future__ import annotations

import re
import uuid
import zlib
from typing import Any
from urllib.parse import urlsplit

from itsdangerous.encoding import base64_decode
from playwright.sync_api import expect

TIMEOUT = 5000
NUMBER = re.compile(r"^-?\d+$")
#: the URL path of an event: /_faststate/<State>/<event>
EVENT_PATH = re.compile(r"^/_faststate/[^/]+/[^/]+$")


def is_event_reply(response: Any) -> bool:
    """A reply to an event POST (not the page, the client script or a live stream)."""
    return response.request.method == "POST" and bool(EVENT_PATH.match(urlsplit(response.url).path))


def expect_event(page: Any) -> Any:
    """``with expect_event(page) as info:`` waits for the reply to the event fired inside."""
    return page.expect_response(is_event_reply, timeout=TIMEOUT)


def assert_ok(response: Any) -> None:
    # 200 with an SSE body, or 204 when the reply has nothing the page does not already have
    assert response.status in (200, 204), response.status


def read_int(page: Any, selector: str) -> int:
    """The number Datastar rendered into ``selector`` (waits until it has rendered one)."""
    locator = page.locator(selector)
    expect(locator).to_have_text(NUMBER, timeout=TIMEOUT)
    return int(locator.inner_text())


def expect_int(page: Any, selector: str, value: int) -> None:
    expect(page.locator(selector)).to_have_text(str(value), timeout=TIMEOUT)


def click_and_wait(page: Any, selector: str) -> None:
    """Click and wait for the event request it fires to be answered."""
    with expect_event(page) as info:
        page.click(selector)
    assert_ok(info.value)


def test_clicks_update_the_page(page: Any) -> None:
    page.goto("/")
    # the client is self-hosted from the cached file, not fetched from the CDN
    expect(page.locator('script[src="/_faststate/datastar.js"]')).to_have_count(1)
    expect(page.locator('script[src*="cdn"]')).to_have_count(0)
    start = read_int(page, "#count")
    page.click("#inc")
    page.click("#inc")
    expect_int(page, "#count", start + 2)
    page.click("#dec")
    expect_int(page, "#count", start + 1)
    page.click("#reset")
    expect_int(page, "#count", 0)


def test_bound_input_round_trips_through_the_server(page: Any) -> None:
    page.goto("/")
    message = page.locator("#message")
    echo = page.locator("#message-echo")
    expect(echo).to_have_text("Hello", timeout=TIMEOUT)
    value = f"hi-{uuid.uuid4().hex[:12]}"
    message.fill(value)
    # Tab blurs the input, which fires "change" and so the set_message event.
    with expect_event(page) as info:
        message.press("Tab")
    assert_ok(info.value)
    expect(echo).to_have_text(value, timeout=TIMEOUT)

    page.reload()
    expect(page.locator("#message")).to_have_value(value, timeout=TIMEOUT)
    expect(page.locator("#message-echo")).to_have_text(value, timeout=TIMEOUT)


def set_message(page: Any, value: str) -> None:
    """Type ``value`` into #message and wait until the server has answered its change event."""
    page.locator("#message").fill(value)
    with expect_event(page) as info:
        page.locator("#message").press("Tab")
    assert_ok(info.value)


def test_awkward_text_survives_the_round_trip_and_is_not_markup(page: Any) -> None:
    """Quotes, markup, Datastar-looking ``$signal`` references and non-ASCII text come back as
    plain text after a reload (they go through the data-signals attribute of the page)."""
    page.goto("/")
    expect(page.locator("#message-echo")).not_to_have_text("", timeout=TIMEOUT)
    value = (
        'a "q" \'q\' `t` </p><img src=x onerror="window.pwned=1"> '
        "$counter.count ${1+1} back\\slash \u00fc \U0001f600"
    )
    set_message(page, value)
    page.reload()
    expect(page.locator("#message")).to_have_value(value, timeout=TIMEOUT)
    expect(page.locator("#message-echo")).to_have_text(value, timeout=TIMEOUT)
    expect(page.locator("img[src=x]")).to_have_count(0)
    assert page.evaluate("window.pwned") is None


def test_text_that_looks_like_a_datastar_action_survives_a_reload(
    page: Any, js_errors: list[str]
) -> None:
    page.goto("/")
    expect(page.locator("#message-echo")).not_to_have_text("", timeout=TIMEOUT)
    value = "mail me @post('/x') or me@example.org"
    set_message(page, value)
    page.reload()
    expect(page.locator("#message-echo")).to_have_text(value, timeout=TIMEOUT)
    expect(page.locator("#count")).to_have_text(NUMBER, timeout=TIMEOUT)
    assert not js_errors, js_errors


def test_sessions_are_separate_and_the_global_state_is_shared(new_page: Any) -> None:
    a = new_page()
    a.goto("/")
    a_start = read_int(a, "#count")
    for i in range(1, 4):
        a.click("#inc")
        expect_int(a, "#count", a_start + i)

    b = new_page()
    b.goto("/")
    assert read_int(b, "#count") == 0  # a fresh session, unaffected by A's clicks
    b_waves = read_int(b, "#waves")

    a_waves = read_int(a, "#waves")
    assert a_waves == b_waves  # nobody waved between the two reads
    a.click("#wave")
    expect_int(a, "#waves", a_waves + 1)

    b.reload()
    expect_int(b, "#waves", a_waves + 1)
    expect_int(b, "#count", 0)
    expect_int(a, "#count", a_start + 3)


FETCH_JS = """async ({url, headers}) => {
    const r = await fetch(url, {method: "POST", headers, body: "{}"});
    return {status: r.status, text: await r.text(), error: r.headers.get("x-faststate-error")};
}"""
BAD_URL = "/_faststate/Counter/increment?amount=notanumber"


def test_an_invalid_argument_is_reported_and_changes_nothing(page: Any) -> None:
    page.goto("/")
    start = read_int(page, "#count")

    datastar = page.evaluate(
        FETCH_JS,
        {
            "url": BAD_URL,
            "headers": {
                "Datastar-Request": "true",
                "Content-Type": "application/json",
                "Accept": "text/event-stream",
            },
        },
    )
    assert datastar["status"] == 200
    assert datastar["error"] == "invalid_arguments"
    for needle in ("datastar-patch-signals", "_faststate", "invalid"):
        assert needle in datastar["text"], datastar["text"]

    plain = page.evaluate(
        FETCH_JS, {"url": BAD_URL, "headers": {"Content-Type": "application/json"}}
    )
    assert plain["status"] == 422, plain
    body = page.evaluate("text => JSON.parse(text)", plain["text"])
    assert body["error"]["code"] == "invalid_arguments", body
    assert body["error"]["status"] == 422
    assert "Traceback" not in plain["text"]

    page.reload()
    expect_int(page, "#count", start)


def test_an_event_error_is_shown_on_the_page(page: Any) -> None:
    """A Datastar action that fails puts the error in $_faststate, shown by the #error element."""
    page.goto("/")
    start = read_int(page, "#count")
    error = page.locator("#error")
    expect(error).to_be_hidden(timeout=TIMEOUT)
    # Datastar applies the attributes of elements added later, so a button can be injected.
    page.evaluate(
        """url => {
            const b = document.createElement("button");
            b.id = "bad";
            b.textContent = "bad";
            b.setAttribute("data-on:click", `@post('${url}')`);
            document.querySelector("main").appendChild(b);
        }""",
        BAD_URL,
    )
    click_and_wait(page, "#bad")
    expect(error).to_be_visible(timeout=TIMEOUT)
    expect(error).to_contain_text(re.compile("invalid", re.IGNORECASE), timeout=TIMEOUT)
    expect_int(page, "#count", start)

    # The next request clears the error.
    page.click("#inc")
    expect_int(page, "#count", start + 1)
    expect(error).to_be_hidden(timeout=TIMEOUT)


def stream_token_payload(html: str) -> str:
    """The JSON payload of the page's live stream token (itsdangerous: base64url payload, zlib
    compressed when it starts with a dot, then timestamp and signature), not verified."""
    match = re.search(r"/_faststate/stream\?t=([A-Za-z0-9_.-]+)", html)
    assert match, "no live stream token in the page"
    token = match.group(1)
    compressed = token.startswith(".")
    data = base64_decode(token.lstrip(".").split(".")[0])
    return (zlib.decompress(data) if compressed else data).decode()


def test_the_page_leaks_neither_the_session_cookie_nor_the_secret(page: Any, secret: str) -> None:
    page.goto("/")
    read_int(page, "#count")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "faststate_sid" in cookies, cookies
    cookie = cookies["faststate_sid"]
    assert cookie["httpOnly"] is True
    sid, _, signature = cookie["value"].rpartition(".")
    assert sid and signature

    html = page.content()
    # the stream token is signed, not encrypted: look inside its payload too, where a raw
    # substring check of the page could never find the session id
    payload = stream_token_payload(html)
    assert '"t"' in payload, payload  # it did decode (the tab id is in it)
    for secret_value in (cookie["value"], sid, signature, secret):
        assert secret_value not in html
        assert secret_value not in payload
    assert "faststate_sid" not in page.evaluate("document.cookie")

    # Nor does an event reply.
    with expect_event(page) as info:
        page.click("#inc")
    assert_ok(info.value)
    reply = info.value.text() if info.value.status == 200 else ""
    for secret_value in (cookie["value"], sid, secret):
        assert secret_value not in reply
