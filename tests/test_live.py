"""Live sync in-process: audiences per scope, ordering, no double patch, resync, heartbeats,
slow consumers, leaks, authorization of streams, changes from outside events.

"Nothing else arrives" is checked with a sentinel: :class:`LiveSentinel`, rendered last on every
page, changes after the changes under test, and what a stream receives before its patch is
everything those changes sent it (see ``Stream.before``)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    event,
    signals,
)
from faststate_mw.testing import FakeClock
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.sse import stream_url, tab_id

SENTINEL = "liveSentinel"


class LiveGlobal(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LiveSession(State):
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LiveUser(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LiveRecord(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LiveWidget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LiveSentinel(State):
    """Public, and last on every page: its patch comes after anything changed before it."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0


async def mark(store: StateStore) -> None:
    """Change the sentinel: every open stream gets its patch after what was sent before."""
    sentinel = await LiveSentinel.resolve(store=store)
    assert await sentinel.update(n=sentinel.n + 1) == ["n"]


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        states: list[State] = [LiveGlobal.current(), LiveSession.current()]
        if request.session.get("auth"):
            states.append(LiveUser.current())
        if "record_id" in request.query_params:
            states.append(LiveRecord.current())
        if "component_id" in request.query_params:
            states.append(LiveWidget.current())
        states.append(LiveSentinel.current())
        body = "".join(s.to_html() for s in states)
        return HTMLResponse(f"<html><body>{body}</body></html>")

    async def bare(request: Request) -> HTMLResponse:
        return HTMLResponse("<html><body>no state here</body></html>")

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/bare", bare),
            Route("/login", login),
            Route("/logout", logout),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="live", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


