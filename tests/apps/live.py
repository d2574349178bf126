"""The in-process live app of the live-sync suites (tests/test_live.py, test_hub.py,
test_streams.py, test_inject.py, test_changes.py): one State per scope, a page that renders them,
tabs with live streams (tests/asgi_stream.py).

"Nothing else arrives" is checked with a sentinel: :class:`LiveSentinel`, rendered last on every
page, changes after the changes under test, and what a stream receives before its patch is
everything those changes sent it (see ``Stream.before``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
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
    event,
)
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

    async def one(request: Request) -> HTMLResponse:
        # one state and nothing else: a stream of one key (the hub writes its changes itself)
        return HTMLResponse(f"<html><body>{LiveGlobal.current().to_html()}</body></html>")

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
            Route("/one", one),
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


@asynccontextmanager
async def live_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    """The live app on ``store``, with ``browser()`` (a new client: a new session) and
    ``tab(client, query)`` (a page load plus its stream); everything is closed afterwards."""
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
