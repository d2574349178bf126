"""A per-viewer view runs as each tab's viewer: one anonymous visitor's render (which may read
their session: a SESSION state, the session dict) is never shown to another visitor."""

from __future__ import annotations

from html import escape

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, view
from tests.asgi_stream import Stream
from tests.sse import stream_url


class SeatNote(State):  # one per browser session: what this visitor wrote
    text: str = ""


class SeatBoard(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @view(per_viewer=True)
    def mine(self) -> str:
        return f"<p>{self.n}:{escape(SeatNote.current().text)}</p>"


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        note = await SeatNote.dependency()
        await note.update(text=request.query_params["note"])
        board = await SeatBoard.dependency()
        return HTMLResponse(f"<html><body>{board.to_html()}{board.mine()}</body></html>")

    return Starlette(
        routes=[Route("/", page)],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="seats", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


async def test_anonymous_viewers_never_share_a_per_viewer_render(store: StateStore) -> None:
    app = make_app(store)
    streams: dict[str, Stream] = {}
    clients = []
    try:
        for who in ("alice-secret", "bob-secret"):
            c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
            clients.append(c)
            html = (await c.get("/", params={"note": who})).text
            assert f"<p>0:{who}</p>" in html
            streams[who] = await Stream(app, stream_url(html), c.cookies, {}).open()
        board = await SeatBoard.resolve(store=store)
        await board.update(n=1)
        for who, s in streams.items():
            assert (await s.next())["signals"] == {"seatBoard": {"n": 1}}
            view_html = "\n".join((await s.next())["data"])
            assert "secret" not in view_html.replace(who, "")  # never another visitor's note
    finally:
        for s in streams.values():
            await s.close()
        for c in clients:
            await c.aclose()
        await store.close()


class SeatSign(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    text: str = ""

    @view
    def sign(self) -> str:
        return f"<p>{escape(self.text)}</p>"


async def test_a_view_patch_splits_lines_only_where_sse_does(store: StateStore) -> None:
    """What a user stored reaches the page as stored through a view too, as through an event's
    element patch: U+2028 and other separators are not turned into newlines."""
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"

    async def page(request: Request) -> HTMLResponse:
        sign = await SeatSign.dependency()
        return HTMLResponse(f"<html><body>{sign.to_html()}{sign.sign()}</body></html>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="seats", store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        try:
            await (await SeatSign.resolve(store=store)).update(text=text)
            await s.next()
            data = [d.removeprefix("elements ") for d in (await s.next())["data"]]
            assert "\n".join(data) == (
                f'<div id="fs-SeatSign-sign" style="display:contents"><p>{text}</p></div>'
            )
        finally:
            await s.close()
            await store.close()


async def test_a_tab_of_an_ended_session_never_shares_its_per_viewer_render(
    store: StateStore,
) -> None:
    """alice's tab stays open while bob signs in on her browser: its stream renders the view in
    alice's old session (as nobody), a render bob's other browser must never get."""

    async def login(request: Request) -> HTMLResponse:
        request.session["auth"] = request.query_params["user"]
        return HTMLResponse("ok")

    app = make_app(store)
    app.router.routes.append(Route("/login", login))
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        for _ in range(2)
    ]
    shared, bobs = clients
    streams = []
    try:
        await shared.get("/login?user=alice")
        html = (await shared.get("/", params={"note": "alice-secret"})).text
        streams.append(await Stream(app, stream_url(html), shared.cookies, {}).open())
        await bobs.get("/login?user=bob")
        html = (await bobs.get("/", params={"note": "bob-note"})).text
        streams.append(await Stream(app, stream_url(html), bobs.cookies, {}).open())
        await shared.get("/login?user=bob")  # alice leaves, bob signs in on her browser
        await shared.get("/", params={"note": "bob-here"})  # the session rotates
        board = await SeatBoard.resolve(store=store)
        await board.update(n=1)
        s = streams[1]
        assert (await s.next())["signals"] == {"seatBoard": {"n": 1}}
        assert "alice-secret" not in "\n".join((await s.next())["data"])
    finally:
        for s in streams:
            await s.close()
        for c in clients:
            await c.aclose()
        await store.close()