@asynccontextmanager
async def client_of(app: Starlette, store: StateStore) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app``; the store is closed afterwards (what the app's shutdown does)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        try:
            yield client
        finally:
            await store.close()


class Tab:
    """A browser tab: a page load plus its live stream, and events sent with its tab id."""

    def __init__(self, client: httpx.AsyncClient, app: Starlette) -> None:
        self.client = client
        self.app = app
        self.stream: Stream | None = None
        self.tab = ""

    async def open(self, query: str = "") -> Tab:
        html = (await self.client.get("/" + query)).text
        self.tab = tab_id(html)
        self.stream = await Stream(self.app, stream_url(html), self.client.cookies, {}).open()
        return self

    async def fire(self, state: str, query: str = "") -> httpx.Response:
        url = f"/_faststate/{state}/bump{query}"
        return await self.client.post(url, headers=DS, json={"faststate": {"tab": self.tab}})

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.close()


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    app = make_app(store)
    clients: list[httpx.AsyncClient] = []
    tabs: list[Tab] = []

    def browser() -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        clients.append(c)
        return c

    async def tab(client: httpx.AsyncClient, query: str = "") -> Tab:
        t = await Tab(client, app).open(query)
        tabs.append(t)
        return t

    yield app, (browser, tab)
    for t in tabs:
        await t.close()
    for c in clients:
        await c.aclose()
    await store.close()


async def test_audiences_per_scope(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    alice_phone, alice_laptop, bob = browser(), browser(), browser()
    await alice_phone.get("/login?user=alice")
    await alice_laptop.get("/login?user=alice")
    await bob.get("/login?user=bob")
    a1 = await tab(alice_phone, "?record_id=7&component_id=w")
    a2 = await tab(alice_phone, "?record_id=8&component_id=w")  # same session, other record
    a3 = await tab(alice_laptop, "?record_id=7")
    b1 = await tab(bob, "?record_id=7&component_id=w")
    everyone = [a1, a2, a3, b1]

    async def who_gets(sender: Tab, state: str, query: str = "") -> set[str]:
        r = await sender.fire(state, query)
        assert r.status_code in (200, 204)
        await mark(store)
        signal = state[0].lower() + state[1:]
        got = set()
        for name, t in zip(["a1", "a2", "a3", "b1"], everyone, strict=True):
            assert t.stream is not None
            patches = await t.stream.before(SENTINEL)
            if patches:
                assert len(patches) == 1 and list(patches[0]) == [signal]  # exactly one patch
                got.add(name)
        return got

    assert await who_gets(a1, "LiveGlobal") == {"a1", "a2", "a3", "b1"}
    assert await who_gets(a1, "LiveSession") == {"a1", "a2"}
    assert await who_gets(a1, "LiveUser") == {"a1", "a2", "a3"}
    assert await who_gets(b1, "LiveUser") == {"b1"}
    assert await who_gets(b1, "LiveRecord", "?record_id=7") == {"a1", "a3", "b1"}
    assert await who_gets(a1, "LiveWidget", "?component_id=w") == {"a1", "a2"}
    assert await who_gets(b1, "LiveWidget", "?component_id=w") == {"b1"}


async def test_sender_gets_its_patch_once_through_its_stream(app_and_browser: Any) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser())
    r = await t.fire("LiveSession")
    assert r.status_code == 204  # nothing in the reply: the patch comes through the stream
    assert t.stream is not None
    ev = await t.stream.next()
    assert ev["signals"] == {"liveSession": {"n": 1}}
    # a request from no live tab (an API client) gets the patch in its reply
    r = await t.client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    assert "datastar-patch-signals" in r.text
    # the stream's next patch is the second change: the first was not sent twice
    assert (await t.stream.next())["signals"] == {"liveSession": {"n": 2}}


async def test_ordering_per_key_and_rapid_events_converge(
    app_and_browser: Any, store: StateStore
) -> None:
    _app, (browser, tab) = app_and_browser
    t1 = await tab(browser())
    t2 = await tab(browser())
    await asyncio.gather(*(t1.fire("LiveGlobal") for _ in range(30)))
    await mark(store)
    for t in (t1, t2):
        assert t.stream is not None
        values = [p["liveGlobal"]["n"] for p in await t.stream.before(SENTINEL)]
        assert values == list(range(1, 31))


async def test_ids_carry_versions_and_reconnect_resyncs(
    app_and_browser: Any, store: StateStore
) -> None:
    app, (browser, tab) = app_and_browser
    client = browser()
    t = await tab(client)
    assert t.stream is not None
    await t.fire("LiveSession")
    first = await t.stream.next()
    epoch, _, vector = first["id"].partition(":")
    assert vector == "0.1.0"  # [LiveGlobal, LiveSession, LiveSentinel versions]
    await t.stream.close()
    # the tab is offline while two more changes happen
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    again = await Stream(app, t.stream.url, client.cookies, {"last-event-id": first["id"]}).open()
    snap = await again.next()
    assert snap["signals"]["liveSession"] == {"n": 3}
    assert snap["id"] == f"{epoch}:0.3.0"
    # then live patches continue
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    assert (await again.next())["signals"] == {"liveSession": {"n": 4}}
    await again.close()
    # an up to date tab gets no snapshot: the sentinel's patch is the first thing it sees
    fresh = await Stream(
        app, t.stream.url, client.cookies, {"last-event-id": f"{epoch}:0.4.0"}
    ).open()
    await mark(store)
    assert await fresh.before(SENTINEL) == []
    await fresh.close()
    # a tab from another server process (epoch) gets a snapshot
    other = await Stream(
        app, t.stream.url, client.cookies, {"last-event-id": "deadbeef:0.4.1"}
    ).open()
    assert (await other.next())["signals"]["liveSession"] == {"n": 4}
    await other.close()


async def test_stale_page_gets_a_snapshot_on_first_connect(app_and_browser: Any) -> None:
    app, (browser, _tab) = app_and_browser
    client = browser()
    html = (await client.get("/")).text
    await client.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
    s = await Stream(app, stream_url(html), client.cookies, {}).open()
    assert (await s.next())["signals"]["liveGlobal"] == {"n": 1}
    await s.close()


async def test_heartbeats(clock: FakeClock) -> None:
    store = StateStore(clock=clock, heartbeat=0.02)
    app = make_app(store)
    async with client_of(app, store) as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        await s.wait_for(lambda: s.comments >= 2)
        await s.close()


async def test_slow_consumer_drops_to_one_snapshot_and_never_blocks_others(
    clock: FakeClock,
) -> None:
    store = StateStore(clock=clock, max_queue=4, write_timeout=5)
    app = make_app(store)
    async with client_of(app, store) as c:
        html_slow = (await c.get("/")).text
        html_fast = (await c.get("/")).text
        slow = await Stream(app, stream_url(html_slow), c.cookies, {}).open()
        fast = await Stream(app, stream_url(html_fast), c.cookies, {}).open()
        slow.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await slow.blocked.wait()  # the slow writer is blocked inside its write
        seen = [(await fast.next())["signals"]["liveGlobal"]["n"]]
        for _ in range(20):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            seen.append((await fast.next())["signals"]["liveGlobal"]["n"])
        assert seen == list(range(1, 22))  # the fast tab got every patch, in order
        slow.resume()
        await mark(store)
        got = [p["liveGlobal"]["n"] for p in await slow.before(SENTINEL)]
        # the stalled tab fell further behind than its queue: after the write it was blocked
        # in, one snapshot instead of the rest
        assert got == [1, 21]
        assert store.hub.stats()["dropped_to_resync"] == 1
        await slow.close()
        await fast.close()


async def test_stalled_writer_is_removed(clock: FakeClock) -> None:
    store = StateStore(clock=clock, write_timeout=0.05)
    app = make_app(store)
    hub = store.hub
    async with client_of(app, store) as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        assert len(hub.tabs) == 1
        s.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await asyncio.wait_for(s.finished.wait(), 2)
        assert len(hub.tabs) == 0 and hub.subscribers == {}
        await s.close()


async def test_ten_thousand_connect_disconnect_cycles_leak_nothing(store: StateStore) -> None:
    app = make_app(store)
    hub = store.hub
    async with client_of(app, store) as c:
        url = stream_url((await c.get("/")).text)

        async def cycle() -> None:
            s = await Stream(app, url, c.cookies, {}).open()
            await s.close()

        for _ in range(200):  # warm up
            await cycle()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(10_000):
            await cycle()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert len(hub.tabs) == 0 and hub.subscribers == {} and hub.sessions == {}
        assert grown < 200_000, f"{grown} bytes retained after 10,000 cycles"


async def test_stream_tokens_are_bound_to_the_session(
    app_and_browser: Any, store: StateStore
) -> None:
    app, (browser, _tab) = app_and_browser
    alice, mallory = browser(), browser()
    url = stream_url((await alice.get("/")).text)
    await mallory.get("/")
    stolen = await Stream(app, url, mallory.cookies, {}).open()
    assert stolen.status == 204
    forged = await Stream(app, url[:-3] + "abc", alice.cookies, {}).open()
    assert forged.status == 204
    assert store.hub.tabs == {}
    await stolen.close()
    await forged.close()


async def test_logout_stops_user_patches(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    phone, laptop = browser(), browser()
    await phone.get("/login?user=carol")
    await laptop.get("/login?user=carol")
    t = await tab(phone)
    other = await tab(laptop)
    await other.fire("LiveUser")
    assert t.stream is not None and (await t.stream.next())["signals"] == {"liveUser": {"n": 1}}
    await phone.get("/logout")
    await other.fire("LiveUser")
    await other.fire("LiveGlobal")
    await mark(store)
    # the logged-out tab sees no more of carol's state; public state still flows
    assert await t.stream.before(SENTINEL) == [{"liveGlobal": {"n": 1}}]
    # carol's other device still gets her state (a stream sends each key's changes in order)
    assert other.stream is not None
    got = await other.stream.before(SENTINEL)
    assert [p for p in got if "liveUser" in p] == [{"liveUser": {"n": 1}}, {"liveUser": {"n": 2}}]
    assert [p for p in got if "liveUser" not in p] == [{"liveGlobal": {"n": 1}}]


async def test_refresh_user_revokes_a_right(store: StateStore) -> None:
    class LiveSecret(State):
        __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True, roles=("spy",))
        code: int = 0

    def loader(scope: Any) -> Any:
        return {"id": "eve", "roles": ["spy"]}

    async def page(request: Request) -> HTMLResponse:
        body = LiveSecret.current().to_html() + LiveSentinel.current().to_html()
        return HTMLResponse(f"<body>{body}</body>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="x", user_loader=loader, store=store)
    async with client_of(app, store) as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        secret = store.get("global:LiveSecret")
        assert isinstance(secret, LiveSecret)
        await secret.update(code=1)
        assert (await s.next())["signals"] == {"liveSecret": {"code": 1}}
        assert store.refresh_user("eve", UserContext("eve", roles=frozenset())) == 1
        await secret.update(code=2)
        await mark(store)
        assert await s.before(SENTINEL) == []
        await s.close()


async def test_changes_outside_events_broadcast(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser(), "?record_id=42")
    other = await tab(browser(), "?record_id=42")
    rec = await LiveRecord.resolve(42, store=store)
    assert await rec.update(n=5) == ["n"]
    assert await rec.update(n=5) == []  # no change, nothing sent
    await mark(store)
    for x in (t, other):
        assert x.stream is not None
        assert await x.stream.before(SENTINEL) == [{"liveRecord": {"n": 5}}]
    async with rec.mutate() as r:
        r.n += 10
    assert t.stream is not None and (await t.stream.next())["signals"] == {"liveRecord": {"n": 15}}
    with pytest.raises(ZeroDivisionError):
        async with rec.mutate() as r:
            r.n = 99
            _ = 1 / 0
    assert rec.n == 15  # rolled back, nothing sent
    await mark(store)
    assert await t.stream.before(SENTINEL) == []


async def test_one_stream_element_per_page_and_none_without_states(store: StateStore) -> None:
    app = make_app(store)
    async with client_of(app, store) as c:
        r = await c.get("/?record_id=1&component_id=z")
        assert r.text.count('id="faststate-stream"') == 1
        assert r.text.index('id="faststate-stream"') < r.text.index("</body>")
        assert int(r.headers["content-length"]) == len(r.content)
        r = await c.get("/bare")
        assert "faststate-stream" not in r.text


async def test_several_states_share_one_signals_helper(store: StateStore) -> None:
    async def page(request: Request) -> HTMLResponse:
        attrs = signals(LiveGlobal.current(), LiveSession.current())
        return HTMLResponse(f"<body><div data-signals='{attrs['data-signals']}'></div></body>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="s", store=store)
    async with client_of(app, store) as c:
        html = (await c.get("/")).text
        assert '"liveGlobal":{"n":0}' in html and '"liveSession":{"n":0}' in html
        s = await Stream(app, stream_url(html), c.cookies, {}).open()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        assert (await s.next())["signals"] == {"liveGlobal": {"n": 1}}
        await s.close()
