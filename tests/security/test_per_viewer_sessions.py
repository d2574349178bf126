"""A per-viewer view renders in its viewer's request (README, "Live views"), and its renders
are cached per user. Anonymous viewers are all user None: the render made for one anonymous
tab, in that tab's session, was sent to every other anonymous tab, so a view that shows
anything of the viewer's session (a SESSION state, the app's session) showed one visitor's
data to all the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import escape
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
    current_session,
    current_user,
    view,
)
from tests.asgi_stream import Stream
from tests.sse import stream_url
from tests.test_views import elements


class SecretNote(State):
    """One visitor's own note (SESSION)."""

    text: str = ""


class SharedShelf(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    items: list[str] = []

    @view(per_viewer=True)
    def mine(self) -> str:
        user = current_user()
        note = SecretNote.current().text
        nick = current_session().get("nick", "")
        who = user.id if user is not None else "anon"
        return f"<p>{who}|{escape(note)}|{escape(nick)}|{len(self.items)}</p>"


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        shelf = SharedShelf.current()
        return HTMLResponse(f"<html><body>{shelf.to_html()}{shelf.mine()}</body></html>")

    async def note(request: Request) -> PlainTextResponse:
        text = request.query_params["text"]
        request.session["nick"] = f"nick-{text}"
        await (await SecretNote.dependency()).update(text=text)
        return PlainTextResponse("ok")

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/shelf/{record_id}", page),
            Route("/note", note),
            Route("/login", login),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="per-viewer", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


@pytest.fixture
async def app(store: StateStore) -> AsyncIterator[Starlette]:
    yield make_app(store)
    await store.close()


async def visitor(app: Starlette, text: str, user: str | None = None) -> tuple[Any, Stream]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    if user is not None:
        await client.get(f"/login?user={user}")
    await client.get(f"/note?text={text}")
    html = (await client.get("/shelf/1")).text
    assert f"|{text}|nick-{text}|0</p>" in html  # the page's own render is the visitor's
    stream = await Stream(app, stream_url(html), client.cookies, {}).open()
    return client, stream


async def test_anonymous_viewers_never_get_each_others_per_viewer_render(
    app: Starlette, store: StateStore
) -> None:
    visitors = [await visitor(app, f"secret-{n}") for n in range(3)]
    shelf = await SharedShelf.resolve("1", store=store)
    await shelf.update(items=["a"])
    try:
        for n, (_client, stream) in enumerate(visitors):
            await stream.next()  # the signal patch
            html = elements(await stream.next())
            assert "|1</p>" in html
            others = [f"secret-{m}" for m in range(3) if m != n]
            assert not any(other in html for other in others), html
    finally:
        for client, stream in visitors:
            await stream.close()
            await client.aclose()
