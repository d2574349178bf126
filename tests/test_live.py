"""Live sync in-process: audiences per scope, ordering, no double patch, resync, heartbeats,
slow consumers, leaks, authorization of streams, changes from outside events."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
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
    event,
    signals,
    state_registry,
)
from tests.asgi_stream import Stream, stream_url, tab_id
from tests.conftest import DS



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


def make_app(**options: Any) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        states: list[State] = [LiveGlobal.current(), LiveSession.current()]
        if request.session.get("auth"):
            states.append(LiveUser.current())
        if "record_id" in request.query_params:
            states.append(LiveRecord.current())
        if "component_id" in request.query_params:
            states.append(LiveWidget.current())
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
            Middleware(FastStateMiddleware, secret_key="live", **options),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


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
async def app_and_browser() -> AsyncIterator[tuple[Starlette, Any]]:
    app = make_app(heartbeat=30)
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


async def signal_values(stream: Stream) -> list[dict[str, Any]]:
    out = []
    while not stream.events.empty():
        out.append((await stream.next())["signals"])
    return out


async def test_audiences_per_scope(app_and_browser: Any) -> None:
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
        got = set()
        for name, t in zip(["a1", "a2", "a3", "b1"], everyone, strict=True):
            assert t.stream is not None
            if not await t.stream.none_within(0.15):
                got.add(name)
                assert await t.stream.none_within(0.02)  # exactly one patch
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
    assert await t.stream.none_within(0.1)
    # a request from no live tab (an API client) gets the patch in its reply
    r = await t.client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    assert "datastar-patch-signals" in r.text
    assert (await t.stream.next())["signals"] == {"liveSession": {"n": 2}}


async def test_ordering_per_key_and_rapid_events_converge(app_and_browser: Any) -> None:
    _app, (browser, tab) = app_and_browser
    t1 = await tab(browser())
    t2 = await tab(browser())
    await asyncio.gather(*(t1.fire("LiveGlobal") for _ in range(30)))
    for t in (t1, t2):
        assert t.stream is not None
        values = []
        while len(values) < 30:
            values.append((await t.stream.next())["signals"]["liveGlobal"]["n"])
        assert values == list(range(1, 31))
        assert await t.stream.none_within(0.05)


async def test_ids_carry_versions_and_reconnect_resyncs(app_and_browser: Any) -> None:
    app, (browser, tab) = app_and_browser
    client = browser()
    t = await tab(client)
    assert t.stream is not None
    await t.fire("LiveSession")
    first = await t.stream.next()
    epoch, _, vector = first["id"].partition(":")
    assert vector == "0.1"  # [LiveGlobal version, LiveSession version]
    await t.stream.close()
    # the tab is offline while two more changes happen
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    again = await Stream(app, t.stream.url, client.cookies, {"last-event-id": first["id"]}).open()
    snap = await again.next()
    assert snap["signals"]["liveSession"] == {"n": 3}
    assert snap["id"] == f"{epoch}:0.3"
    # then live patches continue
    await client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    assert (await again.next())["signals"] == {"liveSession": {"n": 4}}
    # up to date tab: no snapshot; a tab from another server process (epoch): snapshot
    await again.close()
    fresh = await Stream(
        app, t.stream.url, client.cookies, {"last-event-id": f"{epoch}:0.4"}
    ).open()
    assert await fresh.none_within(0.1)
    await fresh.close()
    other = await Stream(
        app, t.stream.url, client.cookies, {"last-event-id": "deadbeef:0.4"}
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


async def test_heartbeats() -> None:
    app = make_app(heartbeat=0.02)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        for _ in range(200):
            if s.comments >= 2:
                break
            await asyncio.sleep(0.01)
        assert s.comments >= 2
        await s.close()


async def test_slow_consumer_drops_to_one_snapshot_and_never_blocks_others() -> None:
    app = make_app(max_queue=4, write_timeout=5)
    hub = state_registry.hub
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        html_slow = (await c.get("/")).text
        html_fast = (await c.get("/")).text
        slow = await Stream(app, stream_url(html_slow), c.cookies, {}).open()
        fast = await Stream(app, stream_url(html_fast), c.cookies, {}).open()
        slow.stall.set()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await asyncio.sleep(0.05)  # let the slow writer block inside its write
        for _ in range(20):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            await asyncio.sleep(0.002)  # in-process requests never yield; a network would
        seen = [(await fast.next())["signals"]["liveGlobal"]["n"] for _ in range(21)]
        assert seen == list(range(1, 22))  # the fast tab got every patch, in order
        slow.stall.clear()
        last = None
        while last != 21:
            last = (await slow.next())["signals"]["liveGlobal"]["n"]
        assert await slow.none_within(0.05)
        # the stalled tab fell further behind than its queue: one snapshot instead of the rest
        assert hub.stats()["dropped_to_resync"] == 1
        await slow.close()
        await fast.close()


async def test_stalled_writer_is_removed() -> None:
    app = make_app(write_timeout=0.05)
    hub = state_registry.hub
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        assert len(hub.tabs) == 1
        s.stall.set()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await asyncio.wait_for(s.finished.wait(), 2)
        assert len(hub.tabs) == 0 and hub.subscribers == {}
        s.stall.clear()
        await s.close()


async def test_ten_thousand_connect_disconnect_cycles_leak_nothing() -> None:
    app = make_app()
    hub = state_registry.hub
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
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


async def test_stream_tokens_are_bound_to_the_session(app_and_browser: Any) -> None:
    app, (browser, _tab) = app_and_browser
    alice, mallory = browser(), browser()
    url = stream_url((await alice.get("/")).text)
    await mallory.get("/")
    stolen = await Stream(app, url, mallory.cookies, {}).open()
    assert stolen.status == 204
    forged = await Stream(app, url[:-3] + "abc", alice.cookies, {}).open()
    assert forged.status == 204
    assert state_registry.hub.tabs == {}
    await stolen.close()
    await forged.close()


async def test_logout_stops_user_patches(app_and_browser: Any) -> None:
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
    assert await t.stream.none_within(0.15)  # the logged-out tab sees no more of carol's state
    await other.fire("LiveGlobal")
    assert (await t.stream.next())["signals"] == {"liveGlobal": {"n": 1}}  # public state flows


async def test_refresh_user_revokes_a_right() -> None:
    class Secret(State):
        __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True, roles=["spy"])
        code: int = 0

    def loader(scope: Any) -> Any:
        return {"id": "eve", "roles": ["spy"]}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<body>{Secret.current().to_html()}</body>")

    mw: list[FastStateMiddleware] = []

    class Capture(FastStateMiddleware):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            mw.append(self)

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(Capture, secret_key="x", user_loader=loader)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        secret = state_registry.get("global:Secret")
        assert isinstance(secret, Secret)
        await secret.update(code=1)
        assert (await s.next())["signals"] == {"secret": {"code": 1}}
        from faststate_mw import UserContext

        assert mw[0].refresh_user("eve", UserContext("eve", roles=[])) == 1
        await secret.update(code=2)
        assert await s.none_within(0.1)
        await s.close()


async def test_changes_outside_events_broadcast(app_and_browser: Any) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser(), "?record_id=42")
    other = await tab(browser(), "?record_id=42")
    rec = LiveRecord.for_record(42)
    assert await rec.update(n=5) == ["n"]
    assert await rec.update(n=5) == []  # no change, nothing sent
    for x in (t, other):
        assert x.stream is not None
        assert (await x.stream.next())["signals"] == {"liveRecord": {"n": 5}}
        assert await x.stream.none_within(0.05)
    async with rec.mutate() as r:
        r.n += 10
    assert t.stream is not None and (await t.stream.next())["signals"] == {"liveRecord": {"n": 15}}
    with pytest.raises(ZeroDivisionError):
        async with rec.mutate() as r:
            r.n = 99
            _ = 1 / 0
    assert rec.n == 15  # rolled back, nothing sent
    assert await t.stream.none_within(0.05)


async def test_one_stream_element_per_page_and_none_without_states() -> None:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/?record_id=1&component_id=z")
        assert r.text.count('id="faststate-stream"') == 1
        assert r.text.index('id="faststate-stream"') < r.text.index("</body>")
        assert int(r.headers["content-length"]) == len(r.content)
        r = await c.get("/bare")
        assert "faststate-stream" not in r.text


async def test_several_states_share_one_signals_helper() -> None:
    async def page(request: Request) -> HTMLResponse:
        attrs = signals(LiveGlobal.current(), LiveSession.current())
        return HTMLResponse(f"<body><div data-signals='{attrs['data-signals']}'></div></body>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="s")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        html = (await c.get("/")).text
        assert '"liveGlobal":{"n":0}' in html and '"liveSession":{"n":0}' in html
        s = await Stream(app, stream_url(html), c.cookies, {}).open()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        assert (await s.next())["signals"] == {"liveGlobal": {"n": 1}}
        await s.close()
