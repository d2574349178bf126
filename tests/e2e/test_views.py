"""Live views in a real browser: example_app's shared list (``/list/{id}``), kept live in every
tab that shows it by ``TodoList.items_view``, with a per-user ``you_view``.

That a list's tabs receive nothing of another list is checked with a sentinel: a change of the
other list, made after everything under test, is the only thing its tab ever shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import RedisServer, Uvicorn, running

from .helpers import TIMEOUT, WATCH_STREAM_JS, login, open_live, to_front, unique

LIST_APP = "tests.apps.list_app:app"

ITEMS = "#items .item"


def add(page: Any, text: str) -> None:
    to_front(page).fill("#draft", text)
    page.click("#add")
    # the event assigned draft = "": the sender's input is cleared although the server's
    # draft was already empty
    expect(page.locator("#draft")).to_have_value("", timeout=TIMEOUT)


def test_a_shared_list_is_live_in_every_tab_that_shows_it(new_page: Any) -> None:
    alice, bob, other = new_page(), new_page(), new_page()
    login(alice, "alice")
    login(bob, "bob")
    for page in (alice, bob):
        open_live(page, "/list/5")
    open_live(other, "/list/6")
    milk, tea, jam = unique("milk"), unique("tea"), unique("jam")

    add(alice, milk)
    expect(bob.locator(ITEMS)).to_have_text([milk], timeout=1000)
    add(bob, tea)
    add(bob, jam)
    expect(alice.locator(ITEMS)).to_have_text([milk, tea, jam], timeout=1000)

    # reorder in one tab, see it in the other
    to_front(alice).locator("#items li").nth(2).locator(".up").click()
    expect(bob.locator(ITEMS)).to_have_text([milk, jam, tea], timeout=1000)
    # remove in the other, see it in the first
    to_front(bob).locator("#items li").nth(0).locator(".remove").click()
    expect(alice.locator(ITEMS)).to_have_text([jam, tea], timeout=1000)

    # each user sees their own marker in the per-viewer view, re-rendered on every change
    expect(alice.locator(".you")).to_have_text("You are alice; this list has 2 items.")
    expect(bob.locator(".you")).to_have_text("You are bob; this list has 2 items.")

    # the sentinel: a change of list 6 reaches its tab, and it is all that tab ever showed
    sentinel = unique("sentinel")
    writer = new_page()
    open_live(writer, "/list/6")
    add(writer, sentinel)
    expect(other.locator(ITEMS)).to_have_text([sentinel], timeout=1000)
    expect(other.locator(".you")).to_have_text("You are anonymous; this list has 1 item.")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_a_reconnected_tab_shows_the_current_list_after_a_restart(
    new_page: Any, datastar_js: Path, tmp_path: Path
) -> None:
    env = {
        "FS_BACKEND": f"sqlite:///{tmp_path / 'state.db'}",
        "FASTSTATE_DATASTAR_JS": str(datastar_js),
    }
    srv = Uvicorn(LIST_APP, env).start()
    try:
        tab = new_page(srv.url)
        open_live(tab, "/list/2")
        before = unique("before")
        add(tab, before)
        expect(tab.locator(ITEMS)).to_have_text([before])
        tab.evaluate(WATCH_STREAM_JS)
        srv.kill()
        expect(tab.locator("#stream-events")).to_contain_text("retrying", timeout=TIMEOUT)
        srv.start()
        other = new_page(srv.url)
        open_live(other, "/list/2")
        expect(other.locator(ITEMS)).to_have_text([before])  # kept in SQLite
        after = unique("after")
        add(other, after)
        # the old tab reconnects by itself and its view shows the current list
        expect(tab.locator(ITEMS)).to_have_text([before, after], timeout=10_000)
    finally:
        srv.stop()


def test_a_change_on_one_worker_rerenders_views_on_the_other(
    new_page: Any, datastar_js: Path, redis_server: RedisServer
) -> None:
    env = {"FS_BACKEND": redis_server.url, "FASTSTATE_DATASTAR_JS": str(datastar_js)}
    with running(LIST_APP, LIST_APP, env=env, log=False) as workers:
        one, two = new_page(workers[0].url), new_page(workers[1].url)
        open_live(one, "/list/3")
        open_live(two, "/list/3")
        first, second = unique("first"), unique("second")
        add(one, first)
        expect(two.locator(ITEMS)).to_have_text([first], timeout=2000)
        add(two, second)
        expect(one.locator(ITEMS)).to_have_text([first, second], timeout=2000)
