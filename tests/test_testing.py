"""faststate_mw.testing: the test client on the real protocol, tabs that follow their live
streams, several users at once, sign-in, reconnects, the DOM model, and the pytest plugin."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    attrs_html,
    event,
    requires_auth,
    text,
)
from faststate_mw.testing import SyncTestClient, TestClient, with_test_user
from faststate_mw.testing._dom import Page
from faststate_mw.testing._sse import ElementPatch, merge_patch

pytest_plugins = ["faststate_mw.testing.plugin"]


class TCounter(State):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


class TBoard(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, writable=("note",))
    count: int = 0
    note: str = ""

    @event
    def add(self, amount: int = 1) -> str:
        self.count += amount
        return f'<span id="total">{self.count}</span>'

    @event
    @requires_auth(roles=["editor"])
    def write(self, note: str) -> None:
        self.note = note


def page(request: Any) -> HTMLResponse:
    counter, board = TCounter.current(), TBoard.current()
    return HTMLResponse(
        f"<!doctype html><html><head></head><body>{counter.to_html()}{board.to_html()}"
        f'<p id="count" {attrs_html(text(TCounter, "count"))}>{counter.count}</p>'
        f'<span id="total">{board.count}</span></body></html>'
    )


def make_app(store: StateStore, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", page)],
        middleware=[Middleware(FastStateMiddleware, secret_key="t", store=store, **options)],
    )


async def test_an_event_runs_an_action_string_and_parses_the_reply(store: StateStore) -> None:
    async with TestClient(make_app(store)) as client:
        reply = await client.event(TCounter.increment(5))
        assert reply.ok and reply.status == 200
        assert reply.signals == {"tCounter": {"count": 5}}
        reply = await client.event(TCounter.increment(), {"tCounter": {"count": 5}})
        assert reply.signals == {"tCounter": {"count": 6}}  # the same session: its cookie


async def test_an_error_reply_carries_the_error_signal(store: StateStore) -> None:
    async with TestClient(make_app(store)) as client:
        reply = await client.event("@post('/_faststate/TCounter/increment?amount=many')")
        assert not reply.ok
        assert reply.error is not None and reply.error["code"] == "invalid_arguments"
        assert reply.signals["_faststate"]["status"] == 422
        with pytest.raises(ValueError):
            await client.event("")  # what an action the user may not use renders as


async def test_tabs_follow_patches_of_other_users(store: StateStore) -> None:
    app = make_app(store)
    async with TestClient(app) as alice:
        bob = TestClient(app)
        tab_a = await alice.open("/")
        tab_b = await bob.open("/")
        assert tab_a.signals["tBoard"] == {"count": 0, "note": ""}
        assert tab_a.status == 200
        reply = await tab_b.event(TBoard.add(3))
        assert reply.ok
        await tab_a.wait_for(lambda: tab_a.signals["tBoard"]["count"] == 3)
        await tab_b.wait_for(lambda: tab_b.signals["tBoard"]["count"] == 3)
        # the sender's reply patched its page's element; the other page keeps its own
        assert tab_b.element("total") == '<span id="total">3</span>'
        assert tab_a.element("total") == '<span id="total">0</span>'
        # session states stay per browser
        await tab_a.event(TCounter.increment(2))
        await tab_a.wait_for(lambda: tab_a.signals["tCounter"]["count"] == 2)
        assert tab_b.signals["tCounter"]["count"] == 0
        await bob.aclose()


async def test_login_with_roles(store: StateStore) -> None:
    async with TestClient(make_app(store)) as client:
        denied = await client.event(TBoard.write(), {"note": "hi"})
        assert denied.error is not None and denied.error["status"] == 401
        client.login(UserContext("u1", roles=frozenset({"viewer"})))
        denied = await client.event(TBoard.write(), {"note": "hi"})
        assert denied.error is not None and denied.error["status"] == 403
        client.login(UserContext("u2", roles=frozenset({"editor"})))
        reply = await client.event(TBoard.write(), {"note": "hi"})
        assert reply.ok and reply.signals == {"tBoard": {"note": "hi"}}


async def test_login_reaches_a_custom_user_loader_through_with_test_user(
    store: StateStore,
) -> None:
    app = make_app(store, user_loader=with_test_user(lambda scope: None))
    async with TestClient(app) as client:
        client.login(UserContext("u2", roles=frozenset({"editor"})))
        assert (await client.event(TBoard.write(), {"note": "x"})).ok


async def test_a_tab_reconnects_with_its_last_event_id(store: StateStore) -> None:
    app = make_app(store)
    async with TestClient(app) as client:
        other = TestClient(app)
        tab = await client.open("/")
        await other.event(TBoard.add(1))
        await tab.wait_for(lambda: tab.signals["tBoard"]["count"] == 1)
        seen = tab.last_event_id
        assert seen is not None and seen.endswith(".1")  # epoch:<counter>.<board>
        await tab.disconnect()
        await other.event(TBoard.add(1))  # missed while away
        await tab.reconnect()
        await tab.wait_for(lambda: tab.signals["tBoard"]["count"] == 2)

        async def first_patch_after_reconnect(last_event_id: str | None) -> str:
            await tab.disconnect()
            before = len(tab.received)
            await tab.connect(last_event_id)
            await other.event(TBoard.add(1))  # a sentinel change
            await tab.wait_for(lambda: len(tab.received) > before)
            return "".join(tab.received[before].data)

        # up to date (its Last-Event-ID says so): the next change arrives as a plain patch
        assert "note" not in await first_patch_after_reconnect(tab.last_event_id)
        # without it the server only knows what the page showed: a full resync first
        assert "note" in await first_patch_after_reconnect(None)


def test_signal_patches_merge_like_datastar() -> None:
    signals: dict[str, Any] = {"a": {"b": 1, "c": 2}, "d": 1}
    merge_patch(signals, {"a": {"b": 5, "c": None}, "e": {"f": 1}})
    assert signals == {"a": {"b": 5}, "d": 1, "e": {"f": 1}}


def test_the_dom_model_morphs_elements_by_id() -> None:
    page = Page('<body><div id="a"><p id="b">x</p><br></div><input id="c"></body>')
    assert page.element("b") == '<p id="b">x</p>'
    page.apply(ElementPatch('<p id="b">y</p><input id="c" value="1">', None, "outer"))
    assert page.element("b") == '<p id="b">y</p>'
    assert page.element("c") == '<input id="c" value="1">'
    page.apply(ElementPatch("<i>z</i>", "#a", "inner"))
    assert page.element("a") == '<div id="a"><i>z</i></div>'
    assert page.element("b") is None
    page.apply(ElementPatch("", "#a", "remove"))
    assert page.html == '<body><input id="c" value="1"></body>'


def test_page_signals_come_from_data_signals() -> None:
    page = Page(
        '<div data-signals=\'{"a": {"b": 1}}\'></div><div data-signals="{&quot;c&quot;:2}">'
    )
    assert page.signals() == {"a": {"b": 1}, "c": 2}


@pytest.fixture
def faststate_app(faststate_store: StateStore) -> Starlette:
    return make_app(faststate_store)


async def test_the_plugin_fixtures(
    faststate_client: TestClient, faststate_store: StateStore, faststate_clock: Any
) -> None:
    reply = await faststate_client.event(TCounter.increment(2))
    assert reply.signals == {"tCounter": {"count": 2}}
    assert faststate_store.keys(state_cls=TCounter) != []
    faststate_clock.advance(24 * 3600 + 1)  # a session state's default ttl
    await faststate_store.sweep()
    assert faststate_store.keys(state_cls=TCounter) == []


async def test_two_workers_on_one_redis_a_tab_on_each(tmp_path: Any) -> None:
    from tests.servers import RedisServer

    server = RedisServer(tmp_path).start()
    try:
        worker_a = make_app(StateStore(server.url))
        worker_b = make_app(StateStore(server.url))
        async with TestClient(worker_a) as alice, TestClient(worker_b) as bob:
            tab_a = await alice.open("/")
            tab_b = await bob.open("/")
            assert (await tab_a.event(TBoard.add(2))).ok
            await tab_b.wait_for(lambda: tab_b.signals["tBoard"]["count"] == 2)
            assert (await tab_b.event(TBoard.add(5))).ok
            await tab_a.wait_for(lambda: tab_a.signals["tBoard"]["count"] == 7)
    finally:
        server.stop()


def test_the_sync_client(store: StateStore) -> None:
    with SyncTestClient(make_app(store)) as alice:
        bob = alice.another()
        tab = alice.open("/")
        assert bob.event(TBoard.add(4)).ok
        tab.wait_for(lambda: tab.signals["tBoard"]["count"] == 4)
        reply = tab.event(TCounter.increment(1))
        assert reply.ok and reply.signals == {}  # the tab's own patch comes by its stream
        tab.wait_for(lambda: tab.signals["tCounter"]["count"] == 1)
        assert bob.event(TCounter.increment(1)).signals == {"tCounter": {"count": 1}}
