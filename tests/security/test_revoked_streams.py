"""A stream whose user may no longer see a state (``store.refresh_user``, a lost role) stops
getting it. Two gaps: a key that started over (evicted and made again: its versions run lower
than what the tab last saw) put every tab that knew it into a resync, the revoked one too, and
the snapshot sent it the whole state again; and a lost role was noticed after a page request of
the session, never after an event."""

from __future__ import annotations

from typing import Any

import httpx
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
from tests.apps.live import SENTINEL, LiveGlobal, LiveSentinel, mark
from tests.asgi_stream import Stream
from tests.conftest import API
from tests.sse import stream_url


class SpyCodes(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True, roles=("spy",))
    code: int = 0


def loader(scope: Any) -> Any:
    for k, v in scope["headers"]:
        if k == b"x-user":
            return {"id": v.decode(), "roles": ["spy"]}
    return None


async def page(request: Request) -> HTMLResponse:
    body = SpyCodes.current().to_html() + LiveSentinel.current().to_html()
    return HTMLResponse(f"<body>{body}</body>")


async def test_a_revoked_stream_gets_no_snapshot_of_a_key_that_started_over(
    store: StateStore,
) -> None:
    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="revoked", user_loader=loader, store=store)
    store.hub.heartbeat = 0.05
    streams: dict[str, Stream] = {}
    clients = []
    try:
        for user in ("eve", "ann"):
            headers = {"x-user": user}
            c = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
            )
            clients.append(c)
            url = stream_url((await c.get("/")).text)
            streams[user] = await Stream(app, url, c.cookies, headers).open()
        codes = await SpyCodes.resolve(store=store)
        for n in (1, 2, 3):
            await codes.update(code=n)
        for s in streams.values():
            assert [p["signals"] for p in [await s.next() for _ in range(3)]] == [
                {"spyCodes": {"code": n}} for n in (1, 2, 3)
            ]
        assert store.refresh_user("eve", UserContext("eve", roles=frozenset())) == 1
        # the key starts over (evicted, made again): its versions run below what eve saw
        store.discard("global:SpyCodes")
        again = await SpyCodes.resolve(store=store)
        await again.update(code=99)
        await mark(store)
        assert await streams["ann"].before(SENTINEL) == [{"spyCodes": {"code": 99}}]
        assert await streams["eve"].before(SENTINEL) == []
        # a heartbeat (or any wake of its writer) looks at every key of the tab
        eve = streams["eve"]
        seen = eve.comments
        await eve.wait_for(lambda: eve.comments > seen or not eve.events.empty())
        await mark(store)
        assert await streams["eve"].before(SENTINEL) == []  # nothing of it, ever again
        await again.update(code=100)
        await mark(store)
        assert await streams["eve"].before(SENTINEL) == []
    finally:
        for s in streams.values():
            await s.close()
        for c in clients:
            await c.aclose()
        await store.close()


#: the app's own user table, read on every request (a role taken away takes effect at once)
ROLES: dict[str, list[str]] = {}


def table_loader(scope: Any) -> Any:
    return {"id": "eve", "roles": ROLES.get("eve", [])}


async def test_an_event_of_a_user_whose_role_was_taken_stops_their_streams(
    store: StateStore,
) -> None:
    """README: streams are re-checked after any request of their session whose user changed.
    Pages did that, events did not: a user whose role was taken away (the app's user table,
    read on every request) kept getting the state on an open tab as long as it only sent
    events."""
    ROLES["eve"] = ["spy"]

    async def spy_page(request: Request) -> HTMLResponse:
        body = (
            SpyCodes.current().to_html()
            + LiveGlobal.current().to_html()
            + LiveSentinel.current().to_html()
        )
        return HTMLResponse(f"<body>{body}</body>")

    app = Starlette(routes=[Route("/", spy_page)])
    app.add_middleware(
        FastStateMiddleware, secret_key="revoked", user_loader=table_loader, store=store
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        try:
            codes = await SpyCodes.resolve(store=store)
            await codes.update(code=1)
            assert (await s.next())["signals"] == {"spyCodes": {"code": 1}}
            ROLES["eve"] = []  # the app takes the role away
            r = await c.post("/_faststate/LiveGlobal/bump", headers=API)
            assert r.status_code == 200
            await codes.update(code=2)
            await mark(store)
            assert await s.before(SENTINEL) == [{"liveGlobal": {"n": 1}}]  # public: flows
        finally:
            await s.close()
            await store.close()
