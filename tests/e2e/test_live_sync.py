"""Live sync in a real browser: every tab's one SSE stream (``#faststate-stream``) carries the
changes it should see, and only those, and a tab whose stream dropped comes back in sync.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.servers import Uvicorn

from .helpers import (
    TIMEOUT,
    WATCH_STREAM_JS,
    expect_text,
    is_stream_open,
    open_live,
    read_int,
    to_front,
)


def test_two_tabs_of_one_session_stay_in_sync(page: Any) -> None:
    open_live(page, "/")
    tab2 = page.context.new_page()
    open_live(tab2, "/")
    start = read_int(page, "#count")
    assert read_int(tab2, "#count") == start

    to_front(page).click("#inc")
    expect_text(page, "#count", start + 1)
    expect_text(tab2, "#count", start + 1)
    to_front(tab2).click("#dec")
    tab2.click("#dec")
    expect_text(tab2, "#count", start - 1)
    expect_text(page, "#count", start - 1)
    to_front(page).click("#reset")
    expect_text(tab2, "#count", 0)


def test_a_global_change_reaches_other_users_but_session_changes_do_not(
    new_page: Any,
) -> None:
    a, b = new_page(), new_page()
    open_live(a, "/")
    open_live(b, "/")
    waves = read_int(a, "#waves")
    a_count, b_count = read_int(a, "#count"), read_int(b, "#count")

    a.click("#wave")
    expect_text(b, "#waves", waves + 1, timeout=1000)
    b.click("#wave")
    expect_text(a, "#waves", waves + 2, timeout=1000)

    a.click("#inc")
    a.click("#inc")
    expect_text(a, "#count", a_count + 2)
    b.click("#dec")
    expect_text(b, "#count", b_count - 1)
    # one more global change: it is delivered after A's and B's counter changes, so once it
    # has arrived the counter changes would have arrived too, had they been sent
    a.click("#wave")
    expect_text(b, "#waves", waves + 3, timeout=1000)
    expect_text(a, "#waves", waves + 3, timeout=1000)
    expect_text(b, "#count", b_count - 1)
    expect_text(a, "#count", a_count + 2)


def test_rapid_clicks_all_count_in_every_tab(page: Any) -> None:
    open_live(page, "/")
    tab2 = page.context.new_page()
    open_live(tab2, "/")
    start = read_int(page, "#count")
    to_front(page)
    for _ in range(10):
        page.click("#inc")
    expect_text(page, "#count", start + 10)
    expect_text(tab2, "#count", start + 10)
    tab2.reload()
    expect_text(tab2, "#count", start + 10)


def test_a_tab_whose_stream_dropped_comes_back_in_sync(
    restartable_server: Uvicorn, new_page: Any
) -> None:
    srv = restartable_server
    home = new_page(srv.url)
    open_live(home, "/")
    product = home.context.new_page()
    open_live(product, "/product/3")
    likes = read_int(product, "#likes")
    product.click("#like")
    expect_text(product, "#likes", likes + 1)
    to_front(home).click("#wave")
    home.click("#wave")
    expect_text(home, "#waves", 2)  # a fresh server: nobody else waved
    for _ in range(3):
        home.click("#inc")
    expect_text(home, "#count", 3)
    for tab in (home, product):
        tab.evaluate(WATCH_STREAM_JS)

    srv.kill()
    for tab in (home, product):  # the page noticed and keeps retrying
        expect(tab.locator("#stream-events")).to_contain_text("retrying", timeout=TIMEOUT)
    srv.start()

    # another browser changes both states on the new server process
    other = new_page(srv.url)
    open_live(other, "/product/3")
    expect_text(other, "#likes", likes + 1)  # persisted in SQLite across the restart
    other.click("#like")
    expect_text(other, "#likes", likes + 2)
    open_live(other, "/")
    expect_text(other, "#waves", 0)  # in memory: it started over
    other.click("#wave")
    expect_text(other, "#waves", 1)

    # the old tabs reconnect by themselves (retry) and catch up without a reload
    expect_text(product, "#likes", likes + 2, timeout=10_000)
    expect_text(home, "#waves", 1, timeout=10_000)
    expect_text(home, "#count", 0)  # the session's counter started over too (in memory)
    home.click("#inc")  # and events work again
    expect_text(home, "#count", 1)


def test_a_reconnected_tab_shows_the_new_server_state_before_any_change(
    restartable_server: Uvicorn, new_page: Any
) -> None:
    """After a restart the GLOBAL Visitors state starts over (waves 0). A tab of the old process
    that reconnects must show what a fresh page shows, even if nothing changes afterwards."""
    srv = restartable_server
    home = new_page(srv.url)
    open_live(home, "/")
    home.click("#wave")
    home.click("#wave")
    home.click("#inc")
    expect_text(home, "#waves", 2)
    expect_text(home, "#count", 1)
    home.evaluate(WATCH_STREAM_JS)

    # hold the old tab's reconnection until a fresh page has used the new process
    home.route("**/_faststate/stream*", lambda route: route.abort())
    srv.kill()
    expect(home.locator("#stream-events")).to_contain_text("retrying", timeout=TIMEOUT)
    srv.start()
    fresh = new_page(srv.url)
    open_live(fresh, "/")
    expect_text(fresh, "#waves", 0)

    with home.expect_response(is_stream_open, timeout=10_000):
        home.unroute("**/_faststate/stream*")
    # a snapshot is the first thing a resyncing stream sends
    expect_text(home, "#count", 0, timeout=2000)  # the session's Counter is resynced ...
    expect_text(home, "#waves", 0, timeout=2000)  # ... the GLOBAL Visitors is not: still 2
