"""A stream that stopped delivering a key (a logout, a rotated session, refresh_user) never gets
it again, even when the key starts over (evicted under the caps and made again); a custom scope
keyed by the user stops when another user signs in on the browser."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from faststate_mw import (
    AuthenticationError,
    FastStateMiddleware,
    ScopeRule,
    State,
    StateConfig,
    StateStore,
    register_scope,
)
from faststate_mw._context import RequestContext
from faststate_mw._hub import Connection, Hub
from tests.apps.live import SENTINEL, LiveSentinel, LiveUser, live_browser, mark
from tests.asgi_stream import Stream
from tests.sse import stream_url


async def test_a_logged_out_tab_gets_no_snapshot_of_a_key_that_started_over() -> None:
    store = StateStore(heartbeat=0.05)
    async with live_browser(store) as (_app, (browser, tab)):
        phone, laptop = browser(), browser()
        await phone.get("/login?user=carol")
        await laptop.get("/login?user=carol")
        t = await tab(phone)
        other = await tab(laptop)
        assert t.stream is not None
        for _ in range(3):
            await other.fire("LiveUser")
        got = [await t.stream.next() for _ in range(3)]
        assert got[-1]["signals"] == {"liveUser": {"n": 3}}
        await phone.get("/logout")  # bob may sit at this browser next
        # carol's state is evicted (the caps) and made again: its versions count from 1
        store.discard("user:carol:LiveUser")
        await other.fire("LiveUser")
        await t.stream.wait_for(lambda: t.stream is not None and t.stream.comments >= 2)
        await mark(store)
        assert await t.stream.before(SENTINEL) == []


def test_an_unsubscribed_tab_is_not_resynced_when_the_key_starts_over() -> None:
    hub = Hub()
    patch = b"event: datastar-patch-signals\ndata: signals {}\n"
    gone = Connection("s1", None, "t1", ["user:carol:Note"], [5])
    kept = Connection("s2", None, "t2", ["user:carol:Note"], [5])
    hub.add(gone)
    hub.add(kept)
    hub.unsubscribe(gone, "user:carol:Note")  # signed out
    hub.publish("user:carol:Note", 1, patch)  # the key was made again
    assert hub.pending(gone) is None and gone.resync == set()
    assert hub.pending(kept) is None and kept.resync == {0}


class OrgScope(ScopeRule):
    """A custom scope read from the user: the org is the part of the user id before "."."""

    name = "revoked_org"

    def owner(self, ctx: RequestContext) -> str | None:
        if ctx.user is None:
            raise AuthenticationError("sign in")
        return ctx.user.id.split(".")[0]


register_scope(OrgScope())


class OrgBoard(State):
    __faststate__ = StateConfig(scope="revoked_org", requires_auth=True)
    note: str = ""


class OrgSentinel(State):
    __faststate__ = StateConfig(scope="global")
    n: int = 0


async def test_a_custom_scope_read_from_the_user_stops_when_another_user_signs_in(
    store: StateStore,
) -> None:
    async def page(request: Request) -> HTMLResponse:
        board, sentinel = await OrgBoard.dependency(), await OrgSentinel.dependency()
        return HTMLResponse(f"<body>{board.to_html()}{sentinel.to_html()}</body>")

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", page), Route("/login", login)],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="org", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/login?user=acme.alice")
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        try:
            await c.get("/login?user=globex.bob")  # bob signs in on the same browser
            await c.get("/")
            await store.get("revoked_org:acme:OrgBoard").update(note="acme only")
            await store.get("global:OrgSentinel").update(n=1)
            assert await s.before("orgSentinel") == []  # nothing of acme's board
        finally:
            await s.close()
            await store.close()


async def test_a_user_revoked_while_their_snapshot_is_read_gets_none_of_it() -> None:
    """The snapshot reads the key (a Redis round trip on a shared backend); a sign-out or
    refresh_user that lands meanwhile unsubscribes the tab: what was read is not sent."""
    store = StateStore(heartbeat=0.05)
    async with live_browser(store) as (_app, (browser, tab)):
        phone = browser()
        await phone.get("/login?user=carol")
        t = await tab(phone)
        assert t.stream is not None
        key = "user:carol:LiveUser"
        reading, release = asyncio.Event(), asyncio.Event()
        refreshed = store.refreshed

        async def slow(k: str) -> Any:
            if k == key:
                reading.set()
                await release.wait()  # the backend answers late
            return await refreshed(k)

        store.refreshed = slow  # type: ignore[method-assign]
        store.hub.resync_keys([key])  # e.g. a pub/sub reconnect: the tab is due a snapshot
        await asyncio.wait_for(reading.wait(), 2)
        assert store.refresh_user("carol", None) == 1  # carol signed out elsewhere
        release.set()
        await mark(store)
        assert await t.stream.before(SENTINEL) == []


async def test_a_stream_opened_after_its_session_ended_in_flight_gets_none_of_it() -> None:
    """The stream's request came with carol's cookies (an async user loader still waiting)
    while another tab signed her out: the stream that opens after the end is ended too."""
    store = StateStore(heartbeat=0.05)
    gate: dict[str, Any] = {}

    async def loader(scope: Any) -> Any:
        if scope["path"].endswith("/stream") and "release" in gate:
            gate["waiting"].set()
            await gate["release"].wait()
        return scope.get("session", {}).get("auth")

    async def page(request: Request) -> HTMLResponse:
        states = [await LiveSentinel.dependency()]
        if request.session.get("auth"):
            states.insert(0, await LiveUser.dependency())
        return HTMLResponse(f"<body>{''.join(s.to_html() for s in states)}</body>")

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = "carol"
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", page), Route("/login", login), Route("/logout", logout)],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="f", store=store, user_loader=loader),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/login")
        html = (await c.get("/")).text
        old = httpx.Cookies(c.cookies)
        gate.update(waiting=asyncio.Event(), release=asyncio.Event())
        opening = asyncio.ensure_future(Stream(app, stream_url(html), old, {}).open())
        await asyncio.wait_for(gate["waiting"].wait(), 2)
        await c.get("/logout")  # carol signs out in another tab meanwhile
        await c.get("/")
        gate["release"].set()
        s = await opening
        try:
            await store.get("user:carol:LiveUser").update(n=9)
            await mark(store)
            assert await s.before(SENTINEL) == []
        finally:
            await s.close()
            await store.close()
