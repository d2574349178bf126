"""Live streams (_streams.py): ids with versions and resync on reconnect, snapshots for stale pages,
heartbeats, tokens bound to their session, re-authorization after logout or refresh_user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
)
from faststate_mw.testing import FakeClock
from tests.apps.live import (
    SENTINEL,
    LiveSentinel,
    client_of,
    live_browser,
    make_app,
    mark,
)
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.sse import stream_url


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    async with live_browser(store) as pair:
        yield pair


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
